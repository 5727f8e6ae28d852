"""Variable-length batches through recurrent nets (nn.utils.rnn.PackedSequence), as users write
them, through the oracle against torch.autograd.

    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, (h, c) = self.lstm(packed, hx)
    y, lens = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)

A table of cases over the cell (LSTM, GRU, RNN tanh and relu, LSTM with proj_size), 1 and 2
layers, one or two directions, batch_first or not, enforce_sorted or not, hx given or zero:
`compare_gradients` at rtol 1e-9 is ok, every parameter and input is compared, the caller's
model is unchanged. Lengths hold a tie and a sample of length 1. Then the other idioms
(pack_sequence, `.data` read directly, padding_value), the manual layer against torch's
forward, and planted bugs that must fail: a custom autograd.Function with a wrong backward
in the chain (named in the report), and the masked recurrence without its mask.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn as nn
from _tolerances import TOLERANCES

import torch_ref
from manual_bp.ops import recurrent as R
from manual_bp.ops.recurrent import kernels

TOL = TOLERANCES["model"]
pack_padded, pad_packed = nn.utils.rnn.pack_padded_sequence, nn.utils.rnn.pad_packed_sequence
LENGTHS = [3, 5, 1, 3]  # a tie (3, 3) and a sample of length 1; sorted: [5, 3, 3, 1]
T, N, I, H = 5, 4, 3, 4


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@dataclass(frozen=True)
class Case:
    """One packed run: the module kind and its options, and how the batch is packed."""

    kind: str  # "LSTM", "GRU", "RNN_TANH", "RNN_RELU", "LSTM_PROJ"
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = True
    enforce_sorted: bool = False
    hx: bool = False
    total_length: int | None = None

    def module(self) -> nn.RNNBase:
        opts = dict(num_layers=self.num_layers, bidirectional=self.bidirectional,
                    batch_first=self.batch_first)  # fmt: skip
        make = {
            "LSTM": lambda: nn.LSTM(I, H, **opts),
            "LSTM_PROJ": lambda: nn.LSTM(I, H, proj_size=2, **opts),
            "GRU": lambda: nn.GRU(I, H, **opts),
            "RNN_TANH": lambda: nn.RNN(I, H, **opts),
            "RNN_RELU": lambda: nn.RNN(I, H, nonlinearity="relu", **opts),
        }[self.kind]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(len(str(self)))
            return make().double().eval()

    def lengths(self) -> list[int]:
        return sorted(LENGTHS, reverse=True) if self.enforce_sorted else LENGTHS

    def inputs(self, rnn: nn.RNNBase) -> tuple[torch.Tensor, ...]:
        x = randn(*((N, T, I) if self.batch_first else (T, N, I)), seed=1)
        if not self.hx:
            return (x,)
        LD = rnn.num_layers * (2 if rnn.bidirectional else 1)
        states = [randn(LD, N, rnn.proj_size or H, seed=2)]
        if isinstance(rnn, nn.LSTM):
            states.append(randn(LD, N, H, seed=3))
        return (x, *states)

    def __str__(self) -> str:
        opts = [self.kind.lower(), f"{self.num_layers} layer(s)"]
        opts += ["bidirectional"] * self.bidirectional + ["batch_first"] * self.batch_first
        opts += ["enforce_sorted"] * self.enforce_sorted + ["hx"] * self.hx
        opts += [f"total_length={self.total_length}"] * (self.total_length is not None)
        return ", ".join(opts)


class PackedModel(nn.Module):
    """The classic idiom: pack, the recurrent module, pad back; returns the padded output and
    the top layer's final hidden state h_n[-1]."""

    def __init__(self, rnn: nn.RNNBase, lengths: list[int], enforce_sorted: bool,
                 total_length: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.rnn, self.lengths = rnn, lengths
        self.enforce_sorted, self.total_length = enforce_sorted, total_length

    def forward(self, x: torch.Tensor, *states: torch.Tensor):
        bf = self.rnn.batch_first
        packed = pack_padded(x, self.lengths, batch_first=bf, enforce_sorted=self.enforce_sorted)
        hx = None if not states else states[0] if len(states) == 1 else tuple(states)
        out, h = self.rnn(packed, hx)
        y, _ = pad_packed(out, batch_first=bf, total_length=self.total_length)
        h_n = h[0] if isinstance(h, tuple) else h
        return y, h_n[-1]


def masked_loss(mask: torch.Tensor):
    """Σ over the valid steps of (y − t)², plus ‖h_n[-1] − t_h‖²."""

    def loss(out, target):
        y, h_last = out
        return (((y - target[0]) ** 2) * mask).sum() + ((h_last - target[1]) ** 2).sum()

    return loss


def _setup(case: Case):
    rnn = case.module()
    model = PackedModel(rnn, case.lengths(), case.enforce_sorted, case.total_length)
    inputs = case.inputs(rnn)
    with torch.no_grad():
        y, h_last = copy.deepcopy(model)(*inputs)
    Ty = y.shape[1] if case.batch_first else y.shape[0]
    valid = torch.arange(Ty)[:, None] < torch.tensor(case.lengths())[None, :]  # (T, N)
    mask = (valid.T if case.batch_first else valid)[..., None].double()
    target = (randn(*y.shape, seed=4), randn(*h_last.shape, seed=5))
    return model, masked_loss(mask), inputs, target


def check(case: Case) -> torch_ref.GradientReport:
    """compare_gradients at rtol 1e-9 is ok; every parameter and floating input compared;
    nothing the caller owns changes."""
    model, loss, inputs, target = _setup(case)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = torch_ref.compare_gradients(model, loss, inputs, target, input_grads=True, **TOL)
    assert report.ok, f"{case}\n{report}"
    params = {n for n, _ in model.named_parameters()}
    assert {r.name for r in report.rows if r.kind == "param"} == params, str(case)
    assert sum(r.kind == "input" for r in report.rows) == len(inputs), str(case)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), str(case)
    assert all(p.grad is None for p in model.parameters()), str(case)
    return report


