"""manual_bp: backpropagation written out explicitly in NumPy (float64).

    z^(l) = W^(l) a^(l-1) + b^(l),   a^(l) = f(z^(l))
    δ^(l) = f′(z^(l)) ⊙ (W^(l+1))ᵀ δ^(l+1),   ∂L/∂W^(l) = δ^(l) (a^(l-1))ᵀ,   ∂L/∂b^(l) = δ^(l)

One module per concept: `activations` (name → f, f′), `layers` (Linear and the shape-only
layers), `conv` and `pooling` (CNNs), `normalization`, `graph_ops` (the ops of traced
models), `network` (the δ recursion, written once), `losses`, `initializers`, `optim`,
`meanfield` (the theory of gradient flow) and `flow` (its measurement). NumPy only.
"""

from manual_bp.losses import LOSSES, get_loss
from manual_bp.network import Gradients, Network, Node, Result, Tape, mlp
from manual_bp.ops import Flatten, Identity, Layer, Linear, LogSoftmax, Softmax
from manual_bp.ops.activations import ACTIVATIONS, Activation, get_activation
from manual_bp.optim import SGD

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "SGD",
    "Activation",
    "Flatten",
    "Gradients",
    "Identity",
    "Layer",
    "Linear",
    "LogSoftmax",
    "Network",
    "Node",
    "Result",
    "Softmax",
    "Tape",
    "get_activation",
    "get_loss",
    "mlp",
]
