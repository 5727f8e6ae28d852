"""InstanceNorm1d/2d/3d: statistics over the spatial axes, per sample and channel."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape
from manual_bp.ops.normalization.common import (
    _as_float64,
    _check_running_var,
    _normalised_backward,
    _NormCache,
    _num_features,
)

# --- instance norm ---------------------------------------------------------------------


class InstanceNorm(Layer):
    """z = γ (x − μ)/√(v + eps) + β, μ and v over the spatial axes of each sample and channel.

    use_input_stats (torch's F.instance_norm; the modules pass training or not
    track_running_stats): μ, v are the input's, and δ_prev = (γ/σ)(δ − mean(δ) − x̂ mean(δ ⊙ x̂))
    with means over the spatial axes. Otherwise the running statistics (C,) are constants
    and δ_prev = δ γ/√(running_var + eps). ∂L/∂γ = Σ δ ⊙ x̂, ∂L/∂β = Σ δ (every axis but 1).

    The presets take unbatched input (C, *spatial) as torch's modules do; the functional
    form (this class) takes (N, C, *spatial).
    """

    #: input ranks for batched input; a preset accepts one less (unbatched) too
    n_spatial: ClassVar[int | None] = None

    def __init__(
        self,
        weight: Array | None = None,
        bias: Array | None = None,
        running_mean: Array | None = None,
        running_var: Array | None = None,
        eps: float = 1e-5,
        use_input_stats: bool = True,
    ) -> None:
        super().__init__()
        if (running_mean is None) != (running_var is None):
            raise ValueError(
                "expected both running_mean and running_var, or neither; got running_mean "
                f"{'None' if running_mean is None else 'given'} and running_var "
                f"{'None' if running_var is None else 'given'}"
            )
        if not use_input_stats and running_mean is None:
            raise ValueError(
                "expected running_mean and running_var when use_input_stats=False (eval mode "
                "with track_running_stats=True)"
            )
        if not eps > 0:
            raise ValueError(f"expected eps > 0, got {eps}")
        for name, value in (("weight", weight), ("bias", bias)):
            if value is not None:
                self.params[name] = _as_float64(value)
        self.running_mean = _as_float64(running_mean)
        self.running_var = _as_float64(running_var)
        self.eps = float(eps)
        self.use_input_stats = bool(use_input_stats)
        self.num_features = _num_features(self.params, self.running_mean, self.running_var)
        if not self.use_input_stats:
            _check_running_var(type(self).__name__, self.running_var)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.num_features}, eps={self.eps}, "
            f"affine={'weight' in self.params}, use_input_stats={self.use_input_stats})"
        )

    def _batched(self, in_shape: Shape) -> bool:
        n = self.n_spatial
        in_shape = tuple(in_shape)
        ranks = (n + 1, n + 2) if n is not None else None
        if (ranks is not None and len(in_shape) not in ranks) or (
            ranks is None and len(in_shape) < 3
        ):
            want = (
                f"{n + 1}D (unbatched) or {n + 2}D input (N, C, ...)"
                if n is not None
                else "input (N, C, *spatial) with at least one spatial dim"
            )
            raise ValueError(f"expected {want}, got shape {in_shape}")
        return ranks is None or len(in_shape) == n + 2

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        batched = self._batched(in_shape)
        C = in_shape[1 if batched else 0]
        if self.num_features is not None and C != self.num_features:
            raise ValueError(
                f"expected {self.num_features} channels (weight, bias or running stats of that "
                f"size), got shape {in_shape}"
            )
        spatial = int(np.prod(in_shape[2 if batched else 1 :], dtype=np.int64))
        if self.use_input_stats and spatial <= 1:
            raise ValueError(
                "expected more than 1 spatial element when using the input's statistics "
                f"(training, or track_running_stats=False), got input shape {in_shape}"
            )
        return in_shape

    def forward(self, x: Array) -> tuple[Array, Any]:
        batched = self._batched(x.shape)
        self.shape(x.shape)
        x = x if batched else x[None]
        per_channel = (1, -1) + (1,) * (x.ndim - 2)
        if self.use_input_stats:
            axes = tuple(range(2, x.ndim))  # the spatial axes, per (n, c)
            mu = x.mean(axis=axes, keepdims=True)
            var = x.var(axis=axes, keepdims=True)  # biased
            stat_axes: tuple[int, ...] | None = axes
        else:
            mu = self.running_mean.reshape(per_channel)
            var = self.running_var.reshape(per_channel)
            stat_axes = None
        inv_std = 1.0 / np.sqrt(var + self.eps)  # (N, C, 1, …) or (1, C, 1, …)
        x_hat = (x - mu) * inv_std
        z = x_hat
        if "weight" in self.params:
            z = z * self.params["weight"].reshape(per_channel)
        if "bias" in self.params:
            z = z + self.params["bias"].reshape(per_channel)
        return (z if batched else z[0]), (_NormCache(x_hat, inv_std, stat_axes), batched)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        norm, batched = cache
        delta = delta if batched else delta[None]
        axes = (0, *range(2, delta.ndim))
        per_channel = (1, -1) + (1,) * (delta.ndim - 2)
        grads = {}
        if "weight" in self.params:
            grads["weight"] = (delta * norm.x_hat).sum(axis=axes)  # (C,)
        if "bias" in self.params:
            grads["bias"] = delta.sum(axis=axes)  # (C,)
        g = delta * self.params["weight"].reshape(per_channel) if "weight" in self.params else delta
        dx = _normalised_backward(g, norm)
        return (dx if batched else dx[0]), grads


class InstanceNorm1d(InstanceNorm):
    """torch.nn.InstanceNorm1d: inputs (N, C, L) or unbatched (C, L)."""

    n_spatial = 1


class InstanceNorm2d(InstanceNorm):
    """torch.nn.InstanceNorm2d: inputs (N, C, H, W) or unbatched (C, H, W)."""

    n_spatial = 2


class InstanceNorm3d(InstanceNorm):
    """torch.nn.InstanceNorm3d: inputs (N, C, D, H, W) or unbatched (C, D, H, W)."""

    n_spatial = 3
