"""The layer protocol: each one a forward and its backward side by side, in torch's layouts.

A layer is a pair of functions with no hidden state:

    forward(*a_prev)        -> (z, cache)         z: the layer's output
    backward(delta, cache)  -> (delta_prev, grads)

`delta` is ∂L/∂z, `delta_prev` is ∂L/∂a_prev (a tuple for layers with several inputs),
`grads` maps torch's parameter names ("weight", "bias") to ∂L/∂θ. The cache holds exactly
what backward needs. Elementwise activations are not layers: the network applies
f and f′ around each layer (see manual_bp.network), which is where the δ recursion lives.

Every layer also has `shape(*in_shapes) -> out_shape`, the check run over the whole
network before any arithmetic; it raises ValueError with what was expected and given.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

Array = np.ndarray
Shape = tuple[int, ...]


class Layer:
    """Base of all layers: parameters by torch's names, and the forward/backward pair."""

    params: dict[str, Array]
    #: names of the parameters in the L2 penalty λ/2 Σ‖W‖² (weights of Linear and Conv).
    decayed: ClassVar[tuple[str, ...]] = ()
    #: layers whose δ = ∂L/∂z is part of a trace (Linear and Conv).
    reports_delta: ClassVar[bool] = False
    #: how many tensors forward takes (variadic layers such as Add and Cat set it per instance)
    n_inputs: int = 1

    def __init__(self) -> None:
        self.params = {}

    def shape(self, *in_shapes: Shape) -> Shape:
        raise NotImplementedError

    def forward(self, *a_prev: Array) -> tuple[Array, Any]:
        raise NotImplementedError

    def backward(self, delta: Array, cache: Any) -> tuple[Any, dict[str, Array]]:
        raise NotImplementedError

    def param_grads(self, delta: Array, cache: Any) -> dict[str, Array]:
        """∂L/∂θ alone, for a layer whose input needs no gradient (the network's input):
        autograd skips that product too. Layers with a cheaper way override this."""
        return self.backward(delta, cache)[1]

    def __repr__(self) -> str:
        return type(self).__name__


def _dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


def _one_or_tuple(deltas: list[Array]) -> Any:
    """The network's convention: a one-input layer returns δ_prev itself, not a 1-tuple."""
    return deltas[0] if len(deltas) == 1 else tuple(deltas)


def _axis(d: int, ndim: int, what: str, in_shape: Shape) -> int:
    """torch's dim wrapping: d in [−ndim, ndim), else ValueError."""
    if not -ndim <= d < ndim:
        raise ValueError(
            f"expected {what} in [{-ndim}, {ndim - 1}] for an input of shape {tuple(in_shape)}, "
            f"got {d}"
        )
    return d % ndim