KINDS = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU", "LSTM_PROJ")
#: every kind × layers × directions, in two packings; and for two stacked bidirectional
#: layers of each kind, every packing (batch_first × enforce_sorted × hx)
CASES = [
    *(Case(k, L, bi, batch_first=bf, enforce_sorted=not bf, hx=bf)
      for k, L, bi, bf in itertools.product(KINDS, (1, 2), (False, True), (True, False))),
    *(Case(k, 2, True, bf, es, hx)
      for k, bf, es, hx in itertools.product(KINDS, (True, False), (True, False), (True, False))
      if (bf, es, hx) not in ((True, False, True), (False, True, False))),
    Case("LSTM", 2, True, total_length=7),
    Case("GRU", 1, False, batch_first=False, hx=True, total_length=6),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=str)
def test_packed_batch_matches_autograd(case: Case) -> None:
    check(case)


def test_the_table_covers_every_option() -> None:
    for kind in KINDS:
        mine = [c for c in CASES if c.kind == kind]
        for field in ("num_layers", "bidirectional", "batch_first", "enforce_sorted", "hx"):
            assert len({getattr(c, field) for c in mine}) == 2, (kind, field)


# --- the other idioms ------------------------------------------------------------------------


class DataHead(nn.Module):
    """A Linear on the packed output's .data (every valid step, no padding), and the GRU's
    h_n of both directions."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 4, bidirectional=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        a, b, c = seqs[0, :2], seqs[1], seqs[2, :1]  # three sequences of lengths 2, 4, 1
        packed = nn.utils.rnn.pack_sequence([a, b, c], enforce_sorted=False)
        out, h_n = self.gru(packed)
        return torch.cat([self.fc(out.data).flatten(), h_n.flatten()])


def test_pack_sequence_and_a_linear_on_the_packed_data() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DataHead().double()
    x = randn(3, 4, 3, seed=0)
    target = randn(7 * 2 + 2 * 3 * 4, seed=1)
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x, target, input_grads=True, **TOL)
    assert report.ok, str(report)
    assert {r.name for r in report.rows if r.kind == "param"} == set(dict(model.named_parameters()))
    assert "fc" in {r.name for r in report.rows if r.kind == "delta"}


class PaddedWith(nn.Module):
    """pad_packed_sequence with a padding_value, the padding read by the loss (a constant)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.lstm, self.value = nn.LSTM(3, 4, batch_first=True), value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = pack_padded(x, torch.tensor([2, 4, 1]), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        y, lens = pad_packed(out, batch_first=True, padding_value=self.value, total_length=5)
        return y * lens[:, None, None]  # (lens: a constant, as torch's)


def test_padding_value_and_the_lengths_returned() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = PaddedWith(-1.5).double()
    x, t = randn(3, 5, 3, seed=0), randn(3, 5, 4, seed=1)
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t, input_grads=True, **TOL)
    assert report.ok, str(report)


