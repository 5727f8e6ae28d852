"""RNN, LSTM, GRU and their cells against torch.autograd, float64, rtol 1e-9.

Every case builds the torch module and manual_bp's layer from the same arrays (the
layer from the module's attributes and named_parameters(), as a converter would), draws a
loss L = Σ w_out ⊙ out + Σ w_h ⊙ h_n (+ Σ w_c ⊙ c_n) with random weights (an output the
loss does not use gets δ = None), and compares the outputs, ∂L/∂x, ∂L/∂h0, ∂L/∂c0 and every
parameter's gradient. The BPTT trace (δ per step, ∂L/∂h_t, ∂L/∂c_t) is compared with
autograd's gradients of the same quantities in a torch model unrolled step by step from
torch's documented equations (itself checked against nn.RNN/LSTM/GRU's output).
"""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from _layer_check import check_layer
from _tolerances import TOLERANCES
from hypothesis import given, settings
from hypothesis import strategies as st

from manual_bp.ops import recurrent
from manual_bp.ops.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from tests._compare import assert_close

TOL = TOLERANCES["recurrent"]

MODULES = {"RNN_TANH": torch.nn.RNN, "RNN_RELU": torch.nn.RNN, "LSTM": torch.nn.LSTM,
           "GRU": torch.nn.GRU}  # fmt: skip
LAYERS = {"RNN_TANH": RNN, "RNN_RELU": RNN, "LSTM": LSTM, "GRU": GRU}
CELL_MODULES = {"RNN_TANH": torch.nn.RNNCell, "RNN_RELU": torch.nn.RNNCell,
                "LSTM": torch.nn.LSTMCell, "GRU": torch.nn.GRUCell}  # fmt: skip
CELL_LAYERS = {"RNN_TANH": RNNCell, "RNN_RELU": RNNCell, "LSTM": LSTMCell, "GRU": GRUCell}


@dataclass(frozen=True)
class Spec:
    """One recurrent layer, its input and which of its outputs the loss reads."""

    mode: str
    input_size: int = 3
    hidden_size: int = 4
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    bidirectional: bool = False
    proj_size: int = 0
    dropout: float = 0.0
    T: int = 5
    N: int | None = 2  # None: unbatched input
    initial_state: bool = False
    uses: tuple[bool, ...] = (True, True, True)  # out, h_n, c_n in the loss
    seed: int = 0


# --- building both sides from the same arrays ---------------------------------------------


def torch_module(spec: Spec) -> torch.nn.Module:
    kw = dict(num_layers=spec.num_layers, bias=spec.bias, batch_first=spec.batch_first,
              dropout=spec.dropout, bidirectional=spec.bidirectional)  # fmt: skip
    if spec.mode.startswith("RNN"):
        kw["nonlinearity"] = spec.mode[4:].lower()
    if spec.proj_size:
        kw["proj_size"] = spec.proj_size
    module = MODULES[spec.mode](spec.input_size, spec.hidden_size, **kw).double().eval()
    rng = np.random.default_rng([spec.seed, 1])
    with torch.no_grad():
        for p in module.parameters():  # wider than torch's U(±1/√H): exercise saturation
            p.copy_(torch.from_numpy(rng.uniform(-0.8, 0.8, size=tuple(p.shape))))
    return module


def manual_layer(module: torch.nn.Module, spec: Spec) -> recurrent.RNNBase:
    cls = LAYERS[spec.mode]
    options = {a: getattr(module, a) for a in cls.OPTIONS}
    params = {n: p.detach().numpy().copy() for n, p in module.named_parameters()}
    return cls(**options, params=params, initial_state=spec.initial_state)


def inputs(spec: Spec) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng([spec.seed, 2])
    if spec.N is None:
        x_shape = (spec.T, spec.input_size)
    elif spec.batch_first:
        x_shape = (spec.N, spec.T, spec.input_size)
    else:
        x_shape = (spec.T, spec.N, spec.input_size)
    arrays = [rng.normal(size=x_shape)]
    if spec.initial_state:
        LD = spec.num_layers * (2 if spec.bidirectional else 1)
        n = () if spec.N is None else (spec.N,)
        arrays.append(rng.normal(size=(LD, *n, spec.proj_size or spec.hidden_size)))
        if spec.mode == "LSTM":
            arrays.append(rng.normal(size=(LD, *n, spec.hidden_size)))
    return tuple(arrays)


