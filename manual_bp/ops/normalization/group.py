"""GroupNorm: statistics over the spatial axes and a group's C/G channels."""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape
from manual_bp.ops.normalization.common import (
    _as_float64,
    _normalised_backward,
    _NormCache,
)

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
