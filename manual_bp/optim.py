"""Plain gradient descent, as seed 004 writes it: θ ← θ − α ∇θ L."""

from __future__ import annotations

import numpy as np

from manual_bp.network import Network


class SGD:
    """θ ← θ − α ∇θ L for every parameter of a manual network (updated in place)."""

    def __init__(self, lr: float) -> None:
        if not lr > 0:
            raise ValueError(f"the learning rate must be > 0, got {lr!r}")
        self.lr = float(lr)

    def step(self, network: Network, grads: dict[str, np.ndarray]) -> None:
        """One step; `grads` is keyed like network.named_parameters() ("<node>.<param>")."""
        params = network.named_parameters()
        unknown = sorted(set(grads) - set(params))
        if unknown:
            raise ValueError(f"gradients for unknown parameters {unknown}; known: {sorted(params)}")
        for name, g in grads.items():
            theta = params[name]
            if g.shape != theta.shape:
                raise ValueError(
                    f"gradient of {name!r} has shape {g.shape}, expected {theta.shape}"
                )
            theta -= self.lr * g