def loss_weights(spec: Spec, shapes) -> tuple[np.ndarray | None, ...]:
    rng = np.random.default_rng([spec.seed, 3])
    return tuple(
        rng.normal(size=s) if use else None for s, use in zip(shapes, spec.uses, strict=False)
    )


def check_against_torch(spec: Spec) -> None:
    """The layer beside torch's module on the same inputs and a seeded δ for each output the
    loss uses (tests/_layer_check.py): outputs, ∂L/∂x (and ∂L/∂h0, ∂L/∂c0), ∂L/∂θ in
    torch's order."""
    module = torch_module(spec)

    def torch_fn(x: torch.Tensor, *states: torch.Tensor, **params: torch.Tensor) -> tuple:
        hx = None if not states else states if spec.mode == "LSTM" else states[0]
        args = (x,) if hx is None else (x, hx)
        out, final = torch.func.functional_call(module, params, args)
        return (out, *final) if spec.mode == "LSTM" else (out, final)

    unused = [k for k, use in enumerate(spec.uses) if not use]
    check_layer(str(spec), manual_layer(module, spec), inputs(spec), torch_fn,
                params=dict(module.named_parameters()), tol=TOL, seed=spec.seed,
                unused=unused, param_order=True)  # fmt: skip


# --- the table of named cases -----------------------------------------------------------------

