"""The recurrent lab: flow measurements against theory and torch, the adding problem, the report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from experiments.measure import recurrent as lab
from tests._compare import assert_close

SMALL = {"T": 20, "hidden": 16, "batch": 4, "input_size": 3}
CONFIGS = {c.name: c for c in lab.FLOW_CONFIGS}


# --- flow ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rho", lab.RHOS)
def test_linear_rate_is_exactly_log10_rho(rho):
    """‖∂L/∂h_t‖ = ρ^(T−t) ‖∂L/∂h_T‖ for W_hh = ρQ and f = identity."""
    r = lab.measure_flow(CONFIGS[f"linear_rho{rho}"], **SMALL)
    T = SMALL["T"]
    assert r.rate == pytest.approx(math.log10(rho), abs=1e-12)
    want = r.grad_h_norm[-1] * rho ** (T - 1 - np.arange(T))
    np.testing.assert_allclose(r.grad_h_norm, want, rtol=1e-12)
    assert r.rate_exact == r.rate_bound == pytest.approx(math.log10(rho), abs=0)


@pytest.mark.parametrize("rho", lab.RHOS)
def test_tanh_rate_lies_below_pascanus_bound(rho):
    r = lab.measure_flow(CONFIGS[f"tanh_rho{rho}"], **SMALL)
    assert r.rate <= r.rate_bound_path <= r.rate_bound + 1e-15
    assert r.rate_bound == pytest.approx(math.log10(rho), abs=1e-15)
    assert 0 < r.deriv_mean < 1


def test_loss_at_the_last_step_starts_every_curve_at_the_same_norm():
    """∂L/∂h_T = u/N: ‖∂L/∂h_T‖_F = 1/√N for every net."""
    for config in lab.FLOW_CONFIGS:
        r = lab.measure_flow(config, **SMALL)
        assert r.grad_h_norm[-1] == pytest.approx(1 / math.sqrt(SMALL["batch"]), rel=1e-12)


def _torch_dL_dh(config: lab.FlowConfig, T: int, hidden: int, batch: int, input_size: int):
    """‖∂L/∂h_t‖ by autograd through torch's cells unrolled over the same weights and data."""
    rng_params = np.random.default_rng([0, 1, lab._stable_hash(config.name)])
    rng_data = np.random.default_rng([0, 2])
    x = rng_data.normal(size=(T, batch, input_size))
    u = rng_data.normal(size=hidden)
    u /= np.linalg.norm(u)
    layer = lab.flow_layer(config, input_size, hidden, rng_params)
    cls = {"LSTM": torch.nn.LSTMCell, "GRU": torch.nn.GRUCell}.get(config.cell, torch.nn.RNNCell)
    kw = {"nonlinearity": config.cell} if cls is torch.nn.RNNCell else {}
    cell = cls(input_size, hidden, **kw).double()
    with torch.no_grad():
        for n, p in cell.named_parameters():
            p.copy_(torch.from_numpy(layer.params[f"{n}_l0"]))
    h = torch.zeros(batch, hidden, dtype=torch.float64)
    c = torch.zeros_like(h)
    hs = []
    for t in range(T):
        xt = torch.from_numpy(x[t])
        if config.cell == "LSTM":
            h, c = cell(xt, (h, c))
        else:
            h = cell(xt, h)
        h.retain_grad()
        hs.append(h)
    (h @ torch.from_numpy(u)).mean().backward()
    return np.array([float(hh.grad.norm()) for hh in hs])


@pytest.mark.parametrize("name", ["tanh_rho0.9", "tanh_rho1.5", "relu_identity", "lstm_default",
                                  "lstm_forget1", "gru_default", "gru_update1"])  # fmt: skip
def test_flow_matches_autograd(name):
    r = lab.measure_flow(CONFIGS[name], **SMALL)
    want = _torch_dL_dh(CONFIGS[name], **SMALL)
    assert_close("‖∂L/∂h_t‖", name, r.grad_h_norm, want, rtol=1e-9, atol=0.0)


def test_gate_rates_read_the_right_gate():
    """Bias 1 on the LSTM's forget / GRU's update gate raises that gate: mean log10 ↑."""
    for default, one in (("lstm_default", "lstm_forget1"), ("gru_default", "gru_update1")):
        a, b = (lab.measure_flow(CONFIGS[n], **SMALL) for n in (default, one))
        assert -0.35 < a.gate_rate < -0.25 < b.gate_rate < -0.1, (default, a.gate_rate, b.gate_rate)
        assert a.rate < b.rate


