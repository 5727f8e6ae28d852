"""Normalisation layers: BatchNorm, InstanceNorm, GroupNorm and LayerNorm, forward beside backward.

All normalise x to x̂ = (x − μ)/σ, σ = √(v + eps), then scale and shift, z = γ x̂ + β.
They differ in which axes μ and v are taken over:

| layer        | statistics over, for each sample                   | γ, β shaped like |
|--------------|----------------------------------------------------|------------------|
| BatchNorm    | every axis but the channel axis 1 (and the batch)  | (C,)             |
| InstanceNorm | the spatial axes, per channel                      | (C,)             |
| GroupNorm    | the spatial axes and a group's C/G channels        | (C,)             |
| LayerNorm    | the trailing `normalized_shape` axes               | normalized_shape |

Where μ and v are statistics of the input itself (BatchNorm and InstanceNorm in training
mode or without running statistics, GroupNorm and LayerNorm always), backward runs
through them too. With g = δ ⊙ γ and means over the normalised
axes (count m):

    δ_prev = (1/σ) (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂))

the two subtracted terms being the routes through μ and through v. Where μ and v are
constants (running statistics in eval mode) only the direct route is left,
δ_prev = g/σ. In both cases ∂L/∂γ = Σ δ ⊙ x̂ and ∂L/∂β = Σ δ over the non-parameter axes.

As in torch, v is the biased variance (divided by m, not m − 1). These layers never update
running statistics: a gradient oracle must not change the caller's buffers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape


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


def _normalised_backward(g: Array, cache: _NormCache) -> Array:
    """δ_prev = (1/σ)(g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)), or g/σ when μ and v are constants."""
    if cache.stat_axes is None:
        return g * cache.inv_std
    axes = cache.stat_axes
    x_hat = cache.x_hat
    return cache.inv_std * (
        g - g.mean(axis=axes, keepdims=True) - x_hat * (g * x_hat).mean(axis=axes, keepdims=True)
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


# --- group norm ------------------------------------------------------------------------


class GroupNorm(Layer):
    """z = γ (x − μ)/√(v + eps) + β per channel, μ and v over each sample's group of C/G
    channels and every spatial axis.

    With the input viewed as (N, G, m), m = C/G · spatial, it is LayerNorm over the last
    axis: δ_prev = (1/σ)(g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)), g = δ ⊙ γ, means over m.
    ∂L/∂γ = Σ δ ⊙ x̂, ∂L/∂β = Σ δ (every axis but 1).
    """

    def __init__(
        self,
        num_groups: int,
        weight: Array | None = None,
        bias: Array | None = None,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)):
            raise ValueError(f"expected num_groups as an int, got {num_groups!r}")
        if num_groups < 1:
            raise ValueError(f"expected num_groups ≥ 1, got {num_groups}")
        if not eps > 0:
            raise ValueError(f"expected eps > 0, got {eps}")
        self.num_groups = int(num_groups)
        self.eps = float(eps)
        for name, value in (("weight", weight), ("bias", bias)):
            if value is not None:
                self.params[name] = _as_float64(value)
        sizes = {name: v.shape for name, v in self.params.items()}
        if any(len(s) != 1 for s in sizes.values()) or len(set(sizes.values())) > 1:
            raise ValueError(f"expected weight and bias both of shape (C,), got {sizes}")
        self.num_channels = next(iter(sizes.values()))[0] if sizes else None
        if self.num_channels is not None and self.num_channels % self.num_groups:
            raise ValueError(
                f"num_channels {self.num_channels} must be divisible by num_groups "
                f"{self.num_groups}"
            )

    def __repr__(self) -> str:
        return (
            f"GroupNorm({self.num_groups}, {self.num_channels}, eps={self.eps}, "
            f"affine={'weight' in self.params})"
        )

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        if len(in_shape) < 2:
            raise ValueError(f"expected input (N, C, *) with at least 2 dims, got {in_shape}")
        C = in_shape[1]
        if self.num_channels is not None and C != self.num_channels:
            raise ValueError(
                f"expected {self.num_channels} channels on axis 1 (weight and bias), got shape "
                f"{in_shape}"
            )
        if C % self.num_groups:
            raise ValueError(
                f"expected the number of channels to be divisible by num_groups "
                f"{self.num_groups}, got shape {in_shape}"
            )
        # NOTE: torch's F.group_norm checks N · C/G · spatial (the batch too) for more than 1
        if in_shape[0] * (C // self.num_groups) * int(np.prod(in_shape[2:], dtype=np.int64)) == 1:
            raise ValueError(
                f"expected more than 1 value per group (torch counts the batch too), got input "
                f"shape {in_shape} with num_groups {self.num_groups}"
            )
        return in_shape

    def forward(self, x: Array) -> tuple[Array, Any]:
        self.shape(x.shape)
        N, C, G = x.shape[0], x.shape[1], self.num_groups
        m = C // G * int(np.prod(x.shape[2:], dtype=np.int64))
        per_channel = (1, -1) + (1,) * (x.ndim - 2)
        xg = x.reshape(N, G, m)  # each sample's groups as rows
        mu = xg.mean(axis=2, keepdims=True)
        var = xg.var(axis=2, keepdims=True)  # biased
        inv_std = 1.0 / np.sqrt(var + self.eps)  # (N, G, 1)
        x_hat_g = (xg - mu) * inv_std
        x_hat = x_hat_g.reshape(x.shape)
        z = x_hat
        if "weight" in self.params:
            z = z * self.params["weight"].reshape(per_channel)
        if "bias" in self.params:
            z = z + self.params["bias"].reshape(per_channel)
        return z, _NormCache(x_hat_g, inv_std, (2,))

    def backward(self, delta: Array, cache: _NormCache) -> tuple[Array, dict[str, Array]]:
        axes = (0, *range(2, delta.ndim))
        per_channel = (1, -1) + (1,) * (delta.ndim - 2)
        x_hat = cache.x_hat.reshape(delta.shape)
        grads = {}
        if "weight" in self.params:
            grads["weight"] = (delta * x_hat).sum(axis=axes)  # (C,)
        if "bias" in self.params:
            grads["bias"] = delta.sum(axis=axes)  # (C,)
        g = delta * self.params["weight"].reshape(per_channel) if "weight" in self.params else delta
        dx = _normalised_backward(g.reshape(cache.x_hat.shape), cache)  # (N, G, m)
        return dx.reshape(delta.shape), grads


# --- layer norm ------------------------------------------------------------------------


class LayerNorm(Layer):
    """z = γ ⊙ (x − μ)/√(v + eps) + β, μ and v over the trailing normalized_shape axes.

    δ_prev = (1/σ)(g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)) with g = δ ⊙ γ, means over the same axes;
    ∂L/∂γ = Σ δ ⊙ x̂, ∂L/∂β = Σ δ (sums over the leading axes).

    weight and bias None: elementwise_affine=False; weight alone: torch's bias=False.
    """

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        weight: Array | None = None,
        bias: Array | None = None,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(n) for n in normalized_shape)
        if not self.normalized_shape or min(self.normalized_shape) < 1:
            raise ValueError(
                "expected normalized_shape with at least one dim, all positive, "
                f"got {self.normalized_shape}"
            )
        if not eps > 0:
            raise ValueError(f"expected eps > 0, got {eps}")
        self.eps = float(eps)
        for name, value in (("weight", weight), ("bias", bias)):
            if value is not None:
                self.params[name] = _as_float64(value)
                if self.params[name].shape != self.normalized_shape:
                    raise ValueError(
                        f"expected {name} of shape normalized_shape={self.normalized_shape}, "
                        f"got {self.params[name].shape}"
                    )

    def __repr__(self) -> str:
        return (
            f"LayerNorm({self.normalized_shape}, eps={self.eps}, "
            f"weight={'weight' in self.params}, bias={'bias' in self.params})"
        )

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        k = len(self.normalized_shape)
        if len(in_shape) < k or in_shape[len(in_shape) - k :] != self.normalized_shape:
            dims = ", ".join(map(str, self.normalized_shape))
            raise ValueError(f"expected input of shape (*, {dims}), got shape {in_shape}")
        return in_shape

    def forward(self, x: Array) -> tuple[Array, _NormCache]:
        self.shape(x.shape)
        axes = tuple(range(x.ndim - len(self.normalized_shape), x.ndim))  # the trailing axes
        mu = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)  # biased
        inv_std = 1.0 / np.sqrt(var + self.eps)  # (*, 1, …, 1)
        x_hat = (x - mu) * inv_std
        z = x_hat * self.params["weight"] if "weight" in self.params else x_hat
        if "bias" in self.params:
            z = z + self.params["bias"]
        return z, _NormCache(x_hat, inv_std, axes)

    def backward(self, delta: Array, cache: _NormCache) -> tuple[Array, dict[str, Array]]:
        leading = tuple(range(delta.ndim - len(self.normalized_shape)))
        grads = {}
        if "weight" in self.params:
            grads["weight"] = (delta * cache.x_hat).sum(axis=leading)  # normalized_shape
        if "bias" in self.params:
            grads["bias"] = delta.sum(axis=leading)
        g = delta * self.params["weight"] if "weight" in self.params else delta
        return _normalised_backward(g, cache), grads


class RMSNorm(Layer):
    """z = γ ⊙ x / √(mean(x²) + eps), the mean over the trailing normalized_shape axes.

    With r = 1/√(mean(x²) + eps), x̂ = x r, g = δ ⊙ γ:  δ_prev = r (g − x̂ ⊙ mean(g ⊙ x̂)),
    ∂L/∂γ = Σ δ ⊙ x̂ (sums over the leading axes). weight None: elementwise_affine=False."""

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        weight: Array | None = None,
        eps: float | None = None,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(n) for n in normalized_shape)
        if not self.normalized_shape or min(self.normalized_shape) < 1:
            raise ValueError(
                "expected normalized_shape with at least one dim, all positive, "
                f"got {self.normalized_shape}"
            )
        # NOTE: eps None is torch's finfo(dtype).eps; the oracle's values are float64
        self.eps = float(np.finfo(np.float64).eps) if eps is None else float(eps)
        if not self.eps >= 0:
            raise ValueError(f"expected eps >= 0, got {eps}")
        if weight is not None:
            self.params["weight"] = _as_float64(weight)
            if self.params["weight"].shape != self.normalized_shape:
                raise ValueError(
                    f"expected weight of shape normalized_shape={self.normalized_shape}, "
                    f"got {self.params['weight'].shape}"
                )

    def __repr__(self) -> str:
        return f"RMSNorm({self.normalized_shape}, eps={self.eps}, weight={'weight' in self.params})"

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        k = len(self.normalized_shape)
        if len(in_shape) < k or in_shape[len(in_shape) - k :] != self.normalized_shape:
            dims = ", ".join(map(str, self.normalized_shape))
            raise ValueError(f"expected input of shape (*, {dims}), got shape {in_shape}")
        return in_shape

    def forward(self, x: Array) -> tuple[Array, tuple[Array, Array, tuple[int, ...]]]:
        self.shape(x.shape)
        axes = tuple(range(x.ndim - len(self.normalized_shape), x.ndim))
        r = 1.0 / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + self.eps)
        x_hat = x * r
        z = x_hat * self.params["weight"] if "weight" in self.params else x_hat
        return z, (x_hat, r, axes)

    def backward(
        self, delta: Array, cache: tuple[Array, Array, tuple[int, ...]]
    ) -> tuple[Array, dict[str, Array]]:
        x_hat, r, axes = cache
        grads = {}
        if "weight" in self.params:
            leading = tuple(range(delta.ndim - len(self.normalized_shape)))
            grads["weight"] = (delta * x_hat).sum(axis=leading)
        g = delta * self.params["weight"] if "weight" in self.params else delta
        return r * (g - x_hat * np.mean(g * x_hat, axis=axes, keepdims=True)), grads


class LocalResponseNorm(Layer):
    """z = x / (k + α/n · Σ_{c′ ∈ w(c)} x_{c′}²)^β over channels (dim 1), the window w(c) =
    [c − ⌊n/2⌋, c + ⌊(n−1)/2⌋] zero-padded (torch's avg_pool of x² with count_include_pad).

    With D = k + α/n · S:
    δ_prev_c = δ_c D_c^(−β) − (2α/n) x_c Σ_{c″ : c ∈ w(c″)} β δ_c″ x_c″ D_c″^(−β−1)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"local_response_norm: expected an int size >= 1, got {size!r}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def __repr__(self) -> str:
        return f"LocalResponseNorm({self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k})"

    def shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) < 3:
            raise ValueError(
                f"local_response_norm: expected an input of 3 or more dims, got {tuple(in_shape)}"
            )
        return tuple(in_shape)

    def _window_sum(self, t: Array, before: int, after: int) -> Array:
        """Σ over a window of channels [c − before, c + after], zero-padded."""
        C = t.shape[1]
        pad = [(0, 0)] * t.ndim
        pad[1] = (before, after)
        tp = np.pad(t, pad)
        out = np.zeros(t.shape)
        for j in range(before + after + 1):  # NOTE: a loop over the window's offsets
            out += tp[:, j : j + C]
        return out

    def forward(self, x: Array) -> tuple[Array, Any]:
        self.shape(x.shape)
        n = self.size
        S = self._window_sum(x * x, n // 2, (n - 1) // 2)
        D = (S / n) * self.alpha + self.k
        Dp = D**self.beta
        return x / Dp, (x, D, Dp)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        x, D, Dp = cache
        n = self.size
        t = self.beta * delta * x / (D * Dp)  # β δ x D^(−β−1)
        back = self._window_sum(t, (n - 1) // 2, n // 2)  # the windows that hold c
        return delta / Dp - (2.0 * self.alpha / n) * x * back, {}