CASES = {
    "rnn_tanh": Spec("RNN_TANH"),
    "rnn_relu": Spec("RNN_RELU"),
    "lstm": Spec("LSTM"),
    "gru": Spec("GRU"),
    "rnn_tanh_h0": Spec("RNN_TANH", initial_state=True),
    "rnn_relu_2layers_bidir": Spec("RNN_RELU", num_layers=2, bidirectional=True),
    "rnn_no_bias_batch_first": Spec("RNN_TANH", bias=False, batch_first=True),
    "lstm_h0_c0": Spec("LSTM", initial_state=True),
    "lstm_3layers_bidir_h0": Spec("LSTM", num_layers=3, bidirectional=True, initial_state=True),
    "lstm_proj": Spec("LSTM", hidden_size=5, proj_size=2),
    "lstm_proj_2layers_bidir_h0": Spec(
        "LSTM", hidden_size=5, proj_size=3, num_layers=2, bidirectional=True, initial_state=True
    ),  # fmt: skip
    "lstm_no_bias_batch_first": Spec("LSTM", bias=False, batch_first=True),
    "lstm_out_only": Spec("LSTM", num_layers=2, uses=(True, False, False)),
    "lstm_c_n_only": Spec("LSTM", num_layers=2, bidirectional=True, uses=(False, False, True)),
    "lstm_h_n_only_unbatched": Spec("LSTM", N=None, uses=(False, True, False)),
    "gru_h0": Spec("GRU", initial_state=True),
    "gru_2layers_bidir_batch_first": Spec(
        "GRU", num_layers=2, bidirectional=True, batch_first=True
    ),  # fmt: skip
    "gru_no_bias": Spec("GRU", bias=False),
    "gru_h_n_only": Spec("GRU", num_layers=2, uses=(False, True)),
    "gru_unbatched_h0": Spec("GRU", N=None, initial_state=True),
    "rnn_unbatched_batch_first": Spec("RNN_TANH", N=None, batch_first=True),
    "lstm_eval_dropout": Spec("LSTM", num_layers=2, dropout=0.5),
    "gru_T1": Spec("GRU", T=1, num_layers=2, bidirectional=True),
    "rnn_hidden1": Spec("RNN_TANH", hidden_size=1, input_size=1, T=12),
    "lstm_empty_batch": Spec("LSTM", N=0, num_layers=2, bidirectional=True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_layer_matches_autograd(name):
    check_against_torch(CASES[name])


# --- the property over random layers ------------------------------------------------------


@st.composite
def recurrent_specs(draw, *, max_hidden: int = 8, max_layers: int = 3, max_T: int = 12) -> Spec:
    """A printable Spec: cell type, sizes, layers, directions, layout, length, state, loss."""
    mode = draw(st.sampled_from(list(MODULES)))
    hidden = draw(st.integers(1, max_hidden))
    proj = draw(st.integers(0, hidden - 1)) if mode == "LSTM" else 0
    n_outputs = 3 if mode == "LSTM" else 2
    uses = draw(st.tuples(*[st.booleans()] * n_outputs).filter(any))
    return Spec(
        mode, input_size=draw(st.integers(1, 4)), hidden_size=hidden,
        num_layers=draw(st.integers(1, max_layers)), bias=draw(st.booleans()),
        batch_first=draw(st.booleans()), bidirectional=draw(st.booleans()), proj_size=proj,
        T=draw(st.integers(1, max_T)), N=draw(st.one_of(st.none(), st.integers(1, 3))),
        initial_state=draw(st.booleans()), uses=uses, seed=draw(st.integers(0, 2**16)),
    )  # fmt: skip


@settings(max_examples=300)
@given(recurrent_specs())
def test_random_layers_match_autograd(spec):
    check_against_torch(spec)


# --- the trace: δ per step, ∂L/∂h_t, ∂L/∂c_t, against an unrolled torch model ------------------


def unrolled(spec: Spec, module: torch.nn.Module, x: torch.Tensor, states0):
    """torch's documented equations, step by step, keeping every tensor the trace reports."""
    D = 2 if spec.bidirectional else 1
    x = x.transpose(0, 1) if spec.batch_first else x  # (T, N, I)
    kept: dict[str, dict[str, list[torch.Tensor]]] = {}
    finals: list[list[torch.Tensor]] = [[], []]
    layer_in = x
    for k in range(spec.num_layers):
        outs = []
        for d in range(D):
            s = f"l{k}{'_reverse' if d else ''}"
            P = {n[: -len(s) - 1]: p for n, p in module.named_parameters() if n.endswith("_" + s)}
            gi = layer_in @ P["weight_ih"].T + P.get("bias_ih", 0.0)  # (T, N, G·H)
            gi.retain_grad()
            rec = kept[s] = {"gi": [gi], "gh": [], "h": [], "c": []}
            h = states0[0][k * D + d]
            c = states0[1][k * D + d] if spec.mode == "LSTM" else None
            hs = [None] * spec.T
            for t in reversed(range(spec.T)) if d else range(spec.T):
                gh = h @ P["weight_hh"].T + P.get("bias_hh", 0.0)
                gh.retain_grad()
                if spec.mode.startswith("RNN"):
                    f = torch.tanh if spec.mode == "RNN_TANH" else torch.relu
                    h = f(gi[t] + gh)
                elif spec.mode == "LSTM":
                    i, fg, g, o = (gi[t] + gh).chunk(4, dim=-1)
                    c = torch.sigmoid(fg) * c + torch.sigmoid(i) * torch.tanh(g)
                    c.retain_grad()
                    h = torch.sigmoid(o) * torch.tanh(c)
                    if "weight_hr" in P:
                        h = h @ P["weight_hr"].T
                    rec["c"].append((t, c))
                else:
                    ri, zi, ni = gi[t].chunk(3, dim=-1)
                    rh, zh, nh = gh.chunk(3, dim=-1)
                    r, z = torch.sigmoid(ri + rh), torch.sigmoid(zi + zh)
                    n = torch.tanh(ni + r * nh)
                    h = (1 - z) * n + z * h
                h.retain_grad()
                rec["gh"].append((t, gh))
                rec["h"].append((t, h))
                hs[t] = h
            finals[0].append(h)
            if c is not None:
                finals[1].append(c)
            outs.append(torch.stack(hs))
        layer_in = torch.cat(outs, dim=-1)
    out = layer_in.transpose(0, 1) if spec.batch_first else layer_in
    result = [out, torch.stack(finals[0])]
    if spec.mode == "LSTM":
        result.append(torch.stack(finals[1]))
    return result, kept


TRACE_CASES = ["rnn_relu_2layers_bidir", "lstm_3layers_bidir_h0", "lstm_proj_2layers_bidir_h0",
               "gru_2layers_bidir_batch_first", "lstm_c_n_only", "gru_h_n_only"]  # fmt: skip


@pytest.mark.parametrize("name", TRACE_CASES)
def test_bptt_trace_matches_autograd(name):
    check_trace(CASES[name])


@settings(max_examples=100)
@given(recurrent_specs(max_T=6))
def test_random_traces_match_autograd(spec):
    check_trace(spec)


def test_planted_bug_in_the_trace_fails(monkeypatch):
    """The reverse direction's trace left in processing order (t = T−1 first) must fail."""
    source = textwrap.dedent(inspect.getsource(recurrent.RNNBase.backward_trace))
    old = "trace = {name: a[::-1] for name, a in trace.items()}"
    assert source.count(old) == 1
    namespace = dict(vars(inspect.getmodule(recurrent.RNNBase)))
    exec(compile(source.replace(old, "pass"), "<mutated backward_trace>", "exec"), namespace)
    monkeypatch.setattr(recurrent.RNNBase, "backward_trace", namespace["backward_trace"])
    with pytest.raises(AssertionError, match="trace"):
        check_trace(CASES["gru_2layers_bidir_batch_first"])


def check_trace(spec: Spec) -> None:
    name = str(spec)
    module = torch_module(spec)
    layer = manual_layer(module, spec)
    arrays = inputs(spec)
    outs, cache = layer.forward(*arrays)
    weights = loss_weights(spec, [o.shape for o in outs])
    _, _, bptt = layer.backward_trace(weights, cache)

    x = torch.from_numpy(arrays[0])
    LD = spec.num_layers * (2 if spec.bidirectional else 1)
    N = 1 if spec.N is None else spec.N
    if spec.N is None:  # the trace keeps N = 1 for unbatched input: so does the reference
        x = x[:, None] if not spec.batch_first else x[None]
        arrays = (arrays[0], *(a[:, None] for a in arrays[1:]))
    states0 = [torch.from_numpy(a) for a in arrays[1:]] or [
        torch.zeros(LD, N, spec.proj_size or spec.hidden_size, dtype=torch.float64),
        torch.zeros(LD, N, spec.hidden_size, dtype=torch.float64),
    ]
    if spec.mode != "LSTM":
        states0 = states0[:1] + [None]
    t_outs, kept = unrolled(spec, module, x, states0)
    t_outs = [o.reshape(b.shape) for o, b in zip(t_outs, outs, strict=True)]
    for name_o, a, b in zip(("out", "h_n", "c_n"), t_outs, outs, strict=False):
        assert_close(f"unrolled torch {name_o} vs manual", name, a.detach().numpy(), b, **TOL)
    loss = sum((o * torch.from_numpy(w)).sum() for o, w in zip(t_outs, weights, strict=False)
               if w is not None)  # fmt: skip
    loss.backward()
    assert list(bptt.delta) == layer.suffixes()
    for s, rec in kept.items():
        where = f"{name} {s}"
        gi_grad = rec["gi"][0].grad
        want_delta = np.zeros_like(bptt.delta[s]) if gi_grad is None else gi_grad.numpy()
        assert_close("δ (T, N, G·H)", where, bptt.delta[s], want_delta, **TOL)
        for key, got in (("gh", bptt.delta_hh[s]), ("h", bptt.dL_dh[s]), ("c", bptt.dL_dc.get(s))):
            if not rec[key]:
                continue
            want = np.zeros_like(got)
            for t, tensor in rec[key]:
                if tensor.grad is not None:  # None: the loss does not reach it (zero)
                    want[t] = tensor.grad.numpy()
            assert_close(f"trace {key} (T, N, ·)", where, got, want, **TOL)
    if spec.mode == "LSTM":
        assert set(bptt.dL_dc) == set(layer.suffixes())
    else:
        assert bptt.dL_dc == {}


def test_param_grads_alone_match_backward():
    """param_grads skips ∂L/∂x of layer 0 and gives the same ∂L/∂θ (and trace)."""
    spec = CASES["lstm_3layers_bidir_h0"]
    layer = manual_layer(torch_module(spec), spec)
    outs, cache = layer.forward(*inputs(spec))
    weights = loss_weights(spec, [o.shape for o in outs])
    _, grads, trace = layer.backward_trace(weights, cache)
    alone = layer.param_grads(weights, cache)
    for name in grads:
        np.testing.assert_array_equal(alone[name], grads[name], err_msg=name)
    _, _, trace_alone = layer.backward_trace(weights, cache, input_grad=False)
    np.testing.assert_array_equal(trace_alone.delta["l0"], trace.delta["l0"])


# --- cells ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellSpec:
    mode: str
    input_size: int = 3
    hidden_size: int = 4
    bias: bool = True
    N: int | None = 2
    initial_state: bool = True
    uses: tuple[bool, ...] = (True, True)
    seed: int = 0


CELL_CASES = {
    "rnn_cell_tanh": CellSpec("RNN_TANH"),
    "rnn_cell_relu_zero_state": CellSpec("RNN_RELU", initial_state=False),
    "rnn_cell_unbatched_no_bias": CellSpec("RNN_TANH", N=None, bias=False),
    "lstm_cell": CellSpec("LSTM"),
    "lstm_cell_c_only": CellSpec("LSTM", uses=(False, True)),
    "lstm_cell_zero_state_unbatched": CellSpec("LSTM", N=None, initial_state=False),
    "gru_cell": CellSpec("GRU"),
    "gru_cell_no_bias_zero_state": CellSpec("GRU", bias=False, initial_state=False),
    "gru_cell_unbatched": CellSpec("GRU", N=None),
}


@pytest.mark.parametrize("name", list(CELL_CASES))
def test_cell_matches_autograd(name):
    spec = CELL_CASES[name]
    kw = {"nonlinearity": spec.mode[4:].lower()} if spec.mode.startswith("RNN") else {}
    module = CELL_MODULES[spec.mode](spec.input_size, spec.hidden_size, bias=spec.bias, **kw)
    module = module.double()
    rng = np.random.default_rng([spec.seed, 4])
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.8, 0.8, size=tuple(p.shape))))
    cls = CELL_LAYERS[spec.mode]
    layer = cls(**{a: getattr(module, a) for a in cls.OPTIONS},
                params={n: p.detach().numpy() for n, p in module.named_parameters()},
                initial_state=spec.initial_state)  # fmt: skip
    n = () if spec.N is None else (spec.N,)
    arrays = [rng.normal(size=(*n, spec.input_size))]
    if spec.initial_state:
        arrays += [rng.normal(size=(*n, spec.hidden_size))] * (2 if spec.mode == "LSTM" else 1)
    out, cache = layer.forward(*arrays)
    outs = out if spec.mode == "LSTM" else (out,)
    weights = tuple(rng.normal(size=o.shape) if u else None
                    for o, u in zip(outs, spec.uses, strict=False))  # fmt: skip
    xs = [torch.from_numpy(a).requires_grad_(True) for a in arrays]
    hx = None if len(xs) == 1 else (tuple(xs[1:]) if spec.mode == "LSTM" else xs[1])
    t_out = module(xs[0], hx)
    t_outs = t_out if spec.mode == "LSTM" else (t_out,)
    for name_o, got, want in zip(("h′", "c′"), outs, t_outs, strict=False):
        assert_close(f"forward {name_o}", name, got, want.detach().numpy(), **TOL)
    loss = sum((o * torch.from_numpy(w)).sum() for o, w in zip(t_outs, weights, strict=False)
               if w is not None)  # fmt: skip
    params = dict(module.named_parameters())
    want = torch.autograd.grad(loss, [*xs, *params.values()])
    d_prev, grads, bptt = layer.backward_trace(
        weights if spec.mode == "LSTM" else weights[0], cache
    )
    d_prev = d_prev if isinstance(d_prev, tuple) else (d_prev,)
    for label, got, w in zip(("∂L/∂x", "∂L/∂h", "∂L/∂c"), d_prev, want[: len(xs)], strict=False):
        assert_close(label, name, got, w.numpy(), **TOL)
    assert list(grads) == list(params)
    for (pname, got), w in zip(grads.items(), want[len(xs) :], strict=True):
        assert_close(f"∂L/∂{pname}", name, got, w.numpy(), **TOL)
    G = {"LSTM": 4, "GRU": 3}.get(spec.mode, 1)
    N = spec.N if spec.N is not None else 1
    assert bptt.delta[""].shape == (N, G * spec.hidden_size)
    assert bptt.dL_dh[""].shape == (N, spec.hidden_size)
    # δ of the cell is ∂L/∂(x W_ihᵀ + b_ih): its column sums are ∂L/∂b_ih
    if spec.bias:
        assert_close("Σ_n δ = ∂L/∂b_ih", name, bptt.delta[""].sum(axis=0), grads["bias_ih"],
                     **TOL)  # fmt: skip
    assert_close("δᵀ x = ∂L/∂W_ih", name, bptt.delta[""].T @ arrays[0].reshape(N, -1),
                 grads["weight_ih"], **TOL)  # fmt: skip


