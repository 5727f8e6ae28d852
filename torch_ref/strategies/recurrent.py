"""Recurrent networks: RNN, LSTM, GRU with a linear head; `rnn_specs()` draws an RNNSpec,
`rnn_models()` builds it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from hypothesis import strategies as st

from torch_ref.strategies.common import (
    LOSSES,
    Problem,
    _checked,
    _loss_options,
    build_loss,
    build_target,
)

# --- recurrent networks ---------------------------------------------------------------

#: recurrent cells a spec may draw: the torch module and its options
RNN_CELLS: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {
    "rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}

#: what the head reads: "sequence", the output at every step (a prediction per step,
#: rows N·T); "last", the output at the last step (out[:, -1]; the reverse direction's is
#: its first step); "state", the final states of every layer and direction (h_n, and c_n of
#: an LSTM), one row per sequence
RNN_HEADS = ("sequence", "last", "state")

#: where the initial state comes from: zero (hx=None), model inputs, or learned parameters
RNN_INITIAL_STATES = ("zero", "input", "learned")


class RNNModel(nn.Module):
    """A recurrent layer, then a Linear head over its outputs (`head`: see RNN_HEADS), then
    the loss's own last layer (LogSoftmax for NLL, Sigmoid for BCE); forward(x, h0, c0)."""

    def __init__(
        self, rnn: nn.Module, head: str, out: int, last: nn.Module, learned: bool, batch: int
    ) -> None:
        super().__init__()
        self.rnn, self.head, self.last = rnn, head, last
        D = 2 if rnn.bidirectional else 1
        h_out = rnn.proj_size or rnn.hidden_size
        LD = rnn.num_layers * D
        is_lstm = isinstance(rnn, nn.LSTM)
        if head in ("sequence", "last"):
            features = D * h_out
        else:
            features = LD * (h_out + (rnn.hidden_size if is_lstm else 0))
        self.linear = nn.Linear(features, out, dtype=rnn.weight_ih_l0.dtype)
        self.h0 = self.c0 = None
        if learned:
            dtype = rnn.weight_ih_l0.dtype
            self.h0 = nn.Parameter(0.5 * torch.randn(LD, batch, h_out, dtype=dtype))
            if is_lstm:
                self.c0 = nn.Parameter(0.5 * torch.randn(LD, batch, rnn.hidden_size, dtype=dtype))

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor | None = None, c0: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.h0 is not None:
            h0, c0 = self.h0, self.c0
        hx = h0 if c0 is None else (h0, c0)
        out, h_n = self.rnn(x, hx)
        if self.head == "sequence":
            features = out.reshape(-1, out.shape[-1])  # (N·T, D·H_out)
        elif self.head == "last":
            features = out[:, -1] if self.rnn.batch_first else out[-1]  # (N, D·H_out)
        else:
            states = h_n if isinstance(h_n, tuple) else (h_n,)  # (h_n, c_n) of an LSTM
            features = torch.cat(
                [s.permute(1, 0, 2).reshape(s.shape[1], -1) for s in states], dim=1
            )  # (N, L·D·H_out [+ L·D·H])
        return self.last(self.linear(features))


