"""The worked example of seed 003 (after Matt Mazur's "A Step by Step Backpropagation
Example"): a 2-2-2 network with sigmoid on both layers and E_total = Σ ½(target − out)².

    net_h = W1 · i + b1,  out_h = σ(net_h),  net_o = W2 · out_h + b2,  out_o = σ(net_o)

Weights in torch's layout (out, in): W1 = [[w1, w2], [w3, w4]], W2 = [[w5, w6], [w7, w8]].
"""

from __future__ import annotations

import numpy as np

from manual_bp.losses import HalfSquaredError
from manual_bp.network import Network, mlp

INPUTS = np.array([[0.05, 0.10]])  # i1, i2
TARGETS = np.array([[0.01, 0.99]])  # o1, o2
W1 = np.array([[0.15, 0.20], [0.25, 0.30]])  # w1 w2 / w3 w4
B1 = np.array([0.35, 0.35])
W2 = np.array([[0.40, 0.45], [0.50, 0.55]])  # w5 w6 / w7 w8
B2 = np.array([0.60, 0.60])
LEARNING_RATE = 0.5


def seed_network() -> Network:
    """The seed's network, layers named "1" (hidden h1, h2) and "2" (output o1, o2)."""
    return mlp(
        [W1.copy(), W2.copy()], [B1.copy(), B2.copy()], "sigmoid", output_activation="sigmoid"
    )


def seed_loss() -> HalfSquaredError:
    """E_total = Σ ½ (target − out)²."""
    return HalfSquaredError()