# --- planted bugs: each mutation of a kernel must make the comparison fail ----------------------


def mutated(function, old: str, new: str):
    """`function` recompiled with `old` replaced by `new` in its source (which must hold it)."""
    source = textwrap.dedent(inspect.getsource(function))
    assert source.count(old) == 1, f"the planted bug's target {old!r} is not (once) in the source"
    namespace = dict(vars(inspect.getmodule(function)))
    exec(compile(source.replace(old, new), f"<mutated {function.__name__}>", "exec"), namespace)
    return namespace[function.__name__]


def _lstm(forward=recurrent.lstm_forward, backward=recurrent.lstm_backward):
    return recurrent.Cell("LSTM", 4, 2, forward, backward)


def _gru(forward=recurrent.gru_forward, backward=recurrent.gru_backward):
    return recurrent.Cell("GRU", 3, 1, forward, backward)


def _rnn(forward=recurrent.rnn_forward, backward=recurrent.rnn_backward):
    act = recurrent.get_activation("tanh")
    return recurrent.Cell(
        "RNN_TANH", 1, 1,
        lambda gx, s, p, v=None: forward(gx, s, p, act, v),
        lambda d, df, tape, p, v=None: backward(d, df, tape, p, act, v),
    )  # fmt: skip


PLANTED = {
    "lstm: the carousel forgets to multiply by f_{t+1}": (
        "LSTM", lambda: _lstm(backward=mutated(
            recurrent.lstm_backward, "dL_dc[t] * f[t] + kept_c", "dL_dc[t] + kept_c")),
    ),
    "lstm: the carousel multiplies by f_t, not f_{t+1}": (
        "LSTM", lambda: _lstm(backward=mutated(
            recurrent.lstm_backward, "dL_dc[t] * f[t] + kept_c", "dL_dc[t] * f[t - 1] + kept_c")),
    ),
    "lstm: tanh′(c_t) left out of the output route": (
        "LSTM", lambda: _lstm(backward=mutated(
            recurrent.lstm_backward, "dm_dc = o * (1.0 - tanh_c**2)", "dm_dc = o")),
    ),
    "lstm: gates read in the order i, g, f, o": (
        "LSTM", lambda: _lstm(forward=mutated(
            recurrent.lstm_forward, "i, f, g, o = (gates[t, :, k * H",
            "i, g, f, o = (gates[t, :, k * H")),
    ),
    "lstm: ∂L/∂c0 without the forget gate": (
        "LSTM", lambda: _lstm(backward=mutated(
            recurrent.lstm_backward, "dL_dc[t] * f[t] + kept_c",
            "dL_dc[t] * (f[t] if t else 1) + kept_c")),
    ),
    "gru: b_hn outside the reset product": (
        "GRU", lambda: _gru(forward=mutated(
            recurrent.gru_forward, "np.tanh(gx[t, :, 2 * H :] + r[t] * gh_n[t])",
            "np.tanh(gx[t, :, 2 * H :] + r[t] * (gh_n[t] - _bias(p, 'bias_hh')[2 * H :])"
            " + _bias(p, 'bias_hh')[2 * H :])")),
    ),
    "gru: δ_hh's n block not multiplied by r": (
        "GRU", lambda: _gru(backward=mutated(
            recurrent.gru_backward, "= r[t] * delta_n", "= delta_n")),
    ),
    "gru: the direct route h_{t−1} → h_t left out": (
        "GRU", lambda: _gru(backward=mutated(
            recurrent.gru_backward, "dL_dh_new * z[t] + delta_hh", "delta_hh")),
    ),
    "rnn: no recurrent route back in time": (
        "RNN_TANH", lambda: _rnn(backward=mutated(
            recurrent.rnn_backward, "dL_dh_out[t] + from_next", "dL_dh_out[t]")),
    ),
    "rnn: ∂L/∂W_hh pairs δ_t with h_t, not h_{t−1}": (
        "RNN_TANH", lambda: _rnn(backward=mutated(
            recurrent.rnn_backward, "h[:-1].reshape(-1, H)", "h[1:].reshape(-1, H)")),
    ),
}  # fmt: skip


