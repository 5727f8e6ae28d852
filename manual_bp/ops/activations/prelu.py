"""PReLU: a leaky relu whose slope is a learned parameter, one per channel or shared.

Its backward follows torch's prelu derivative in tools/autograd/derivatives.yaml.
"""

from __future__ import annotations

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape, near

# --- PReLU: a learned slope -------------------------------------------------------------


class PReLU(Layer):
    """z = a if a > 0 else w·a, w of shape (C,) on channel dim 1 (or (1,) or (), shared);
    δ_prev = δ ⊙ (a > 0 ? 1 : w),  ∂L/∂w = Σ_{all but dim 1} δ ⊙ (a > 0 ? 0 : a)."""

    def __init__(self, weight: Array) -> None:
        super().__init__()
        w = np.asarray(weight, dtype=np.float64)
        if w.ndim > 1 or w.size == 0:
            raise ValueError(f"PReLU: expected a weight of shape (C,), (1,) or (), got {w.shape}")
        self.params["weight"] = w

    def __repr__(self) -> str:
        return f"PReLU(num_parameters={self.params['weight'].size})"

    def shape(self, in_shape: Shape) -> Shape:
        c = self.params["weight"].size
        if c > 1 and (len(in_shape) < 2 or in_shape[1] != c):
            raise ValueError(
                f"PReLU: expected an input of shape (N, {c}, *) for {c} slopes, got "
                f"{tuple(in_shape)}"
            )
        return tuple(in_shape)

    def _slope(self, ndim: int) -> Array:
        """w shaped to broadcast along dim 1: (1, C, 1, …), or a 0-d slope for C = 1."""
        w = self.params["weight"]
        return w.reshape((1, w.size) + (1,) * (ndim - 2)) if w.size > 1 else w.reshape(())

    def forward(self, a: Array) -> tuple[Array, Array]:
        self.shape(a.shape)
        return np.where(a > 0, a, self._slope(a.ndim) * a), a

    def backward(self, delta: Array, a: Array) -> tuple[Array, dict[str, Array]]:
        positive = a > 0
        delta_prev = np.where(positive, delta, self._slope(a.ndim) * delta)
        return delta_prev, self.param_grads(delta, a)

    def param_grads(self, delta: Array, a: Array) -> dict[str, Array]:
        dw = np.where(a > 0, 0.0, a * delta)
        w = self.params["weight"]
        if w.size > 1:  # Σ over every dim but the channels, dim 1
            return {"weight": dw.sum(axis=tuple(i for i in range(a.ndim) if i != 1))}
        return {"weight": dw.sum().reshape(w.shape)}

    def ties(self, a: Array) -> tuple[Array]:
        return (near(a, (0.0,)),)
