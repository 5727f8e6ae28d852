"""Recurrent layers (manual_bp.ops.recurrent): nn.RNN, nn.LSTM, nn.GRU and their cells, with
backprop through time written out beside the forward.

A module row calls its rule the way torch calls the module, `rule(input, hx=None)`, with the
module's attributes and its parameters by torch's names (weight_ih_l0, …, weight_hr_l0)
as keywords. The layer holds float64 copies of the parameters, fused by qualified name
("encoder.lstm.weight_ih_l0"). An initial state given as `hx` (a tensor; for the LSTM the
pair (h0, c0)) becomes extra inputs of the layer, computed values or model tensors alike
(a learned `self.h0`, or `torch.zeros(...)` made in forward()); without it the state starts
at zero, as torch's. The outputs come back as torch returns them, so

    out, (h_n, c_n) = self.lstm(x, (h0, c0))      out, h_n = self.gru(x)
    h, c = self.cell(x, (h, c))                    h = self.gru_cell(x, h)

all trace. The trace reports each layer's δ of every time step (torch_ref.oracle.Trace).

A PackedSequence as the input (`self.lstm(packed, hx)`) traces too: torch_ref.registry.packed
holds its rule and the rows of the packing ops.

Refused: inter-layer dropout in training mode (random), and what the manual layer refuses
(shapes, proj_size).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence

from manual_bp.ops import recurrent as R
from torch_ref.registry.core import (
    Op,
    OpEntry,
    Param,
    Ref,
    Refusal,
    Sample,
    array,
    fused,
    param_arg,
    tensor,
)
from torch_ref.registry.packed import on_packed, packed_samples


def _states(hx: Any, n_states: int, what: str) -> tuple[Ref | Param, ...]:
    """hx as the layer's extra inputs: () for None, (h0,) or, for the LSTM, (h0, c0)."""
    if hx is None:
        return ()
    if n_states == 1:
        if isinstance(hx, (tuple, list)):
            raise ValueError(f"{what}: expected hx as one tensor h0, got a {type(hx).__name__}")
        return (tensor(hx, f"{what} (h0)"),)
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        got = f"a {type(hx).__name__} of {len(hx)}" if isinstance(hx, (tuple, list)) else "one"
        raise ValueError(f"{what}: expected hx as a pair of tensors (h0, c0), got {got}")
    return tuple(tensor(s, f"{what} ({n})") for s, n in zip(hx, ("h0", "c0"), strict=True))


def _weights(what: str, weights: dict[str, Any]) -> dict[str, Param]:
    return {name: param_arg(w, what, name) for name, w in weights.items()}


#: how torch returns the outputs, from the layer's Select nodes
_AS_TORCH: dict[int, Callable[[tuple[Ref, ...]], Any]] = {
    2: lambda o: (o[0], o[1]),  # (out, h_n); LSTMCell: (h′, c′)
    3: lambda o: (o[0], (o[1], o[2])),  # LSTM: (out, (h_n, c_n))
}


def recurrent_rule(cls: type[R.RNNBase]) -> Callable[..., Op]:
    """`module(input, hx=None)` for nn.RNN / nn.LSTM / nn.GRU as the manual layer `cls`:
    the module's OPTIONS, `training`, and its parameters by torch's names as keywords."""
    what = f"nn.{cls.__name__}"

    def rule(input: Any, hx: Any = None, *, training: bool = False, **kwargs: Any) -> Op:
        packed = isinstance(input, PackedSequence)
        x = tensor(input.data if packed else input, what)
        options = {k: kwargs.pop(k) for k in cls.OPTIONS if k in kwargs}
        dropout, layers = options.get("dropout", 0.0), options.get("num_layers", 1)
        if training and dropout > 0 and layers > 1:
            raise ValueError(
                f"{what} is in training mode with dropout={dropout} between its {layers} "
                "layers: the mask is random, so no reference gradient exists; expected "
                "model.eval() (or dropout=0)"
            )
        states = _states(hx, 2 if cls is R.LSTM else 1, what)
        weights = _weights(what, kwargs)
        params = {n: array(p) for n, p in weights.items()}
        if packed:
            return on_packed(cls, input, x, states, options, params, weights, _AS_TORCH)
        layer = cls(**options, params=params, initial_state=bool(states))
        return Op(layer, (x, *states), fused(**weights), outputs=_AS_TORCH[layer.n_outputs])

    rule.__name__ = cls.__name__.lower()
    rule.__doc__ = f"nn.{cls.__name__}(...)(input, hx=None) as manual_bp's {cls.__name__}."
    return rule