@pytest.mark.parametrize("bug", list(PLANTED))
def test_planted_bug_fails(bug, monkeypatch):
    mode, make = PLANTED[bug]
    monkeypatch.setitem(recurrent.CELLS, mode, make())
    spec = Spec(mode, num_layers=2, bidirectional=True, initial_state=True, T=6, hidden_size=5)
    with pytest.raises(AssertionError):
        check_against_torch(spec)


def test_unmutated_kernels_pass_the_planted_bug_spec(monkeypatch):
    """The harness of the planted bugs passes when nothing is planted."""
    for mode, make in {"LSTM": _lstm, "GRU": _gru, "RNN_TANH": _rnn}.items():
        monkeypatch.setitem(recurrent.CELLS, mode, make())
        spec = Spec(mode, num_layers=2, bidirectional=True, initial_state=True, T=6, hidden_size=5)
        check_against_torch(spec)


# --- errors: ValueError before any arithmetic -------------------------------------------------


def _params(spec: Spec) -> dict[str, np.ndarray]:
    return {n: p.detach().numpy() for n, p in torch_module(spec).named_parameters()}


def _lstm_kw(**over):
    spec = Spec("LSTM")
    kw = dict(input_size=3, hidden_size=4, params=_params(spec))
    return {**kw, **over}


