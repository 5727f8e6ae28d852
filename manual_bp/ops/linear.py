"""Affine layers: z = a Wᵀ + b, forward and backward side by side."""

from __future__ import annotations

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape

# --- affine --------------------------------------------------------------------------


class Linear(Layer):
    """z = a Wᵀ + b, W of shape (out, in).  ∂L/∂W = δᵀ a,  ∂L/∂b = Σₙ δ,  δ_prev = δ W."""

    decayed = ("weight",)
    reports_delta = True

    def __init__(self, weight: Array, bias: Array | None = None) -> None:
        super().__init__()
        self.params["weight"] = np.asarray(weight, dtype=np.float64)
        if bias is not None:
            self.params["bias"] = np.asarray(bias, dtype=np.float64)

    def __repr__(self) -> str:
        out_features, in_features = self.params["weight"].shape
        return f"Linear({in_features} → {out_features}, bias={'bias' in self.params})"

    def shape(self, in_shape: Shape) -> Shape:
        out_features, in_features = self.params["weight"].shape
        if len(in_shape) == 0 or in_shape[-1] != in_features:
            raise ValueError(
                f"expected input (*, {in_features}) with {in_features} features, "
                f"got shape {tuple(in_shape)}"
            )
        return (*in_shape[:-1], out_features)

    def forward(self, a: Array) -> tuple[Array, Array]:
        z = a @ self.params["weight"].T
        if "bias" in self.params:
            z += self.params["bias"]  # z is fresh from the matmul: add in place
        return z, a

    def backward(self, delta: Array, a: Array) -> tuple[Array, dict[str, Array]]:
        return delta @ self.params["weight"], self.param_grads(delta, a)

    def param_grads(self, delta: Array, a: Array) -> dict[str, Array]:
        W = self.params["weight"]
        delta_rows = delta.reshape(-1, W.shape[0])  # (N·…, out): any leading dims are a batch
        grads = {"weight": delta_rows.T @ a.reshape(-1, W.shape[1])}
        if "bias" in self.params:
            grads["bias"] = delta_rows.sum(axis=0)
        return grads