def test_init_helpers():
    rng = np.random.default_rng(0)
    q = lab.scaled_orthogonal(12, 1.1, rng)
    np.testing.assert_allclose(np.linalg.svd(q, compute_uv=False), 1.1, rtol=1e-12)
    p = lab.torch_default_params("LSTM", 3, 5, rng)
    assert {k: v.shape for k, v in p.items()} == {
        "weight_ih_l0": (20, 3), "weight_hh_l0": (20, 5), "bias_ih_l0": (20,), "bias_hh_l0": (20,)
    }  # fmt: skip
    assert max(np.abs(v).max() for v in p.values()) <= 1 / math.sqrt(5)
    one = lab.gate_bias_one(p, 1, 5)
    np.testing.assert_array_equal((one["bias_ih_l0"] + one["bias_hh_l0"])[5:10], 1.0)
    np.testing.assert_array_equal(one["bias_ih_l0"][:5], p["bias_ih_l0"][:5])


# --- the adding problem -----------------------------------------------------------------------


def test_adding_batch():
    x, y = lab.adding_batch(11, 500, np.random.default_rng(0))
    assert x.shape == (11, 500, 2) and y.shape == (500, 1)
    markers = x[..., 1]
    assert (markers.sum(axis=0) == 2).all()
    assert (markers[:5].sum(axis=0) == 1).all() and (markers[5:].sum(axis=0) == 1).all()
    np.testing.assert_allclose(y[:, 0], (x[..., 0] * markers).sum(axis=0), rtol=1e-15)
    assert ((0 <= x[..., 0]) & (x[..., 0] < 1)).all()
    with pytest.raises(ValueError, match="T ≥ 2"):
        lab.adding_batch(1, 3, np.random.default_rng(0))


def test_trivial_mse_is_one_sixth():
    """Predicting the mean, 1: E[(X₁ + X₂ − 1)²] = 1/6 (to 4 standard errors of 200 000 draws)."""
    _, y = lab.adding_batch(4, 200_000, np.random.default_rng(1))
    d2 = (y - 1.0) ** 2
    assert abs(d2.mean() - lab.TRIVIAL_MSE) < 4 * d2.std() / math.sqrt(len(d2))


@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_regressor_gradients_match_autograd(kind):
    rng = np.random.default_rng(3)
    model = lab.adding_model(kind, 6, rng)
    x, y = lab.adding_batch(9, 5, rng)
    loss, grads = model.loss_and_gradients(x, y)
    net = (torch.nn.LSTM if kind == "LSTM" else torch.nn.RNN)(2, 6).double()
    head = torch.nn.Linear(6, 1).double()
    params = model.named_parameters()
    with torch.no_grad():
        for n, p in [*(("rnn." + n, p) for n, p in net.named_parameters()),
                     *(("head." + n, p) for n, p in head.named_parameters())]:  # fmt: skip
            p.copy_(torch.from_numpy(params[n]))
    out = net(torch.from_numpy(x))[0]
    t_loss = torch.nn.functional.mse_loss(head(out[-1]), torch.from_numpy(y))
    t_loss.backward()
    assert loss == pytest.approx(float(t_loss.detach()), rel=1e-12)
    want = {**{"rnn." + n: p.grad for n, p in net.named_parameters()},
            **{"head." + n: p.grad for n, p in head.named_parameters()}}  # fmt: skip
    assert list(grads) == list(params) == list(want)
    for n, g in grads.items():
        assert_close(f"∂L/∂{n}", kind, g, want[n].numpy(), rtol=1e-9, atol=0.0)


def test_training_learns_and_repeats():
    kw = dict(hidden=8, steps=120, batch=16, lr=0.02, clip=1.0, seed=0, eval_every=40, n_test=200)
    a = lab.train_adding("LSTM", 6, **kw)
    b = lab.train_adding("LSTM", 6, **kw)
    assert a.test_mse == b.test_mse and a.grad_norm == b.grad_norm
    assert a.steps == [0, 40, 80, 120]
    assert a.test_mse[-1] < 0.5 * lab.TRIVIAL_MSE, a.test_mse


# --- the report --------------------------------------------------------------------------------


def test_quick_report_is_complete_and_byte_identical(tmp_path):
    from experiments import rnn_gradient_flow as exp

    first, second = tmp_path / "a", tmp_path / "b"
    exp.main(["--quick", "--out", str(first)])
    exp.main(["--quick", "--out", str(second)])
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(["README.md", "flow.csv", "flow_summary.csv", "adding.csv",
                            "adding_summary.csv", "flow_rnn.png", "flow_gated.png", "rates.png",
                            "adding.png"])  # fmt: skip
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    import pandas as pd

    summary = pd.read_csv(first / "flow_summary.csv")
    assert list(summary["config"]) == [c.name for c in lab.FLOW_CONFIGS]
    flow = pd.read_csv(first / "flow.csv")
    assert len(flow) == len(lab.FLOW_CONFIGS) * exp.QUICK.flow_T
    text = (first / "README.md").read_text()
    for _, row in summary.iterrows():
        assert f"{row['rate']:+.4f}" in text, row["config"]
    adding = pd.read_csv(first / "adding_summary.csv")
    assert len(adding) == 2 * len(exp.QUICK.lengths) * exp.QUICK.seeds
    assert sorted(set(adding["seed"])) == list(range(exp.QUICK.seeds))
    for _, row in adding.iterrows():
        assert f"{row['final_test_mse']:.4f}" in text