CONSTRUCTION_ERRORS = {
    "missing parameter": (LSTM, lambda: _lstm_kw(params={k: v for k, v in _params(
        Spec("LSTM")).items() if k != "bias_hh_l0"}), "missing ['bias_hh_l0']"),
    "unexpected parameter": (LSTM, lambda: _lstm_kw(params={**_params(Spec("LSTM")),
                                                            "weight_hr_l0": np.zeros((2, 4))}),
                             "unexpected ['weight_hr_l0']"),
    "wrong parameter shape": (LSTM, lambda: _lstm_kw(hidden_size=5),
                              "weight_ih_l0 must have shape"),
    "proj_size on a GRU": (recurrent.RNNBase, lambda: dict(mode="GRU", input_size=3, hidden_size=4,
                           proj_size=2, params={}), "only supported for LSTM"),
    "proj_size ≥ hidden_size": (LSTM, lambda: _lstm_kw(proj_size=4), "smaller than hidden_size"),
    "unknown nonlinearity": (RNN, lambda: dict(input_size=3, hidden_size=4, nonlinearity="gelu",
                                               params={}), "unknown nonlinearity 'gelu'"),
    "dropout out of range": (LSTM, lambda: _lstm_kw(dropout=1.5), "dropout should be a number"),
    "zero hidden size": (GRU, lambda: dict(input_size=3, hidden_size=0, params={}),
                         "hidden_size must be an integer ≥ 1"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CONSTRUCTION_ERRORS))
