"""nn.RNNCell, nn.LSTMCell, nn.GRUCell: one step of the recurrent kernels (T = 1)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from manual_bp.ops.base import Array, Shape, _one_or_tuple
from manual_bp.ops.recurrent.kernels import _bias, _cell, _rnn_mode
from manual_bp.ops.recurrent.layers import (
    BPTT,
    TracedLayer,
    _check_params,
    _check_state,
    _positive_int,
)


@dataclass
class CellCache:
    """Forward's tape for one step: the kernel's tape (T = 1) and the input x (N, I)."""

    tape: Any
    x: Array
    batched: bool


class CellBase(TracedLayer):
    """nn.RNNCell / nn.LSTMCell / nn.GRUCell: one step of the kernels above.

    Takes x (N, I) or unbatched (I,), and h (LSTM: h and c) of shape (N, H) / (H,) when
    built with `initial_state=True` (else zero). Returns h′ (LSTM: the pair (h′, c′),
    n_outputs = 2). Parameters: weight_ih, weight_hh, bias_ih, bias_hh (torch's names).
    The inner trace (backward_trace's BPTT, key "") has no time axis: δ (N, G·H), ∂L/∂h′ (N, H).
    """

    reports_delta = True
    decayed = ()
    OPTIONS: ClassVar[tuple[str, ...]] = ("input_size", "hidden_size", "bias")

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        params: Mapping[str, Any],
        initial_state: bool = False,
    ) -> None:
        super().__init__()
        self.cell = _cell(mode)
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.bias, self.initial_state = bool(bias), bool(initial_state)
        self.n_inputs = 1 + (self.cell.n_states if self.initial_state else 0)
        self.n_outputs = self.cell.n_states
        GH, H = self.cell.gates * self.hidden_size, self.hidden_size
        expected: dict[str, Shape] = {"weight_ih": (GH, self.input_size), "weight_hh": (GH, H)}
        if self.bias:
            expected |= {"bias_ih": (GH,), "bias_hh": (GH,)}
        self.params = _check_params(type(self).__name__, params, expected)

    def __repr__(self) -> str:
        opts = f"{self.input_size}, {self.hidden_size}"
        opts += "" if self.bias else ", bias=False"
        opts += ", initial_state=True" if self.initial_state else ""
        return f"{type(self).__name__}({opts})"

    def shape(self, *in_shapes: Shape) -> Shape | tuple[Shape, ...]:
        if len(in_shapes) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} input(s), got {len(in_shapes)}")
        x = tuple(in_shapes[0])
        if len(x) not in (1, 2) or x[-1] != self.input_size:
            raise ValueError(
                f"expected input (N, {self.input_size}) or unbatched ({self.input_size},), "
                f"got shape {x}"
            )
        h_shape = (*x[:-1], self.hidden_size)
        for name, got in zip(("h", "c"), in_shapes[1:], strict=False):
            _check_state(name, got, h_shape)
        return h_shape if self.n_outputs == 1 else (h_shape, h_shape)

    def forward(self, *a_prev: Array) -> tuple[Any, CellCache]:
        a_prev = tuple(np.asarray(a, dtype=np.float64) for a in a_prev)
        self.shape(*(a.shape for a in a_prev))
        batched = a_prev[0].ndim == 2
        x = a_prev[0] if batched else a_prev[0][None]  # (N, I)
        states = [s if batched else s[None] for s in a_prev[1:]]
        if not states:
            states = [np.zeros((len(x), self.hidden_size))] * self.cell.n_states
        p = self.params
        gx = (x @ p["weight_ih"].T + _bias(p, "bias_ih"))[None]  # (1, N, G·H)
        h, final, tape = self.cell.forward(gx, tuple(states), p)
        outs = [v if batched else v[0] for v in final]  # h′ (, c′), each (N, H)
        return _one_or_tuple(outs), CellCache(tape, x, batched)

    def backward_trace(
        self, delta: Any, cache: CellCache, *, input_grad: bool = True
    ) -> tuple[Any, dict[str, Array], BPTT]:
        """One step of the layer's BPTT: ∂L/∂x = δ W_ih, ∂L/∂W_ih = δᵀ x, plus the kernel's."""
        tape, x, batched = cache.tape, cache.x, cache.batched
        deltas = (delta,) if self.n_outputs == 1 else delta
        if not isinstance(deltas, tuple) or len(deltas) != self.n_outputs:
            raise ValueError(
                f"{type(self).__name__} has {self.n_outputs} output(s); backward expects "
                f"{'a tuple of 2 δ' if self.n_outputs == 2 else 'one δ'}, "
                f"got {type(delta).__name__}"
            )
        deltas = tuple(
            None if d is None else (np.asarray(d) if batched else np.asarray(d)[None])
            for d in deltas
        )
        H = self.hidden_size
        # the new state h′ is the kernel's final state; its "output sequence" gets no δ
        zero_out = np.zeros((1, len(x), H))
        delta_k, d_state0, g_hh, trace = self.cell.backward(zero_out, deltas, tape, self.params)
        delta_k = delta_k[0]  # (N, G·H)
        grads = {"weight_ih": delta_k.T @ x, "weight_hh": g_hh["weight_hh"]}
        if self.bias:
            grads |= {"bias_ih": delta_k.sum(axis=0), "bias_hh": g_hh["bias_hh"]}
        grads = {name: grads[name] for name in self.params}
        bptt = BPTT()
        bptt.add("", delta_k, {name: a[0] for name, a in trace.items()})
        d_x = delta_k @ self.params["weight_ih"] if input_grad else None
        unbatch = (lambda a: a) if batched else (lambda a: None if a is None else a[0])
        if not self.initial_state:
            return unbatch(d_x), grads, bptt
        return tuple(unbatch(a) for a in (d_x, *d_state0)), grads, bptt


class RNNCell(CellBase):
    """nn.RNNCell: h′ = f(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)."""

    OPTIONS = (*CellBase.OPTIONS, "nonlinearity")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        params: Mapping[str, Any],
        initial_state: bool = False,
    ) -> None:
        self.nonlinearity = nonlinearity
        super().__init__(
            _rnn_mode(nonlinearity), input_size, hidden_size, bias, params=params,
            initial_state=initial_state,
        )  # fmt: skip


class LSTMCell(CellBase):
    """nn.LSTMCell: (h′, c′) from one LSTM step."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        params: Mapping[str, Any],
        initial_state: bool = False,
    ) -> None:
        super().__init__(
            "LSTM", input_size, hidden_size, bias, params=params, initial_state=initial_state
        )


class GRUCell(CellBase):
    """nn.GRUCell: h′ from one GRU step."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        params: Mapping[str, Any],
        initial_state: bool = False,
    ) -> None:
        super().__init__(
            "GRU", input_size, hidden_size, bias, params=params, initial_state=initial_state
        )
