"""Packed sequences (torch.nn.utils.rnn.PackedSequence): the layout, its two moves, and a
recurrent layer run on it.

A PackedSequence holds B sequences sorted by length, L_0 ≥ L_1 ≥ … ≥ L_{B−1} ≥ 1, as `data`
(Σ_b L_b, *): step 0 of every sample, then step 1 of the samples still running, and so on;
`batch_sizes[t]` = #{b : L_b > t}. Against the padded, time-major batch x (T, B, *):

    pack   data = x[v]                          ∂L/∂x = 0 off v,  (∂L/∂x)[v] = ∂L/∂data
    pad    x = padding_value,  x[v] = data      ∂L/∂data = (∂L/∂x)[v]

with v[t, b] = t < L_b: NumPy's boolean indexing walks v row by row, t first, which is the
packed order. Pack is a gather and pad its adjoint scatter (the padding carries no gradient).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape
from manual_bp.ops.recurrent.layers import BPTT, RecurrentCache, RNNBase, TracedLayer


def lengths_of(batch_sizes: Sequence[int] | Array) -> Array:
    """L_b = #{t : batch_sizes[t] > b}, the sample lengths of a packed batch (sorted order)."""
    bs = np.asarray(batch_sizes, dtype=np.int64)
    return (bs[None, :] > np.arange(bs[0])[:, None]).sum(axis=1)


def valid_steps(lengths: Array, T: int) -> Array:
    """v[t, b] = t < L_b, (T, B): the steps inside each sample's sequence."""
    return np.arange(T)[:, None] < np.asarray(lengths)[None, :]


def pack(x: Array, lengths: Array) -> Array:
    """data = x[v]: the padded time-major x (T, B, *) as packed rows (Σ L_b, *)."""
    return x[valid_steps(lengths, x.shape[0])]


def pad(data: Array, lengths: Array, T: int, padding_value: float = 0.0) -> Array:
    """x = padding_value, x[v] = data: packed rows back to the padded time-major (T, B, *)."""
    x = np.full((T, len(lengths), *data.shape[1:]), float(padding_value))
    x[valid_steps(lengths, T)] = data
    return x


def _check_lengths(what: str, lengths: Any) -> Array:
    L = np.asarray(lengths)
    if L.ndim != 1 or len(L) == 0 or not np.issubdtype(L.dtype, np.integer) or L.min() < 1:
        raise ValueError(f"{what}: expected 1-d integer lengths, each ≥ 1; got {L.tolist()}")
    if np.any(np.diff(L) > 0):
        raise ValueError(
            f"{what}: `lengths` array must be sorted in decreasing order, got {L.tolist()} "
            "(enforce_sorted=False sorts them)"
        )
    return L.astype(np.int64)


def _time_major(a: Array, batch_first: bool) -> Array:
    return np.swapaxes(a, 0, 1) if batch_first else a


class PackPadded(Layer):
    """torch._pack_padded_sequence(x, lengths, batch_first): data = x[v] (time-major x).

    x is (T, B, *), or (B, T, *) with batch_first, its samples sorted by decreasing length."""

    def __init__(self, lengths: Sequence[int] | Array, batch_first: bool = False) -> None:
        super().__init__()
        self.lengths = _check_lengths("pack_padded_sequence", lengths)
        self.batch_first = bool(batch_first)

    def __repr__(self) -> str:
        return f"PackPadded(lengths={self.lengths.tolist()}, batch_first={self.batch_first})"

    def shape(self, x: Shape) -> Shape:
        T, B = (x[1], x[0]) if self.batch_first else (x[0], x[1] if len(x) > 1 else None)
        if len(x) < 2 or B != len(self.lengths) or self.lengths[0] > T:
            layout = "(B, T, *)" if self.batch_first else "(T, B, *)"
            raise ValueError(
                f"expected input {layout} with B = {len(self.lengths)} and T ≥ "
                f"{self.lengths[0]} (the lengths {self.lengths.tolist()}), got shape {tuple(x)}"
            )
        return (int(self.lengths.sum()), *x[2:])

    def forward(self, x: Array) -> tuple[Array, tuple[int, ...]]:
        x = np.asarray(x)
        self.shape(x.shape)
        return pack(_time_major(x, self.batch_first), self.lengths), x.shape

    def backward(self, delta: Array, cache: tuple[int, ...]) -> tuple[Array, dict[str, Array]]:
        """∂L/∂x = pad(∂L/∂data) with zeros: the padded steps reach no output."""
        T = cache[1] if self.batch_first else cache[0]
        return _time_major(pad(delta, self.lengths, T), self.batch_first), {}


