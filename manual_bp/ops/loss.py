"""A loss as a node of the network, and the seed of a network whose output is the loss.

    LossNode(ℓ)   z = ℓ(y, t)          δ_y = δ · ∂ℓ/∂y      (t: a constant, no gradient)

with reduction='none' z is one loss per element (elementwise losses, δ_y = δ ⊙ ∂ℓ/∂y) or
per sample (δ_y = δ_n ∂ℓ_n/∂y along the sample's entries): the loss's `chain` says which.

When the loss is part of the recorded program (`loss_fn(model(x), t)`, any callable), the
network ends in the loss itself: a scalar node whose δ is 1 (∂L/∂L), and backward starts
there like at any other node. `NetworkLoss` is that start: L = z, ∂L/∂z = 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.losses import Loss
from manual_bp.ops.base import Array, Layer, Shape


class LossNode(Layer):
    """z = ℓ(y, t), a scalar;  δ_y = δ · ∂ℓ/∂y, the target gets none."""

    n_inputs = 2
    integer_inputs = True  # class indices as the target
    output_dtype = "float"

    def __init__(self, loss: Loss) -> None:
        super().__init__()
        self.loss = loss

    def __repr__(self) -> str:
        return f"LossNode({self.loss!r})"

    def shape(self, y_shape: Shape, t_shape: Shape) -> Shape:
        return self.loss.output_shape(y_shape)

    def forward(self, y: Array, t: Array) -> tuple[Array, Array]:
        value, dL_dy = self.loss(y, t)
        return np.asarray(value, dtype=np.float64), dL_dy

    def backward(self, delta: Array, dL_dy: Array) -> tuple[tuple[Any, None], dict[str, Array]]:
        return (self.loss.chain(delta, dL_dy), None), {}

    def ties(self, y: Array, t: Array) -> tuple[Array | None, None] | None:
        mask = self.loss.ties(y, t)
        return None if mask is None else (mask, None)


class NetworkLoss(Loss):
    """L = z: the network's output is the loss itself;  ∂L/∂z = 1."""

    name = "network"

    def __init__(self) -> None:
        super().__init__("sum")

    def check(self, y_shape: Shape, target: Any) -> None:
        if tuple(y_shape) != ():
            raise ValueError(f"expected a scalar loss, got shape {tuple(y_shape)}")

    def __call__(self, y: Array, target: Any) -> tuple[float, Array]:
        return float(y), np.ones_like(y, dtype=np.float64)