def test_construction_errors(name):
    cls, kwargs, message = CONSTRUCTION_ERRORS[name]
    with pytest.raises(ValueError, match=_re(message)):
        cls(**kwargs())


def _re(text: str) -> str:
    import re

    return re.escape(text)


SHAPE_ERRORS = {
    "features": (Spec("LSTM"), [(5, 2, 4)], "I = 3"),
    "ndim": (Spec("GRU"), [(5, 2, 3, 1)], "got shape (5, 2, 3, 1)"),
    "empty sequence": (Spec("RNN_TANH"), [(0, 2, 3)], "sequence length to be larger than 0"),
    "h0 batch": (Spec("GRU", initial_state=True), [(5, 2, 3), (1, 3, 4)],
                 "h0 of shape (1, 2, 4), got (1, 3, 4)"),
    "h0 unbatched": (Spec("RNN_TANH", initial_state=True), [(5, 3), (1, 1, 4)],
                     "h0 of shape (1, 4), got (1, 1, 4)"),
    "c0 size with proj": (Spec("LSTM", hidden_size=5, proj_size=2, initial_state=True),
                          [(5, 2, 3), (1, 2, 2), (1, 2, 2)], "c0 of shape (1, 2, 5)"),
    "h0 layers × directions": (Spec("LSTM", num_layers=2, bidirectional=True, initial_state=True),
                               [(5, 2, 3), (2, 2, 4), (4, 2, 4)], "h0 of shape (4, 2, 4)"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SHAPE_ERRORS))