class PadPacked(Layer):
    """torch._pad_packed_sequence(data, batch_sizes, batch_first, padding_value, T):
    x = padding_value, x[v] = data; (T, B, *), or (B, T, *) with batch_first."""

    def __init__(self, batch_sizes: Sequence[int] | Array, batch_first: bool = False,
                 padding_value: float = 0.0, total_length: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.lengths = lengths_of(batch_sizes)
        self.batch_first, self.padding_value = bool(batch_first), float(padding_value)
        self.T = len(batch_sizes) if total_length is None else int(total_length)
        if self.T < len(batch_sizes):
            raise ValueError(
                f"expected total_length ≥ the longest sequence's {len(batch_sizes)}, got {self.T}"
            )

    def __repr__(self) -> str:
        return (
            f"PadPacked(lengths={self.lengths.tolist()}, batch_first={self.batch_first}, "
            f"padding_value={self.padding_value}, total_length={self.T})"
        )

    def shape(self, data: Shape) -> Shape:
        if len(data) < 1 or data[0] != self.lengths.sum():
            raise ValueError(
                f"expected packed data of {self.lengths.sum()} rows (the lengths "
                f"{self.lengths.tolist()}), got shape {tuple(data)}"
            )
        T, B = self.T, len(self.lengths)
        return (B, T, *data[1:]) if self.batch_first else (T, B, *data[1:])

    def forward(self, data: Array) -> tuple[Array, None]:
        data = np.asarray(data, dtype=np.float64)
        self.shape(data.shape)
        x = pad(data, self.lengths, self.T, self.padding_value)
        return _time_major(x, self.batch_first), None

    def backward(self, delta: Array, cache: None) -> tuple[Array, dict[str, Array]]:
        """∂L/∂data = (∂L/∂x)[v]: padding_value is a constant."""
        return pack(_time_major(np.asarray(delta), self.batch_first), self.lengths), {}


class PackedRNN(TracedLayer):
    """nn.RNN / nn.LSTM / nn.GRU called on a PackedSequence: packed data in, packed data out.

        x = pad(data);  h0 ← h0[:, sorted];  (out, h_n) = layer(x, h0);
        data′ = pack(out);  h_n ← h_n[:, unsorted]

    `layer` is built sequence-first with the sorted `lengths` (RNNBase: each sample's steps
    past its length leave its state as it was); `sorted_indices` is the PackedSequence's
    (None: the batch came sorted), and the states (h0 in, h_n out) are in the caller's order,
    as torch's. The inner trace is the layer's BPTT, time-major, in the sorted order."""

    reports_delta = True
    decayed = ()

    def __init__(self, layer: RNNBase, sorted_indices: Sequence[int] | Array | None) -> None:
        super().__init__()
        if layer.lengths is None or layer.batch_first:
            raise ValueError("PackedRNN: expected a sequence-first layer built with lengths")
        self.layer, self.params = layer, layer.params
        self.lengths = _check_lengths("PackedRNN", layer.lengths)
        B = len(self.lengths)
        order = np.arange(B) if sorted_indices is None else np.asarray(sorted_indices, np.int64)
        if sorted(order.tolist()) != list(range(B)):
            raise ValueError(f"PackedRNN: sorted_indices {order.tolist()} is not a permutation")
        self.order, self.unorder = order, np.argsort(order)  # sorted = caller's[:, order]
        self.n_inputs, self.n_outputs = layer.n_inputs, layer.n_outputs

    def __repr__(self) -> str:
        return f"PackedRNN({self.layer!r}, sorted_indices={self.order.tolist()})"

    def shape(self, data: Shape, *states: Shape) -> tuple[Shape, ...]:
        rows, T = int(self.lengths.sum()), int(self.lengths[0])
        if len(data) != 2 or data[0] != rows:
            raise ValueError(
                f"expected packed data ({rows}, I) (the lengths {self.lengths.tolist()}), "
                f"got shape {tuple(data)}"
            )
        out, *finals = self.layer.shape((T, len(self.lengths), data[1]), *states)
        return ((rows, out[-1]), *finals)

    def forward(self, *a_prev: Array) -> tuple[tuple[Array, ...], RecurrentCache]:
        self.shape(*(np.shape(a) for a in a_prev))
        data, *states = (np.asarray(a, dtype=np.float64) for a in a_prev)
        x = pad(data, self.lengths, int(self.lengths[0]))  # (T, B, I)
        (out, *finals), cache = self.layer.forward(x, *(s[:, self.order] for s in states))
        return (pack(out, self.lengths), *(f[:, self.unorder] for f in finals)), cache

    def backward_trace(
        self, delta: tuple[Array | None, ...], cache: RecurrentCache, *, input_grad: bool = True
    ) -> tuple[Any, dict[str, Array], BPTT]:
        """The layer's BPTT on pad(∂L/∂data′), ∂L/∂h_n sorted; ∂L/∂data = pack(∂L/∂x)."""
        if not isinstance(delta, tuple) or len(delta) != self.n_outputs:
            raise ValueError(
                f"PackedRNN has {self.n_outputs} outputs; backward expects a tuple of "
                f"{self.n_outputs} δ (None for an unused output), got {type(delta).__name__}"
            )
        d_data, *d_finals = delta
        T = int(self.lengths[0])
        d_out = None if d_data is None else pad(np.asarray(d_data), self.lengths, T)
        d_finals = [None if d is None else np.asarray(d)[:, self.order] for d in d_finals]
        d_prev, grads, bptt = self.layer.backward_trace(
            (d_out, *d_finals), cache, input_grad=input_grad
        )
        d_x, *d_states = d_prev if self.layer.initial_state else (d_prev,)
        d_data_prev = None if d_x is None else pack(d_x, self.lengths)
        if not self.layer.initial_state:
            return d_data_prev, grads, bptt
        return (d_data_prev, *(d[:, self.unorder] for d in d_states)), grads, bptt
