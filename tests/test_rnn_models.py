"""Recurrent models as their authors write them, through the oracle, against torch.autograd.

Each model runs through `torch_ref.compare_gradients` in float64 at rtol 1e-9: every
parameter gradient, δ of every Linear layer, ∂L/∂x of every floating input. (A recurrent
layer's own δ, of every time step, is checked against a torch model unrolled step by step,
below.) Then a property test over `torch_ref.strategies.rnn_models()`, the trace's δ and
∂L/∂h_t against the unrolled computation, sequence-first inputs, refusals, and planted bugs
that must fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from _tolerances import TOLERANCES
from hypothesis import given, settings

import torch_ref
from torch_ref.registry import recurrent as rows
from torch_ref.strategies import RNNSpec, rnn_models

TOL = TOLERANCES["model"]


def seeded(make, seed: int = 0) -> nn.Module:
    """A model with torch's default init drawn from `seed`, in float64 and eval mode (the
    global random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make().double().eval()


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def check(model, loss_fn, inputs, target, *, deltas: set[str]):
    """compare_gradients at rtol 1e-9; every parameter, the expected δ rows and every
    floating input are in the report."""
    report = torch_ref.compare_gradients(model, loss_fn, inputs, target, input_grads=True, **TOL)
    assert report.ok, str(report)
    params = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {r.name for r in report.rows if r.kind == "param"} == params
    assert {r.name for r in report.rows if r.kind == "delta"} == deltas
    xs = inputs if isinstance(inputs, tuple) else (inputs,)
    floats = sum(x.is_floating_point() for x in xs)
    assert sum(r.kind == "input" for r in report.rows) == floats
    return report


# --- the acceptance models ---------------------------------------------------------------


class CharLSTM(nn.Module):
    """A character-level language model (Karpathy's char-rnn, in the PyTorch tutorials'
    style): embed, a 2-layer LSTM, a Linear to the vocabulary at every step."""

    def __init__(self, vocab_size: int, embed_dim: int = 8, hidden: int = 16, layers: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden, layers, batch_first=True, dropout=0.2)
        self.fc = nn.Linear(hidden, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.embed(x)  # (N, T, E)
        out, (h, c) = self.lstm(emb)  # (N, T, H)
        logits = self.fc(out)  # (N, T, V)
        return logits.view(-1, logits.size(-1))  # cross-entropy over every step


def test_char_lstm_language_model():
    text = "hello world, hello recurrent world"
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(ch) for ch in text])
    T = 8
    starts = [0, 5, 11, 20]
    x = torch.stack([ids[s : s + T] for s in starts])  # (4, 8) token ids
    y = torch.stack([ids[s + 1 : s + T + 1] for s in starts])  # the next character
    model = seeded(lambda: CharLSTM(len(vocab)))
    check(model, nn.CrossEntropyLoss(), x, y.reshape(-1), deltas={"embed", "fc"})


class GRUClassifierLastStep(nn.Module):
    """A bidirectional GRU sequence classifier on the output at the last step."""

    def __init__(self, input_size: int, hidden: int, classes: int):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)  # (N, T, 2H)
        return self.fc(out[:, -1, :])


class GRUClassifierFinalStates(nn.Module):
    """The same classifier on both directions' final states, as the torchtext sentiment
    tutorials write it: the forward direction's last step, the reverse direction's first."""

    def __init__(self, input_size: int, hidden: int, classes: int, layers: int = 2):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden, layers, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, hidden = self.gru(x)  # (layers · 2, N, H)
        return self.fc(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1))


