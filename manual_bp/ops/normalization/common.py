"""What the normalisation layers share: x̂ = (x − μ)/σ and its backward through μ and v,

    δ_prev = (1/σ) (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)),   g = δ ⊙ γ,

and the checks of their arguments."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from manual_bp.ops.base import Array


def _as_float64(a: Array | None) -> Array | None:
    """A float64 copy, so that nothing the caller owns is ever aliased."""
    return None if a is None else np.array(a, dtype=np.float64)


@dataclass(frozen=True)
class _NormCache:
    x_hat: Array  # x̂, the input's shape
    inv_std: Array  # 1/σ, broadcastable to the input
    stat_axes: tuple[int, ...] | None  # axes μ and v were taken over; None: constants


def _num_features(
    params: dict[str, Array], running_mean: Array | None, running_var: Array | None
) -> int | None:
    """C, the length every per-channel vector shares (None when there is none); a
    ValueError where they are not all of one shape (C,)."""
    vectors = {**params, "running_mean": running_mean, "running_var": running_var}
    sizes = {name: v.shape for name, v in vectors.items() if v is not None}
    if any(len(s) != 1 for s in sizes.values()) or len(set(sizes.values())) > 1:
        raise ValueError(f"expected weight, bias and running stats all of shape (C,), got {sizes}")
    return next(iter(sizes.values()))[0] if sizes else None


def _check_running_var(layer: str, running_var: Array | None) -> None:
    """A variance is ≥ 0: torch's √(running_var + eps) of a negative one is NaN."""
    if running_var is not None and not (running_var >= 0).all():
        bad = int(np.flatnonzero(~(running_var >= 0))[0])
        raise ValueError(
            f"{layer}: running_var must be ≥ 0 (it is a variance) where it is used (eval mode "
            f"with running statistics), got running_var[{bad}] = {running_var[bad]!r}"
        )


def _mean(x: Array, axes: tuple[int, ...]) -> Array:
    """x.mean(axis=axes, keepdims=True), for float64 as NumPy forms it (Σ over the axes, then
    ÷ their size) without the per-call cost of its Python wrapper."""
    # (one axis, LayerNorm's usual case, without a generator: ~0.4 µs a call)
    n = x.shape[axes[0]] if len(axes) == 1 else math.prod(x.shape[a] for a in axes)
    if x.dtype != np.float64 or n == 0:  # (NumPy's own rules for other dtypes and for 0/0)
        return x.mean(axis=axes, keepdims=True)
    total = x.sum(axis=axes, keepdims=True)
    total /= n  # in place, as NumPy's mean divides
    return total


def _normalised_backward(g: Array, cache: _NormCache) -> Array:
    """δ_prev = (1/σ)(g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)), or g/σ when μ and v are constants."""
    if cache.stat_axes is None:
        return g * cache.inv_std
    axes = cache.stat_axes
    x_hat = cache.x_hat
    return cache.inv_std * (g - _mean(g, axes) - x_hat * _mean(g * x_hat, axes))