@dataclass(frozen=True)
class RNNSpec:
    """A random recurrent problem: `cell` (a key of RNN_CELLS) with torch's options, inputs
    of `seq_len` steps, a Linear head (RNN_HEADS) and a loss."""

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    proj_size: int
    seq_len: int
    batch: int
    initial_state: str
    head: str
    classes: int
    loss: str
    loss_options: tuple[tuple[str, Any], ...]
    l2: float
    dtype: str
    seed: int

    def build(self) -> Problem:
        """The torch model (in eval mode: dropout between layers is the identity), loss,
        inputs (x, and h0/c0 when they are inputs) and target this spec describes."""
        dtype = getattr(torch, self.dtype)
        g = torch.Generator().manual_seed(self.seed)
        make, options = RNN_CELLS[self.cell]
        if self.cell == "lstm":
            options = {**options, "proj_size": self.proj_size}
        last: nn.Module = {"nll": nn.LogSoftmax(dim=1), "bce": nn.Sigmoid()}.get(
            self.loss, nn.Identity()
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            rnn = make(
                self.input_size,
                self.hidden_size,
                num_layers=self.num_layers,
                bias=self.bias,
                batch_first=self.batch_first,
                dropout=self.dropout,
                bidirectional=self.bidirectional,
                dtype=dtype,
                **options,
            )
            model = RNNModel(
                rnn, self.head, self.classes, last, self.initial_state == "learned", self.batch
            ).eval()
        T, N = self.seq_len, self.batch
        x_shape = (N, T, self.input_size) if self.batch_first else (T, N, self.input_size)
        x = torch.randn(x_shape, generator=g, dtype=torch.float64).to(dtype)
        inputs: torch.Tensor | tuple[torch.Tensor, ...] = x
        if self.initial_state == "input":
            LD = self.num_layers * (2 if self.bidirectional else 1)
            sizes = [self.proj_size or self.hidden_size, self.hidden_size]
            states = [
                0.5 * torch.randn((LD, N, s), generator=g, dtype=torch.float64).to(dtype)
                for s in sizes[: 2 if self.cell == "lstm" else 1]
            ]
            inputs = (x, *states)
        rows = N * T if self.head == "sequence" else N
        options_ = dict(self.loss_options)
        target = build_target(self.loss, options_, (rows, self.classes), g)
        if target.is_floating_point():
            target = target.to(dtype)
        loss_fn = build_loss(self.loss, options_, self.classes)
        if dtype != torch.float64:
            loss_fn = loss_fn.to(dtype)
        return Problem(self, model, loss_fn, inputs, target)


@_checked
@st.composite
def rnn_specs(
    draw: st.DrawFn,
    *,
    cells: tuple[str, ...] | None = None,
    max_hidden: int = 8,
    max_layers: int = 3,
    max_seq_len: int = 12,
    max_batch: int = 4,
    max_input: int = 4,
    heads: tuple[str, ...] = RNN_HEADS,
    initial_states: tuple[str, ...] = RNN_INITIAL_STATES,
    losses: tuple[str, ...] | None = None,
    dtypes: tuple[str, ...] = ("float64", "float32"),
) -> RNNSpec:
    """A printable recurrent problem: nn.RNN (tanh, relu), nn.LSTM (proj_size too) or nn.GRU,
    hidden sizes 1..max_hidden, 1..max_layers layers, bidirectional or not, batch_first or
    sequence-first, bias on/off, eval-mode dropout between layers, sequences of
    1..max_seq_len steps, the initial state zero, given as inputs or learned, a Linear head on
    every step, on the last step or on the final states, and any loss (with its options)."""
    cell = draw(st.sampled_from(cells or tuple(RNN_CELLS)))
    hidden = draw(st.integers(1, max_hidden))
    layers = draw(st.integers(1, max_layers))
    loss = draw(st.sampled_from(losses or LOSSES))
    min_out = 2 if loss in ("cross_entropy", "cross_entropy_probs", "nll") else 1
    classes = draw(st.integers(min_out, max(min_out, max_hidden)))
    return RNNSpec(
        cell=cell,
        input_size=draw(st.integers(1, max_input)),
        hidden_size=hidden,
        num_layers=layers,
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        # NOTE: torch warns about dropout with one layer (it has no effect there)
        dropout=draw(st.sampled_from([0.0, 0.5])) if layers > 1 else 0.0,
        bidirectional=draw(st.booleans()),
        proj_size=draw(st.integers(0, hidden - 1)) if cell == "lstm" else 0,
        seq_len=draw(st.integers(1, max_seq_len)),
        batch=draw(st.integers(1, max_batch)),
        initial_state=draw(st.sampled_from(initial_states)),
        head=draw(st.sampled_from(heads)),
        classes=classes,
        loss=loss,
        loss_options=tuple(sorted(draw(_loss_options(loss, classes)).items())),
        l2=draw(st.sampled_from([0.0, 0.0, 0.1, 1.0])),
        dtype=draw(st.sampled_from(dtypes)),
        seed=draw(st.integers(0, 2**16)),
    )


def rnn_models(**limits: Any) -> st.SearchStrategy[Problem]:
    """(model, loss_fn, inputs, target) for a random recurrent network; keywords as in
    `rnn_specs`. `inputs` is x, or the tuple (x, h0[, c0]) when the initial state is an
    input."""
    return rnn_specs(**limits).map(lambda spec: spec.build())
