"""BatchNorm1d/2d/3d: statistics over every axis but the channel axis."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape
from manual_bp.ops.normalization.common import (
    _as_float64,
    _check_running_var,
    _NormCache,
    _num_features,
)

# --- batch norm ------------------------------------------------------------------------


class BatchNorm(Layer):
    """z = γ (x − μ)/√(v + eps) + β per channel (axis 1); batch or running μ, v.

    Training mode, or no running statistics (track_running_stats=False): μ, v are the
    batch's, over every axis but 1, and δ_prev = (γ/σ)(δ − mean(δ) − x̂ mean(δ ⊙ x̂)).
    Eval mode with running statistics: δ_prev = δ γ/√(running_var + eps).
    ∂L/∂γ = Σ δ ⊙ x̂, ∂L/∂β = Σ δ (sums over every axis but 1).

    `ndims` is the set of input ranks the torch module accepts: (2, 3) for BatchNorm1d,
    (4,) for BatchNorm2d, (5,) for BatchNorm3d; the presets below set it as their NDIMS.
    """

    NDIMS: ClassVar[tuple[int, ...]] = (2, 3, 4, 5)

    def __init__(
        self,
        weight: Array | None = None,
        bias: Array | None = None,
        running_mean: Array | None = None,
        running_var: Array | None = None,
        eps: float = 1e-5,
        training: bool = False,
        ndims: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if (running_mean is None) != (running_var is None):
            raise ValueError(
                "expected both running_mean and running_var, or neither "
                f"(track_running_stats=False); got running_mean "
                f"{'None' if running_mean is None else 'given'} and running_var "
                f"{'None' if running_var is None else 'given'}"
            )
        if not eps > 0:
            raise ValueError(f"expected eps > 0, got {eps}")
        for name, value in (("weight", weight), ("bias", bias)):
            if value is not None:
                self.params[name] = _as_float64(value)
        self.running_mean = _as_float64(running_mean)
        self.running_var = _as_float64(running_var)
        self.eps = float(eps)
        self.training = bool(training)
        self.ndims = self.NDIMS if ndims is None else tuple(ndims)
        self.num_features = _num_features(self.params, self.running_mean, self.running_var)
        if not self.uses_batch_stats:
            _check_running_var(type(self).__name__, self.running_var)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.num_features}, eps={self.eps}, "
            f"affine={'weight' in self.params}, training={self.training}, "
            f"running_stats={self.running_mean is not None})"
        )

    @property
    def uses_batch_stats(self) -> bool:
        """torch's bn_training: batch statistics in training mode or without running ones."""
        return self.training or self.running_mean is None

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        if len(in_shape) not in self.ndims:
            ranks = " or ".join(f"{n}D" for n in self.ndims)
            raise ValueError(f"expected {ranks} input (N, C, ...), got shape {in_shape}")
        C = in_shape[1]
        if self.num_features is not None and C != self.num_features:
            raise ValueError(
                f"expected {self.num_features} channels on axis 1, got shape {in_shape}"
            )
        if self.uses_batch_stats:
            per_channel = int(np.prod(in_shape, dtype=np.int64)) // C if C else 0
            if per_channel <= 1:
                raise ValueError(
                    "expected more than 1 value per channel when using batch statistics "
                    f"(training, or track_running_stats=False), got input shape {in_shape}"
                )
        return in_shape

    def forward(self, x: Array) -> tuple[Array, _NormCache]:
        self.shape(x.shape)
        axes = (0, *range(2, x.ndim))  # every axis but the channel axis
        per_channel = (1, -1) + (1,) * (x.ndim - 2)  # (1, C, 1, …): broadcasts over axes
        if self.uses_batch_stats:
            m = x.size // x.shape[1]
            mu = _per_channel(x) / m  # (C,)
            x_hat = x - mu.reshape(per_channel)
            var = _per_channel(x_hat, x_hat) / m  # biased, as torch normalises with
            stat_axes = axes
        else:
            mu, var = self.running_mean, self.running_var
            x_hat = x - mu.reshape(per_channel)
            stat_axes = None
        inv_std = (1.0 / np.sqrt(var + self.eps)).reshape(per_channel)  # (1, C, 1, …)
        x_hat *= inv_std  # x̂ = (x − μ)/σ, in place: x − μ is fresh
        z = (
            x_hat * self.params["weight"].reshape(per_channel)
            if "weight" in self.params
            else (x_hat.copy())
        )
        if "bias" in self.params:
            z += self.params["bias"].reshape(per_channel)
        return z, _NormCache(x_hat, inv_std, stat_axes)

    def backward(self, delta: Array, cache: _NormCache) -> tuple[Array, dict[str, Array]]:
        per_channel = (1, -1) + (1,) * (delta.ndim - 2)
        sum_delta = _per_channel(delta)  # Σ δ = ∂L/∂β, (C,)
        sum_delta_x_hat = _per_channel(delta, cache.x_hat)  # Σ δ ⊙ x̂ = ∂L/∂γ, (C,)
        grads = {}
        if "weight" in self.params:
            grads["weight"] = sum_delta_x_hat
        if "bias" in self.params:
            grads["bias"] = sum_delta
        scale = cache.inv_std  # γ/σ, (1, C, 1, …)
        if "weight" in self.params:
            scale = scale * self.params["weight"].reshape(per_channel)
        if cache.stat_axes is None:  # μ and v are constants: only the direct route
            return delta * scale, grads
        # δ_prev = (γ/σ)(δ − mean(δ) − x̂ ⊙ mean(δ ⊙ x̂)), the routes through μ and v
        m = delta.size // delta.shape[1]
        mean_delta = (sum_delta / m).reshape(per_channel)
        mean_delta_x_hat = (sum_delta_x_hat / m).reshape(per_channel)
        delta_prev = cache.x_hat * mean_delta_x_hat
        delta_prev += mean_delta
        np.subtract(delta, delta_prev, out=delta_prev)
        delta_prev *= scale
        return delta_prev, grads


def _per_channel(a: Array, b: Array | None = None) -> Array:
    """Σ a (or Σ a ⊙ b) over every axis but the channel axis 1, (C,): one pass, no temporary."""
    axes = list(range(a.ndim))
    if b is None:
        return np.einsum(a, axes, [1])
    return np.einsum(a, axes, b, axes, [1])


class BatchNorm1d(BatchNorm):
    """torch.nn.BatchNorm1d: inputs (N, C) or (N, C, L)."""

    NDIMS = (2, 3)


class BatchNorm2d(BatchNorm):
    """torch.nn.BatchNorm2d: inputs (N, C, H, W)."""

    NDIMS = (4,)


class BatchNorm3d(BatchNorm):
    """torch.nn.BatchNorm3d: inputs (N, C, D, H, W)."""

    NDIMS = (5,)
