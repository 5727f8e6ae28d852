"""manual_bp: backpropagation written out explicitly in NumPy (float64), the core that the
oracle (torch_ref) runs and a library of its own. NumPy and SciPy only, never torch; layouts
are torch's (a Linear weight is (out, in), images NCHW).

    z^(l) = W^(l) a^(l-1) + b^(l),   a^(l) = f(z^(l))
    δ^(l) = f′(z^(l)) ⊙ (W^(l+1))ᵀ δ^(l+1),   ∂L/∂W^(l) = δ^(l) (a^(l-1))ᵀ,   ∂L/∂b^(l) = δ^(l)

Its modules:

- `ops`: every layer and op, a module per family (`activations`, `linear`, `conv`, `pooling`,
  `normalization`, `recurrent`, `attention`, `embedding`, `shape`, `arithmetic`, ...). A
  layer is a pair, `forward(a_prev) -> (z, cache)` and `backward(delta, cache) ->
  (delta_prev, grads)`, side by side, its formula in its docstring.
- `network`: the δ recursion, written once (`Network`, `mlp`).
- `losses`: each loss's value and ∂L/∂output, by name (`get_loss`).
- `optim`: SGD, Adam and gradient clipping, as torch computes them.
- `parallel`: the NumPy pass on several cores without spinning thread pools.
- `examples`: the networks of the worked examples (reports/worked_example*.md).
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
