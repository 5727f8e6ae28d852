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

Layers with several outputs (an LSTM's out, h_n, c_n; chunk) set `n_outputs` = k > 1:
forward returns a tuple of k arrays, shape a tuple of k shapes, and backward receives a
tuple of k δ, None for an output the loss does not depend on (a zero δ).

An inner trace. A layer whose backward computes more than δ_prev and ∂L/∂θ that a reader
wants (a recurrent layer's δ and ∂L/∂h at every time step) declares it: `inner_trace =
True`, and `backward_trace(delta, cache) -> (delta_prev, grads, record)` returns the record
beside the pair (`backward` is the same without it). The network keeps the records of a
traced run in `Gradients.traces`; no layer writes into its cache.

Kinks and ties. Where a layer's backward takes a branch decided by its forward values (max
pooling's winner, a clamp's bounds, relu's sign), float64 rounding can decide the branch
when a value sits on the kink: torch and NumPy then take valid but different subgradients.
`ties(*a_prev)` names those entries: for each input, a boolean mask of the entries within
TIE_RTOL (relative to the magnitude of the values involved) of a kink or tie, or None. The
oracle replays only those entries with torch's forward values (see torch_ref.oracle); every
other entry is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

Array = np.ndarray
Shape = tuple[int, ...]

#: How close to a kink or a tie an entry must be for rounding to decide its branch: within
#: TIE_RTOL · scale, scale the largest magnitude among the values involved (the op's input
#: over the whole tensor, or the kink's own position). Float64 rounding leaves ~1e-16 per
#: operation; normalising a constant channel amplifies it by 1/√eps ≈ 300. 1e-9 keeps three
#: orders of magnitude above both and far below any value a formula bug could produce.
TIE_RTOL = 1e-9


def near(x: Array, points: tuple[float, ...], scale: float | None = None) -> Array:
    """Entries of x within TIE_RTOL · scale of any of `points` (the kinks of an elementwise
    f); scale defaults to max(max|x|, max|points|) over the finite ones. An infinite point
    (a comparison with −inf) is near only the entries equal to it."""
    finite = tuple(p for p in points if np.isfinite(p))
    if scale is None:
        top = float(np.max(np.abs(x), where=np.isfinite(x), initial=0.0))
        scale = max([top, *(abs(p) for p in finite)])
    tol = TIE_RTOL * scale
    mask = np.zeros(x.shape, dtype=bool)
    for p in points:
        mask |= (np.abs(x - p) <= tol) if np.isfinite(p) else (x == p)
    return mask


class Layer:
    """Base of all layers: parameters by torch's names, and the forward/backward pair."""

    params: dict[str, Array]
    #: names of the parameters in the L2 penalty λ/2 Σ‖W‖² (weights of Linear and Conv).
    decayed: ClassVar[tuple[str, ...]] = ()
    #: layers whose δ = ∂L/∂z is part of a trace (Linear and Conv).
    reports_delta: ClassVar[bool] = False
    #: how many tensors forward takes (variadic layers such as Add and Cat set it per instance)
    n_inputs: int = 1
    #: how many tensors forward returns: 1 (an array) or k > 1 (a tuple of k arrays)
    n_outputs: int = 1
    #: takes integer or bool inputs: indices and token ids (Embedding), or values it only
    #: moves (reshape, cat); other layers need floating inputs, as torch's do
    integer_inputs: ClassVar[bool] = False
    #: the dtype kind of the output when it is not the inputs' ("bool" for a comparison);
    #: for a layer with several outputs, `output_dtypes` gives one per output
    output_dtype: ClassVar[str | None] = None
    output_dtypes: ClassVar[tuple[str, ...] | None] = None
    #: backward also computes a record of what happened inside the layer, which
    #: `backward_trace` returns (recurrent layers: the BPTT record of every time step)
    inner_trace: ClassVar[bool] = False

    def __init__(self) -> None:
        self.params = {}

    def shape(self, *in_shapes: Shape) -> Shape:
        raise NotImplementedError

    def forward(self, *a_prev: Array) -> tuple[Array, Any]:
        raise NotImplementedError

    def backward(self, delta: Array, cache: Any) -> tuple[Any, dict[str, Array]]:
        raise NotImplementedError

    def backward_trace(
        self, delta: Array, cache: Any, *, input_grad: bool = True
    ) -> tuple[Any, dict[str, Array], Any]:
        """(δ_prev, ∂L/∂θ, record): backward and the layer's inner record (None without one).
        With input_grad=False δ_prev is not formed (None) and only ∂L/∂θ is computed."""
        if not input_grad:
            return None, self.param_grads(delta, cache), None
        return (*self.backward(delta, cache), None)

    def ties(self, *a_prev: Array) -> tuple[Array | None, ...] | None:
        """For each input, the entries within rounding distance of a kink or tie of this
        layer's forward (a boolean mask), or None where there is none. None: no kinks."""
        return None

    def param_grads(self, delta: Array, cache: Any) -> dict[str, Array]:
        """∂L/∂θ alone, for a layer whose input needs no gradient (the network's input):
        autograd skips that product too. Layers with a cheaper way override this."""
        return self.backward(delta, cache)[1]

    def __repr__(self) -> str:
        return type(self).__name__


def zeros_like(a: Array) -> Array:
    """np.zeros_like(a); for a plain C-contiguous array that is np.zeros of its shape and dtype,
    made without zeros_like's per-call cost (a gradient buffer of a small layer)."""
    if type(a) is np.ndarray and a.flags.c_contiguous:
        return np.zeros(a.shape, a.dtype)
    return np.zeros_like(a)


def inverse_permutation(dims: Sequence[int]) -> tuple[int, ...]:
    """dims⁻¹: inverse[dims[i]] = i, so that a.transpose(dims).transpose(inverse) is a."""
    inverse = [0] * len(dims)
    for i, d in enumerate(dims):
        inverse[d] = i
    return tuple(inverse)


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