def cell_rule(cls: type[R.CellBase]) -> Callable[..., Op]:
    """`cell(input, hx=None)` for nn.RNNCell / nn.LSTMCell / nn.GRUCell: one step."""
    what = f"nn.{cls.__name__}"

    def rule(input: Any, hx: Any = None, **kwargs: Any) -> Op:
        x = tensor(input, what)
        options = {k: kwargs.pop(k) for k in cls.OPTIONS if k in kwargs}
        states = _states(hx, 2 if cls is R.LSTMCell else 1, what)
        weights = _weights(what, kwargs)
        layer = cls(
            **options,
            params={n: array(p) for n, p in weights.items()},
            initial_state=bool(states),
        )
        outputs = _AS_TORCH[layer.n_outputs] if layer.n_outputs > 1 else None
        return Op(layer, (x, *states), fused(**weights), outputs=outputs)

    rule.__name__ = cls.__name__.lower()
    rule.__doc__ = f"nn.{cls.__name__}(...)(input, hx=None) as manual_bp's {cls.__name__}."
    return rule


def module_args(cls: type[R.RNNBase] | type[R.CellBase]) -> Callable[[nn.Module], dict[str, Any]]:
    """The module's attributes the manual layer takes, its training flag, its parameters."""

    def args(m: nn.Module) -> dict[str, Any]:
        out = {a: getattr(m, a) for a in cls.OPTIONS}
        if isinstance(m, nn.RNNBase):
            out["training"] = m.training
            names = m._flat_weights_names  # torch's own list, in order, tied names included
        else:
            names = ["weight_ih", "weight_hh", *(["bias_ih", "bias_hh"] if m.bias else [])]
        return out | {n: getattr(m, n) for n in names}

    return args


# --- samples and refusals ------------------------------------------------------------


class Uses(nn.Module):
    """A recurrent module whose every output reaches the loss: `rnn(x, hx)` with hx from the
    inputs after x (h0; the LSTM's h0, c0), or from learned initial states, all outputs
    flattened into one vector."""

    def __init__(self, rnn: nn.Module, learned_state: bool = False) -> None:
        super().__init__()
        self.rnn = rnn
        self.h0 = self.c0 = None
        if learned_state:
            g = torch.Generator().manual_seed(1)
            shapes = _state_shapes(rnn)
            self.h0 = nn.Parameter(torch.randn(shapes[0], generator=g, dtype=torch.float64))
            if len(shapes) == 2:
                self.c0 = nn.Parameter(torch.randn(shapes[1], generator=g, dtype=torch.float64))

    def forward(self, x: torch.Tensor, *states: torch.Tensor) -> torch.Tensor:
        if self.h0 is not None:
            states = (self.h0,) if self.c0 is None else (self.h0, self.c0)
        hx = None if not states else states[0] if len(states) == 1 else tuple(states)
        outs = self.rnn(x, hx)
        flat: list[torch.Tensor] = []
        for o in outs if isinstance(outs, tuple) else (outs,):
            flat.extend(o if isinstance(o, tuple) else (o,))
        return torch.cat([o.flatten() for o in flat])


def _state_shapes(m: nn.Module) -> list[tuple[int, ...]]:
    """h0 (and c0) shapes for a batch of 3, as the samples use."""
    if isinstance(m, nn.RNNBase):
        LD = m.num_layers * (2 if m.bidirectional else 1)
        shapes = [(LD, 3, m.proj_size or m.hidden_size), (LD, 3, m.hidden_size)]
    else:
        shapes = [(3, m.hidden_size)] * 2
    return shapes[: 2 if isinstance(m, (nn.LSTM, nn.LSTMCell)) else 1]