def test_lengths_as_an_input_of_the_model_are_refused_unless_sorted_in_forward() -> None:
    class WithLengths(nn.Module):
        def __init__(self, enforce_sorted: bool) -> None:
            super().__init__()
            self.embed, self.gru = nn.Linear(3, 3), nn.GRU(3, 4, batch_first=True)
            self.enforce_sorted = enforce_sorted

        def forward(self, x, lengths):
            e = self.embed(x)  # (what is packed carries gradient)
            packed = pack_padded(e, lengths, True, enforce_sorted=self.enforce_sorted)
            return pad_packed(self.gru(packed)[0], batch_first=True)[0]

    x, lengths, t = randn(2, 4, 3, seed=0), torch.tensor([4, 2]), randn(2, 4, 4, seed=1)
    with pytest.raises(torch_ref.UnsupportedModuleError, match="enforce_sorted=False"):
        torch_ref.manual_gradients(WithLengths(True).double(), nn.MSELoss(), (x, lengths), t)
    report = torch_ref.compare_gradients(
        WithLengths(False).double(), nn.MSELoss(), (x, lengths), t, **TOL
    )
    assert report.ok, str(report)


# --- the manual layer alone, against torch's forward -----------------------------------------


@pytest.mark.parametrize("kind", ["LSTM", "LSTM_PROJ", "GRU", "RNN_RELU"])
def test_the_masked_layer_is_torchs_forward_on_the_packed_batch(kind: str) -> None:
    """RNNBase(lengths=…) on the padded batch: the outputs are torch's packed ones padded
    with zeros, h_n (and c_n) each sample's state after its own last step."""
    case = Case(kind, 2, True, batch_first=False, enforce_sorted=True)
    rnn = case.module()
    x = randn(T, N, I, seed=1)
    L = case.lengths()
    with torch.no_grad():
        out, h = rnn(pack_padded(x, L))
        want = [pad_packed(out, total_length=T)[0], *(h if isinstance(h, tuple) else (h,))]
    cls = {"LSTM": R.LSTM, "LSTM_PROJ": R.LSTM, "GRU": R.GRU, "RNN_RELU": R.RNN}[kind]
    options = {a: getattr(rnn, a) for a in cls.OPTIONS}
    params = {n: p.detach().numpy() for n, p in rnn.named_parameters()}
    layer = cls(**options, params=params, lengths=L)
    got, _ = layer.forward(x.numpy())
    for name, g, w in zip(("out", "h_n", "c_n")[: len(got)], got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-12, atol=1e-14, err_msg=name)


def test_the_trace_holds_every_steps_delta_zero_past_each_length() -> None:
    """manual_trace on a packed batch: δ of every layer-direction and step, time-major in the
    sorted order (lengths 5, 3, 3, 1), zero past each sample's length."""
    model, loss, inputs, target = _setup(Case("LSTM", 2, True, hx=True))
    trace = torch_ref.manual_trace(model, loss, inputs, target)
    delta = trace.deltas["rnn"]  # (L·D, T, N, 4H)
    assert tuple(delta.shape) == (4, T, N, 4 * H)
    past = torch.arange(T)[:, None] >= torch.tensor(sorted(LENGTHS, reverse=True))[None, :]
    assert torch.all(delta[:, past] == 0)
    assert torch.all(delta[:, ~past].abs().sum(-1) > 0)
    assert set(trace.hidden_grads) == {"rnn", "rnn.c"}