class GRUClassifierReshaped(nn.Module):
    """The same on every layer's final states, read without indexing: hidden moved to
    batch-major and flattened."""

    def __init__(self, input_size: int, hidden: int, classes: int, layers: int = 2):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden, layers, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(layers * 2 * hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, hidden = self.gru(x)  # (layers · 2, N, H)
        hidden = hidden.transpose(0, 1).contiguous()  # (N, layers · 2, H)
        return self.fc(hidden.view(hidden.size(0), -1))


GRU_CLASSIFIERS = {
    "last step: out[:, -1]": GRUClassifierLastStep,
    "final states: hidden[-2], hidden[-1]": GRUClassifierFinalStates,
    "final states: transpose and view": GRUClassifierReshaped,
}


@pytest.mark.parametrize("name", list(GRU_CLASSIFIERS))
def test_bidirectional_gru_sequence_classifier(name):
    model = seeded(lambda: GRU_CLASSIFIERS[name](input_size=5, hidden=6, classes=3))
    x = randn(4, 9, 5, seed=1)  # (N, T, I)
    labels = torch.tensor([0, 2, 1, 2])
    check(model, nn.CrossEntropyLoss(), x, labels, deltas={"fc"})


class SineRNN(nn.Module):
    """A plain tanh RNN predicting the next value of a sine wave at every step."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.hidden_size = hidden
        self.rnn = nn.RNN(input_size=1, hidden_size=hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = torch.zeros(1, x.size(0), self.hidden_size, dtype=x.dtype).to(x.device)
        out, _ = self.rnn(x, h0)  # (N, T, H)
        return self.fc(out)  # (N, T, 1)


def test_tanh_rnn_sine_wave_regression():
    t = torch.linspace(0, 4 * math.pi, 41, dtype=torch.float64)
    phases = torch.tensor([0.0, 0.7, 1.9], dtype=torch.float64)[:, None]
    wave = torch.sin(t[None, :] + phases)[..., None]  # (3, 41, 1)
    x, y = wave[:, :-1], wave[:, 1:]  # predict the next sample: T = 40
    check(seeded(SineRNN), nn.MSELoss(), x, y, deltas={"fc"})


class ProjectedLSTM(nn.Module):
    """An LSTM with projections (Sak et al. 2014, "Long short-term memory recurrent neural
    network architectures for large scale acoustic modeling"): frame classification, the
    initial states given."""

    def __init__(self, features: int = 6, hidden: int = 10, proj: int = 3, classes: int = 4):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=2, proj_size=proj, batch_first=True)
        self.classifier = nn.Linear(proj, classes)

    def forward(self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor) -> torch.Tensor:
        out, (h_n, c_n) = self.lstm(x, (h0, c0))  # out (N, T, P)
        logits = self.classifier(out)  # (N, T, C)
        return logits.transpose(1, 2)  # (N, C, T), as cross_entropy takes a sequence


def test_lstm_with_proj_size():
    model = seeded(ProjectedLSTM)
    x = randn(3, 7, 6, seed=1)
    h0, c0 = 0.5 * randn(2, 3, 3, seed=2), 0.5 * randn(2, 3, 10, seed=3)  # h: P, c: H
    frames = torch.randint(0, 4, (3, 7), generator=torch.Generator().manual_seed(4))
    check(model, nn.CrossEntropyLoss(), (x, h0, c0), frames, deltas={"classifier"})


class Seq2Seq(nn.Module):
    """An encoder–decoder: a GRU reads the source (sequence-first); a GRUCell, unrolled in
    forward(), writes the output feeding back its own predictions, from a zero start."""

    def __init__(self, in_dim: int = 3, hidden: int = 8, out_dim: int = 2, steps: int = 5):
        super().__init__()
        self.encoder = nn.GRU(in_dim, hidden)
        self.decoder = nn.GRUCell(out_dim, hidden)
        self.out = nn.Linear(hidden, out_dim)
        self.steps = steps

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        _, h = self.encoder(src)  # (1, N, H)
        h = h.squeeze(0)
        y = torch.zeros(src.size(1), self.out.out_features, dtype=src.dtype, device=src.device)
        outputs = []
        for _ in range(self.steps):
            h = self.decoder(y, h)
            y = self.out(h)
            outputs.append(y.unsqueeze(0))
        return torch.cat(outputs, dim=0)  # (steps, N, out_dim)


def test_seq2seq_gru_cell_decoder():
    model = seeded(Seq2Seq)
    src = randn(6, 2, 3, seed=1)  # (T, N, I)
    tgt = randn(5, 2, 2, seed=2)
    out_deltas = {"out", *(f"out#{k}" for k in range(1, 5))}
    check(model, nn.MSELoss(), src, tgt, deltas=out_deltas)
    trace = torch_ref.manual_trace(model, nn.MSELoss(), src, tgt)
    # every call of the cell has its own δ (N, 3H) in the trace
    assert [k for k in trace.deltas if k.startswith("decoder")] == [
        "decoder",
        *(f"decoder#{k}" for k in range(1, 5)),
    ]
    assert all(trace.deltas[f"decoder#{k}"].shape == (2, 24) for k in range(1, 5))


# --- sequence-first inputs ----------------------------------------------------------------


class Tagger(nn.Module):
    """A sequence-first (T, N, I) LSTM tagger: one prediction per step."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 5, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # (T, N, 2H)
        return self.fc(out)  # (T, N, C)


def test_sequence_first_input_is_checked_against_the_target():
    """T = 7 steps of N = 3 sequences: the batch is the second dimension, not the first."""
    model = seeded(Tagger)
    x = randn(7, 3, 4, seed=1)
    check(model, nn.MSELoss(), x, randn(7, 3, 3, seed=2), deltas={"fc"})
    with pytest.raises(ValueError, match=r"expected a target of the input's shape \(7, 3, 3\), "
                       r"got shape \(3, 7, 3\)"):  # fmt: skip
        torch_ref.manual_gradients(model, nn.MSELoss(), x, randn(3, 7, 3, seed=2))


def test_sequence_first_cross_entropy_over_every_step():
    model = seeded(Tagger)
    x = randn(7, 3, 4, seed=1)
    labels = torch.randint(0, 3, (7, 3), generator=torch.Generator().manual_seed(5))

    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.tagger = model

        def forward(self, x):
            return self.tagger(x).reshape(-1, 3)  # (T·N, C)

    check(Flat(), nn.CrossEntropyLoss(), x, labels.reshape(-1), deltas={"tagger.fc"})
    with pytest.raises(ValueError, match=r"CrossEntropyLoss"):
        torch_ref.manual_gradients(Flat(), nn.CrossEntropyLoss(), x, labels.T.reshape(-1)[:-3])


# --- the trace: δ of every step and ∂L/∂h_t, against torch unrolled ----------------------


def unrolled(rnn: nn.RNNBase, x: torch.Tensor, states0: list[torch.Tensor]):
    """torch's documented equations for `rnn` step by step on x (T, N, I), keeping the
    tensors the trace reports: gi = x_t W_ihᵀ + b_ih (whose gradient is δ), h_t, c_t."""
    D = 2 if rnn.bidirectional else 1
    T = len(x)
    kept: dict[str, dict[str, list]] = {}
    layer_in = x
    for k in range(rnn.num_layers):
        outs = []
        for d in range(D):
            s = f"l{k}{'_reverse' if d else ''}"
            P = {n[: -len(s) - 1]: p for n, p in rnn.named_parameters() if n.endswith("_" + s)}
            gi = layer_in @ P["weight_ih"].T + P.get("bias_ih", 0.0)  # (T, N, G·H)
            gi.retain_grad()
            rec = kept[s] = {"gi": gi, "h": [None] * T, "c": [None] * T}
            h = states0[0][k * D + d]
            c = states0[1][k * D + d] if rnn.mode == "LSTM" else None
            for t in reversed(range(T)) if d else range(T):
                gh = h @ P["weight_hh"].T + P.get("bias_hh", 0.0)
                if rnn.mode == "LSTM":
                    i, f, g, o = (gi[t] + gh).chunk(4, dim=-1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    c.retain_grad()
                    rec["c"][t] = c
                    h = torch.sigmoid(o) * torch.tanh(c)
                    if "weight_hr" in P:
                        h = h @ P["weight_hr"].T
                elif rnn.mode == "GRU":
                    (ri, zi, ni), (rh, zh, nh) = gi[t].chunk(3, -1), gh.chunk(3, -1)
                    r, z = torch.sigmoid(ri + rh), torch.sigmoid(zi + zh)
                    h = (1 - z) * torch.tanh(ni + r * nh) + z * h
                else:
                    h = (torch.tanh if rnn.mode == "RNN_TANH" else torch.relu)(gi[t] + gh)
                h.retain_grad()
                rec["h"][t] = h
            outs.append(torch.stack(rec["h"]))
        layer_in = torch.cat(outs, dim=-1)
    return layer_in, kept


class Head(nn.Module):
    """rnn, then a Linear at every step."""

    def __init__(self, rnn: nn.RNNBase, out: int = 2):
        super().__init__()
        self.rnn = rnn
        D = 2 if rnn.bidirectional else 1
        self.fc = nn.Linear(D * (rnn.proj_size or rnn.hidden_size), out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(out)


TRACE_CASES = {
    "LSTM, 2 layers, bidirectional, batch_first": lambda: nn.LSTM(
        3, 4, num_layers=2, bidirectional=True, batch_first=True
    ),
    "LSTM, proj_size, sequence-first": lambda: nn.LSTM(3, 4, num_layers=2, proj_size=2),
    "GRU, bidirectional, batch_first": lambda: nn.GRU(3, 4, bidirectional=True, batch_first=True),
    "RNN tanh, 3 layers": lambda: nn.RNN(3, 2, num_layers=3),
    "RNN relu, bidirectional": lambda: nn.RNN(3, 4, nonlinearity="relu", bidirectional=True),
}


@pytest.mark.parametrize("name", list(TRACE_CASES))
def test_trace_matches_the_bptt_record_and_torch_unrolled(name):
    model = seeded(lambda: Head(TRACE_CASES[name]()))
    rnn = model.rnn
    T, N = 5, 2
    x = randn(*((N, T, 3) if rnn.batch_first else (T, N, 3)), seed=1)
    y = model(x).detach() + randn(*model(x).shape, seed=2)
    loss = nn.MSELoss(reduction="sum")
    trace = torch_ref.manual_trace(model, loss, x, y)

    # what the trace reports is the layer's own record of backprop through time
    bptt = trace.result.gradients.traces["rnn"]
    keys = [f"l{k}{d}" for k in range(rnn.num_layers)
            for d in ("", "_reverse")[: 1 + rnn.bidirectional]]  # fmt: skip
    assert list(bptt.delta) == keys
    assert np.array_equal(trace.deltas["rnn"].numpy(), np.stack([bptt.delta[k] for k in keys]))
    assert np.array_equal(
        trace.hidden_grads["rnn"].numpy(), np.stack([bptt.dL_dh[k] for k in keys])
    )
    if rnn.mode == "LSTM":
        assert np.array_equal(
            trace.hidden_grads["rnn.c"].numpy(), np.stack([bptt.dL_dc[k] for k in keys])
        )
    else:
        assert "rnn.c" not in trace.hidden_grads

    # and it is autograd's gradient through the same equations, unrolled
    LD = len(keys)
    x_tm = x.transpose(0, 1) if rnn.batch_first else x  # (T, N, I): the trace is time-major
    states0 = [torch.zeros(LD, N, rnn.proj_size or rnn.hidden_size, dtype=torch.float64),
               torch.zeros(LD, N, rnn.hidden_size, dtype=torch.float64)]  # fmt: skip
    out, kept = unrolled(rnn, x_tm, states0)
    out = out.transpose(0, 1) if rnn.batch_first else out
    value = loss(model.fc(out), y)
    value.backward()
    assert value.item() == pytest.approx(trace.loss, rel=1e-12)
    G_H = trace.deltas["rnn"].shape[-1]
    assert trace.deltas["rnn"].shape == (LD, T, N, G_H)
    for j, s in enumerate(keys):
        torch.testing.assert_close(trace.deltas["rnn"][j], kept[s]["gi"].grad, rtol=1e-9, atol=0)
        dL_dh = torch.stack([h.grad for h in kept[s]["h"]])
        torch.testing.assert_close(trace.hidden_grads["rnn"][j], dL_dh, rtol=1e-9, atol=0)
        if rnn.mode == "LSTM":
            dL_dc = torch.stack([c.grad for c in kept[s]["c"]])
            torch.testing.assert_close(trace.hidden_grads["rnn.c"][j], dL_dc, rtol=1e-9, atol=0)


# --- the property test ------------------------------------------------------------------


def check_problem(problem) -> None:
    model, loss_fn, inputs, target = problem
    spec = problem.spec
    report = torch_ref.compare_gradients(
        model, loss_fn, inputs, target, l2=spec.l2, input_grads=True, **TOL
    )
    assert report.ok, f"{spec!r}\n{report}"
    assert {r.name for r in report.rows if r.kind == "param"} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }
    assert {r.name for r in report.rows if r.kind == "delta"} == {"linear"}
    n_inputs = len(inputs) if isinstance(inputs, tuple) else 1
    assert sum(r.kind == "input" for r in report.rows) == n_inputs


@settings(max_examples=300)
@given(rnn_models())
def test_random_recurrent_models_match_autograd(problem):
    check_problem(problem)


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_every_cell_kind(cell):
    @settings(max_examples=8)
    @given(rnn_models(cells=(cell,)))
    def run(problem):
        check_problem(problem)

    run()


def test_specs_print_as_the_code_that_builds_them():
    spec = RNNSpec(
        cell="lstm", input_size=2, hidden_size=3, num_layers=2, bias=True, batch_first=False,
        dropout=0.5, bidirectional=True, proj_size=1, seq_len=4, batch=2, initial_state="input",
        head="state", classes=3, loss="cross_entropy", loss_options=(("reduction", "sum"),),
        l2=0.0, dtype="float64", seed=3,
    )  # fmt: skip
    problem = spec.build()
    assert repr(problem) == f"{spec!r}.build()"
    model, _, inputs, target = problem
    assert not model.training
    assert [tuple(t.shape) for t in inputs] == [(4, 2, 2), (4, 2, 1), (4, 2, 3)]
    assert tuple(target.shape) == (2,)
    check_problem(problem)


# --- planted bugs: each must fail ---------------------------------------------------------

BIDIRECTIONAL_LSTM_STATES = RNNSpec(
    cell="lstm", input_size=3, hidden_size=4, num_layers=2, bias=True, batch_first=True,
    dropout=0.0, bidirectional=True, proj_size=0, seq_len=5, batch=3, initial_state="input",
    head="state", classes=2, loss="mse", loss_options=(("reduction", "mean"),), l2=0.0,
    dtype="float64", seed=11,
)  # fmt: skip


def _fails(spec: RNNSpec) -> bool:
    model, loss_fn, inputs, target = spec.build()
    return not torch_ref.compare_gradients(model, loss_fn, inputs, target, **TOL).ok


def test_planted_bug_c_n_handed_out_as_h_n(monkeypatch):
    monkeypatch.setitem(rows._AS_TORCH, 3, lambda o: (o[0], (o[1], o[1])))
    assert _fails(BIDIRECTIONAL_LSTM_STATES)


def test_planted_bug_initial_state_ignored(monkeypatch):
    monkeypatch.setattr(rows, "_states", lambda hx, n, what: ())
    assert _fails(BIDIRECTIONAL_LSTM_STATES)


def test_planted_bug_directions_swapped(monkeypatch):
    """The reverse direction's parameters handed to the forward direction and back."""
    weights = rows._weights

    def swapped(what, given):
        out = weights(what, given)
        for n in [n for n in out if n.endswith("_l0")]:
            out[n], out[n + "_reverse"] = out[n + "_reverse"], out[n]
        return out

    monkeypatch.setattr(rows, "_weights", swapped)
    assert _fails(BIDIRECTIONAL_LSTM_STATES)


def test_the_unplanted_case_passes():
    assert not _fails(BIDIRECTIONAL_LSTM_STATES)


# --- RNNCell: a false alarm in the oracle -----------------------------------------------------


class CellStep(nn.Module):
    def __init__(self, nonlinearity: str = "tanh"):
        super().__init__()
        self.cell = nn.RNNCell(3, 4, nonlinearity=nonlinearity)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.cell(x, h)


#: RNNCell calls where f′(z) ≠ 1 somewhere: (nonlinearity, x shape, h shape)
CELL_CASES = {
    "tanh, batched": ("tanh", (2, 3), (2, 4)),
    "tanh, unbatched": ("tanh", (3,), (4,)),
    "relu, some units off": ("relu", (5, 3), (5, 4)),
}


def _cell_problem(name: str):
    nonlinearity, x_shape, h_shape = CELL_CASES[name]
    model = seeded(lambda: CellStep(nonlinearity))
    inputs = (randn(*x_shape, seed=1), randn(*h_shape, seed=2))
    return model, nn.MSELoss(), inputs, randn(*h_shape, seed=3)


@pytest.mark.parametrize("name", list(CELL_CASES))
def test_rnn_cell_report_is_ok(name):
    model, loss_fn, inputs, target = _cell_problem(name)
    report = torch_ref.compare_gradients(model, loss_fn, inputs, target, **TOL)
    assert report.ok, str(report)


@pytest.mark.parametrize("name", list(CELL_CASES))
def test_rnn_cell_gradients_match_autograd(name):
    """Until the oracle compares like with like: every parameter and input row matches, and
    what autograd's probe holds, ∂L/∂h′, is the trace's hidden_grads (δ is f′(z) ⊙ ∂L/∂h′)."""
    model, loss_fn, inputs, target = _cell_problem(name)
    report = torch_ref.compare_gradients(model, loss_fn, inputs, target, input_grads=True, **TOL)
    checked = [r for r in report.rows if r.kind in ("param", "input")]
    assert len(checked) == 6 and all(r.ok for r in checked), str(report)
    trace = torch_ref.manual_trace(model, loss_fn, inputs, target)
    out = model(*inputs)
    (dL_dout,) = torch.autograd.grad(loss_fn(out, target), out)
    dL_dh = trace.hidden_grads["cell"].reshape(dL_dout.shape)  # the trace keeps N = 1
    torch.testing.assert_close(dL_dh, dL_dout, rtol=1e-12, atol=0)
    assert not torch.allclose(trace.deltas["cell"].reshape(dL_dout.shape), dL_dout)


def test_frozen_parameters_get_no_row_and_the_rest_match():
    model = seeded(Tagger)
    model.lstm.weight_hh_l0.requires_grad_(False)
    model.lstm.bias_ih_l1_reverse.requires_grad_(False)
    report = check(model, nn.MSELoss(), randn(7, 3, 4, seed=1), randn(7, 3, 3, seed=2),
                   deltas={"fc"})  # fmt: skip
    names = {r.name for r in report.rows}
    assert "lstm.weight_hh_l0" not in names and "lstm.bias_ih_l1_reverse" not in names
    assert "lstm.weight_hh_l0_reverse" in names


# --- refusals ------------------------------------------------------------------------------


def test_training_mode_dropout_between_layers_is_refused_and_eval_is_not():
    model = seeded(lambda: Head(nn.GRU(3, 4, num_layers=2, dropout=0.3)))
    x, y = randn(5, 2, 3, seed=1), randn(5, 2, 2, seed=2)
    with pytest.raises(ValueError, match=r"module 'rnn' \(GRU\).*training mode with dropout=0.3"):
        torch_ref.manual_gradients(model.train(), nn.MSELoss(), x, y)
    check(model.eval(), nn.MSELoss(), x, y, deltas={"fc"})
    # one layer: torch applies no dropout at all, in training mode too
    with pytest.warns(UserWarning, match="dropout"):
        single = seeded(lambda: Head(nn.GRU(3, 4, dropout=0.3)))
    check(single.train(), nn.MSELoss(), x, y, deltas={"fc"})