def _built(make: Callable[[], nn.Module], seed: int) -> nn.Module:
    """A torch module in float64 with torch's own init, drawn from `seed` (global random
    state untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make().double()


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _sample(name: str, make: Callable[[], nn.Module], x_shape: tuple[int, ...], *,
            hx: bool = False, learned: bool = False, train: bool = False,
            positive: bool = False) -> Sample:  # fmt: skip
    """`make()` on random inputs of x_shape (and states with `hx`); `positive`: every
    weight, input and state drawn positive."""
    seed = zlib.crc32(name.encode())
    module = _built(make, seed)
    x = _randn(*x_shape, seed=seed + 1)
    states: tuple[torch.Tensor, ...] = ()
    if hx:
        shapes = _state_shapes(module)
        batched = len(x_shape) == (3 if isinstance(module, nn.RNNBase) else 2)
        if not batched:  # unbatched: no N in the states either
            shapes = [s[:-2] + s[-1:] for s in shapes]
        states = tuple(_randn(*s, seed=k) for k, s in enumerate(shapes))
    if positive:
        with torch.no_grad():
            for p in module.parameters():
                p.abs_()
        x, states = x.abs(), tuple(s.abs() for s in states)
    return Sample(name, (x, *states), module=Uses(module, learned), train=train)


def _rnn_samples() -> list[Sample]:
    return [
        _sample("tanh, sequence-first (T, N, I)", lambda: nn.RNN(3, 4), (5, 3, 3)),
        _sample(
            "relu, 2 layers, bidirectional, batch_first, h0 given",
            lambda: nn.RNN(3, 4, 2, nonlinearity="relu", batch_first=True, bidirectional=True),
            (3, 5, 3),
            hx=True,
        ),
        _sample(
            "no bias, unbatched (T, I), h0 given", lambda: nn.RNN(2, 3, bias=False), (4, 2), hx=True
        ),  # fmt: skip
        _sample(
            "2 layers, dropout=0: training mode too",
            lambda: nn.RNN(3, 2, num_layers=2, dropout=0.0),
            (4, 3, 3),
            train=True,
        ),
        _sample("learned h0 (a parameter)", lambda: nn.RNN(3, 4), (5, 3, 3), learned=True),
    ]


def _lstm_samples() -> list[Sample]:
    return [
        _sample("1 layer, sequence-first", lambda: nn.LSTM(3, 4), (6, 3, 3)),
        _sample(
            "2 layers, bidirectional, (h0, c0) given",
            lambda: nn.LSTM(3, 4, num_layers=2, bidirectional=True),
            (4, 3, 3),
            hx=True,
        ),
        _sample(
            "proj_size, 2 layers, batch_first, no bias",
            lambda: nn.LSTM(3, 4, num_layers=2, batch_first=True, proj_size=2, bias=False),
            (3, 5, 3),
        ),
        _sample(
            "proj_size, bidirectional, (h0, c0) given",
            lambda: nn.LSTM(2, 3, bidirectional=True, proj_size=1),
            (4, 3, 2),
            hx=True,
        ),
        _sample(
            "3 layers, dropout=0.3 in eval mode",
            lambda: nn.LSTM(2, 3, num_layers=3, dropout=0.3),
            (3, 3, 2),
        ),
        _sample("learned (h0, c0)", lambda: nn.LSTM(3, 2, num_layers=2), (4, 3, 3), learned=True),
        _sample("unbatched (T, I), (h0, c0) given", lambda: nn.LSTM(3, 2), (5, 3), hx=True),
    ]


def _gru_samples() -> list[Sample]:
    return [
        _sample("1 layer, sequence-first", lambda: nn.GRU(3, 4), (5, 3, 3)),
        _sample(
            "2 layers, bidirectional, batch_first, h0 given",
            lambda: nn.GRU(3, 4, num_layers=2, batch_first=True, bidirectional=True),
            (3, 4, 3),
            hx=True,
        ),
        _sample(
            "no bias, training mode (nothing random in one layer)",
            lambda: nn.GRU(2, 3, bias=False),
            (4, 3, 2),
            train=True,
        ),
        _sample("unbatched (T, I), h0 given", lambda: nn.GRU(2, 3), (4, 2), hx=True),
    ]


def _cell_samples(cls: type[nn.Module]) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        name = cls.__name__
        return [
            _sample(f"{name}, zero state", lambda: cls(3, 4), (3, 3)),
            _sample(f"{name}, state given", lambda: cls(3, 4), (3, 3), hx=True),
            _sample(
                f"{name}, no bias, state given", lambda: cls(2, 3, bias=False), (3, 2), hx=True
            ),  # fmt: skip
            _sample(f"{name}, learned state", lambda: cls(3, 2), (3, 3), learned=True),
            _sample(f"{name}, unbatched, state given", lambda: cls(3, 2), (3,), hx=True),
            _sample(f"{name}, unbatched, zero state", lambda: cls(2, 3), (2,)),
        ]

    return samples


def _rnn_cell_samples() -> list[Sample]:
    """relu cells in their linear region, and tanh cells (the cell's δ of its gates stays in
    the trace; the comparison checks the gradients around it)."""

    def cell() -> nn.Module:
        return nn.RNNCell(3, 4, nonlinearity="relu")

    return [
        _sample("relu, linear region, zero state", cell, (3, 3), positive=True),
        _sample("relu, linear region, state given", cell, (3, 3), hx=True, positive=True),
        _sample(
            "relu, linear region, unbatched, state given", cell, (3,), hx=True, positive=True
        ),  # fmt: skip
        _sample(
            "relu, linear region, no bias, state given",
            lambda: nn.RNNCell(2, 3, bias=False, nonlinearity="relu"),
            (3, 2),
            hx=True,
            positive=True,
        ),  # fmt: skip
        _sample("tanh, state given", lambda: nn.RNNCell(3, 4), (3, 3), hx=True),
        _sample("tanh, unbatched, zero state", lambda: nn.RNNCell(2, 3), (2,)),
    ]


class _Hx(nn.Module):
    """rnn(x, hx) with hx as the test hands it: one tensor, or a tuple of the inputs."""

    def __init__(self, rnn: nn.Module, as_tuple: bool) -> None:
        super().__init__()
        self.rnn, self.as_tuple = rnn, as_tuple

    def forward(self, x: torch.Tensor, *states: torch.Tensor) -> torch.Tensor:
        out = self.rnn(x, tuple(states) if self.as_tuple else states[0])
        return out[0] if isinstance(out, tuple) else out


def _refusal(name: str, make: Callable[[], nn.Module], inputs: tuple[tuple[int, ...], ...],
             match: str, *, as_tuple: bool | None = None,
             error: type[Exception] = ValueError) -> Refusal:  # fmt: skip
    """A refusal of `make()` called on float64 inputs of these shapes: through Uses, or with
    hx handed as one tensor (as_tuple=False) or a tuple (True)."""
    module = _built(make, 0)
    xs = tuple(_randn(*s, seed=k) for k, s in enumerate(inputs))
    wrapper = Uses(module) if as_tuple is None else _Hx(module, as_tuple)
    return Refusal(name, xs, error, match, module=wrapper)


def _rnn_refusals() -> list[Refusal]:
    return [
        _refusal(
            "input of the wrong size",
            lambda: nn.RNN(3, 4),
            ((4, 2, 5),),
            r"expected input \(T, N, I\) or unbatched \(T, I\) with I = 3, got shape \(4, 2, 5\)",
        ),
        _refusal(
            "batch_first input of the wrong rank",
            lambda: nn.RNN(3, 4, batch_first=True),
            ((2, 4, 1, 3),),
            r"expected input \(N, T, I\) or unbatched \(T, I\)",
        ),
        Refusal(
            "integer input",
            (torch.ones(4, 2, 3, dtype=torch.int64),),
            ValueError,
            "expects floating inputs",
            module=Uses(_built(lambda: nn.RNN(3, 4), 0)),
        ),
    ]


def _lstm_refusals() -> list[Refusal]:
    return [
        _refusal(
            "training mode with dropout between layers",
            lambda: nn.LSTM(3, 4, num_layers=2, dropout=0.5).train(),
            ((4, 2, 3),),
            r"training mode with dropout=0.5 between its 2 layers: the mask is random",
        ),
        _refusal(
            "hx as one tensor",
            lambda: nn.LSTM(3, 4),
            ((4, 2, 3), (1, 2, 4)),
            r"expected hx as a pair of tensors \(h0, c0\), got one",
            as_tuple=False,
        ),
        _refusal(
            "c0 of the wrong shape (proj_size: h0 has P, c0 has H)",
            lambda: nn.LSTM(3, 4, proj_size=2),
            ((4, 2, 3), (1, 2, 2), (1, 2, 2)),
            r"expected c0 of shape \(1, 2, 4\), got \(1, 2, 2\)",
            as_tuple=True,
        ),
    ]


def _gru_refusals() -> list[Refusal]:
    return [
        _refusal(
            "h0 of the wrong shape",
            lambda: nn.GRU(3, 4),
            ((4, 2, 3), (2, 2, 4)),
            r"expected h0 of shape \(1, 2, 4\), got \(2, 2, 4\)",
            as_tuple=False,
        ),
        _refusal(
            "hx as a tuple",
            lambda: nn.GRU(3, 4),
            ((4, 2, 3), (1, 2, 4)),
            r"expected hx as one tensor h0, got a tuple",
            as_tuple=True,
        ),
    ]


def _cell_refusals(cls: type[nn.Module]) -> Callable[[], list[Refusal]]:
    def refusals() -> list[Refusal]:
        out = [
            _refusal(
                "input of the wrong size",
                lambda: cls(3, 4),
                ((2, 5),),
                r"expected input \(N, 3\) or unbatched \(3,\), got shape \(2, 5\)",
            ),
            _refusal(
                "sequence input (T, N, I)",
                lambda: cls(3, 4),
                ((4, 2, 3),),
                r"expected input \(N, 3\) or unbatched \(3,\), got shape \(4, 2, 3\)",
            ),
        ]
        if cls is nn.LSTMCell:
            out.append(_refusal("hx as one tensor", lambda: cls(3, 4), ((2, 3), (2, 4)),
                                r"expected hx as a pair", as_tuple=False))  # fmt: skip
        else:
            out.append(_refusal("h of the wrong shape", lambda: cls(3, 4), ((2, 3), (3, 4)),
                                r"expected h of shape \(2, 4\), got \(3, 4\)",
                                as_tuple=False))  # fmt: skip
        return out

    return refusals


def _row(
    name: str,
    module: type[nn.Module],
    cls: type[R.RNNBase] | type[R.CellBase],
    samples: Callable[[], list[Sample]],
    refusals: Callable[[], list[Refusal]],
    note: str,
) -> OpEntry:
    is_cell = issubclass(cls, R.CellBase)
    return OpEntry(
        name,
        "recurrent",
        cell_rule(cls) if is_cell else recurrent_rule(cls),
        modules=(module,),
        module_args=module_args(cls),
        note=note,
        samples=samples,
        refusals=refusals,
    )


_LAYERS = (
    "num_layers, bidirectional, batch_first or sequence-first, bias, hx given (computed or "
    "learned) or zero, unbatched input, a PackedSequence, dropout in eval mode; δ of every "
    "step in the trace"
)
_CELLS = "one step; state given (computed or learned) or zero; unbatched input"

ROWS = [
    _row(
        "rnn",
        nn.RNN,
        R.RNN,
        lambda: _rnn_samples() + packed_samples()[nn.RNN],
        _rnn_refusals,
        f"tanh and relu; {_LAYERS}",
    ),
    _row(
        "lstm",
        nn.LSTM,
        R.LSTM,
        lambda: _lstm_samples() + packed_samples()[nn.LSTM],
        _lstm_refusals,
        f"proj_size; {_LAYERS}",
    ),
    _row(
        "gru",
        nn.GRU,
        R.GRU,
        lambda: _gru_samples() + packed_samples()[nn.GRU],
        _gru_refusals,
        _LAYERS,
    ),
    _row(
        "rnn_cell",
        nn.RNNCell,
        R.RNNCell,
        _rnn_cell_samples,
        _cell_refusals(nn.RNNCell),
        f"tanh and relu; {_CELLS}",
    ),  # fmt: skip
    _row(
        "lstm_cell",
        nn.LSTMCell,
        R.LSTMCell,
        _cell_samples(nn.LSTMCell),
        _cell_refusals(nn.LSTMCell),
        _CELLS,
    ),  # fmt: skip
    _row(
        "gru_cell",
        nn.GRUCell,
        R.GRUCell,
        _cell_samples(nn.GRUCell),
        _cell_refusals(nn.GRUCell),
        _CELLS,
    ),  # fmt: skip
]