def test_pack_and_pad_are_adjoint() -> None:
    """⟨pack(x), d⟩ = ⟨x, pad(d)⟩: pad with zeros is pack's transpose."""
    rng = np.random.default_rng(0)
    L = np.array([5, 3, 3, 1])
    x, d = rng.normal(size=(6, 4, 2)), rng.normal(size=(int(L.sum()), 2))
    assert np.isclose(np.sum(R.pack(x, L) * d), np.sum(x * R.pad(d, L, 6)), rtol=1e-13)
    np.testing.assert_array_equal(R.pack(R.pad(d, L, 6), L), d)


# --- planted bugs that must fail -------------------------------------------------------------


class Leaky(torch.autograd.Function):
    """y = x ⊙ s with a backward 3% off: a custom op between the LSTM and the loss."""

    @staticmethod
    def forward(ctx, x):
        return x * 0.5

    @staticmethod
    def backward(ctx, g):
        return g * 0.5 * 1.03  # planted: 3% off


class PackedWithFunction(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = pack_padded(x, LENGTHS, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        y, _ = pad_packed(out, batch_first=True)
        return self.fc(Leaky.apply(y))


def test_planted_wrong_custom_backward_in_the_chain_fails_naming_it() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = PackedWithFunction().double()
    x, t = randn(N, T, 3, seed=0), randn(N, T, 2, seed=1)
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t, **TOL)
    assert not report.ok
    failed = {r.name for r in report.failures() if r.kind == "param"}
    assert failed and all(n.startswith("lstm.") for n in failed), failed
    assert any("Leaky (call 0)" in n for n in report.notes), report.notes


def test_planted_bug_a_padded_step_passes_no_gradient_back_fails(monkeypatch) -> None:
    """BPTT that drops (1 − v_t) ⊙ ∂L/∂h_t (the frozen state's route back to h_{t−1}) fails on a
    packed batch: the reverse direction starts past the padding, from h0."""

    def no_carry(valid, t, g):
        return (g, 0.0) if valid is None else (np.where(valid[t], g, 0.0), 0.0)

    monkeypatch.setattr(kernels, "_split", no_carry)
    model, loss, inputs, target = _setup(Case("GRU", 1, True, hx=True))
    report = torch_ref.compare_gradients(model, loss, inputs, target, input_grads=True, **TOL)
    assert not report.ok


def test_planted_bug_no_mask_fails(monkeypatch) -> None:
    """The recurrence run past each sample's length (the padded steps not frozen) fails."""
    monkeypatch.setattr(kernels, "_kept", lambda valid, t, new, old: new)
    model, loss, inputs, target = _setup(Case("LSTM", 1, False))
    report = torch_ref.compare_gradients(model, loss, inputs, target, input_grads=True, **TOL)
    assert not report.ok


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: R.GRU(3, 4, params=p, lengths=[2, 6]), r"each in 1\.\.5"),
        (lambda p: R.GRU(3, 4, params=p, lengths=[2, 0]), r"each in 1\.\.5"),
        (lambda p: R.GRU(3, 4, params=p, lengths=[2, 1, 1]), r"lengths of the 2 samples"),
    ],
    ids=["longer than T", "a length 0", "one length too many"],
)
def test_lengths_the_layer_refuses(make, match) -> None:
    gru = Case("GRU").module()
    layer = make({n: p.detach().numpy() for n, p in gru.named_parameters()})
    with pytest.raises(ValueError, match=match):
        layer.forward(np.zeros((5, 2, 3)))


def test_packing_refuses_unsorted_lengths_and_pad_a_short_total_length() -> None:
    with pytest.raises(ValueError, match="sorted in decreasing order"):
        R.PackPadded([2, 3])
    with pytest.raises(ValueError, match="total_length ≥ the longest sequence's 3"):
        R.PadPacked([2, 2, 1], total_length=2)