def test_shape_errors_come_before_arithmetic(name):
    spec, shapes, message = SHAPE_ERRORS[name]
    layer = manual_layer(torch_module(spec), spec)
    with pytest.raises(ValueError, match=_re(message)):
        layer.shape(*shapes)
    with pytest.raises(ValueError, match=_re(message)):
        layer.forward(*(np.ones(s) for s in shapes))


def test_backward_wants_a_tuple_of_deltas():
    spec = Spec("LSTM")
    layer = manual_layer(torch_module(spec), spec)
    outs, cache = layer.forward(*inputs(spec))
    with pytest.raises(ValueError, match="tuple of 3 δ"):
        layer.backward(np.ones_like(outs[0]), cache)


def test_params_follow_torch_order_and_shapes():
    spec = Spec("LSTM", num_layers=2, bidirectional=True, proj_size=2, bias=True)
    module = torch_module(spec)
    layer = manual_layer(module, spec)
    assert [(n, v.shape) for n, v in layer.params.items()] == [
        (n, tuple(p.shape)) for n, p in module.named_parameters()
    ]
    assert layer.n_inputs == 1 and layer.n_outputs == 3
    assert layer.decayed == () and layer.reports_delta
    assert replace(spec, initial_state=True) != spec
    assert manual_layer(module, replace(spec, initial_state=True)).n_inputs == 3


# --- inside a manual_bp Network: several inputs, Select, a tuple δ with None -------------------


@pytest.mark.parametrize("input_grad", [True, False])
def test_inside_a_network(input_grad):
    """x, h0, c0 → LSTM → h_n + c_n (two Selects, an Add) → Linear → MSE, against autograd; the
    δ the network hands the LSTM is (None, δ_h, δ_c) and its trace lands in the tape's cache."""
    from manual_bp.losses import MSELoss
    from manual_bp.network import Network, Node
    from manual_bp.ops import Add, Linear
    from manual_bp.ops.graph import Select

    spec = Spec("LSTM", num_layers=2, bidirectional=True, initial_state=True, hidden_size=4)
    module = torch_module(spec)
    head = torch.nn.Linear(4, 1).double()
    x, h0, c0 = inputs(spec)
    target = np.random.default_rng(9).normal(size=(4, 2, 1))
    net = Network(
        [
            Node("lstm", manual_layer(module, spec), ("x", "h0", "c0")),
            Node("h_n", Select(1), ("lstm",)),
            Node("c_n", Select(2), ("lstm",)),
            Node("sum", Add(2), ("h_n", "c_n")),
            Node(
                "head", Linear(head.weight.detach().numpy(), head.bias.detach().numpy()), ("sum",)
            ),  # fmt: skip
        ],
        inputs=("x", "h0", "c0"),
    )
    result = net.loss_and_gradients((x, h0, c0), target, MSELoss(), input_grad=input_grad)
    xs = [torch.from_numpy(a).requires_grad_(True) for a in (x, h0, c0)]
    _, (h_n, c_n) = module(xs[0], (xs[1], xs[2]))
    loss = torch.nn.functional.mse_loss(head(h_n + c_n), torch.from_numpy(target))
    loss.backward()
    assert result.loss == pytest.approx(float(loss.detach()), rel=1e-12)
    for name, p in [*(("lstm." + n, p) for n, p in module.named_parameters()),
                    *(("head." + n, p) for n, p in head.named_parameters())]:  # fmt: skip
        assert_close(f"∂L/∂{name}", "network", result.grads[name], p.grad.numpy(), **TOL)
    delta = result.deltas["lstm"]
    assert isinstance(delta, tuple) and delta[0] is None
    bptt = result.gradients.traces["lstm"]
    assert list(bptt.delta) == ["l0", "l0_reverse", "l1", "l1_reverse"]
    if input_grad:
        for name, t in zip(("x", "h0", "c0"), xs, strict=True):
            assert_close(f"∂L/∂{name}", "network", result.gradients.dL_dinputs[name],
                         t.grad.numpy(), **TOL)  # fmt: skip
