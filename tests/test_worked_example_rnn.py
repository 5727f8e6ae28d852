"""Every number of reports/worked_example_rnn.md, recomputed by torch.autograd.

The torch side never calls manual_bp: nn.RNN for the outputs and parameter gradients, the
same equations unrolled with retain_grad for z_t and h_t (δ_t = ∂E/∂z_t, ∂E/∂h_t), and
torch.autograd.functional.jacobian for ∂h_2/∂h_1. Then every 6-decimal number printed in the
report must be one of the checked numbers, formatted as the report formats it."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import torch_ref
from experiments import worked_example_rnn as we
from manual_bp import examples as ex

T = torch.from_numpy


def torch_numbers() -> dict[str, float]:
    x, y = T(ex.RNN_X), T(ex.RNN_TARGETS)
    W_ih, W_hh = T(ex.RNN_W_IH), T(ex.RNN_W_HH)
    b_ih, b_hh = T(ex.RNN_B_IH), T(ex.RNN_B_HH)
    # the module: outputs and parameter gradients
    rnn = torch.nn.RNN(1, 2).double()
    with torch.no_grad():
        for p, v in zip(rnn.parameters(), (W_ih, W_hh, b_ih, b_hh), strict=True):
            p.copy_(v)
    h0 = torch.zeros(1, 1, 2, dtype=torch.float64, requires_grad=True)
    out, _ = rnn(x, h0)
    E = 0.5 * ((out - y) ** 2).sum()
    E.backward()
    # the same equations, unrolled, keeping z_t and h_t
    h_prev = torch.zeros(2, dtype=torch.float64, requires_grad=True)  # not h0: nn.RNN owns its grad
    zs, hs = [], []
    for t in range(2):
        z = x[t, 0] @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh
        z.retain_grad()
        h = torch.tanh(z)
        h.retain_grad()
        zs.append(z)
        hs.append(h)
        h_prev = h
    E_unrolled = sum(0.5 * ((h - y[t, 0]) ** 2).sum() for t, h in enumerate(hs))
    E_unrolled.backward()
    torch.testing.assert_close(torch.stack(hs), out.detach()[:, 0], rtol=1e-15, atol=0)
    d1, d2 = zs[0].grad, zs[1].grad
    h1 = hs[0].detach()
    h_0 = torch.zeros(2, dtype=torch.float64)

    def step2(h):
        return torch.tanh(x[1, 0] @ W_ih.T + b_ih + h @ W_hh.T + b_hh)

    J = torch.autograd.functional.jacobian(step2, h1)
    n: dict[str, float] = {}

    def put(name, values):
        values = values.detach().numpy() if isinstance(values, torch.Tensor) else values
        values = np.asarray(values)
        if values.ndim == 0:
            n[name] = float(values)
        elif values.ndim == 1:
            n.update({f"{name}[{k + 1}]": float(v) for k, v in enumerate(values)})
        else:
            for j in range(values.shape[0]):
                for k in range(values.shape[1]):
                    n[f"{name}[{j + 1},{k + 1}]"] = float(values[j, k])

    for t in (1, 2):
        put(f"z{t}", zs[t - 1])
        put(f"h{t}", hs[t - 1])
        put(f"E{t}", 0.5 * ((hs[t - 1] - y[t - 1, 0]) ** 2).sum())
    put("E", E)
    put("dE/dh2", hs[1].grad)
    put("f'(z2)", 1 - torch.tanh(zs[1]) ** 2)
    put("delta2", d2)
    put("d(h1)", hs[0] - y[0, 0])
    put("W_hh^T d2", W_hh.T @ d2)
    put("dE/dh1", hs[0].grad)
    put("f'(z1)", 1 - torch.tanh(zs[0]) ** 2)
    put("delta1", d1)
    put("dE/dh0", h0.grad[0, 0])
    put("d2 h1^T", torch.outer(d2, h1))
    put("d1 h0^T", torch.outer(d1, h_0))
    put("dE/dW_hh", rnn.weight_hh_l0.grad)
    put("d1 x1", d1 * x[0, 0, 0])
    put("d2 x2", d2 * x[1, 0, 0])
    put("dE/dW_ih", rnn.weight_ih_l0.grad[:, 0])
    put("dE/db_ih", rnn.bias_ih_l0.grad)
    put("dE/db_hh", rnn.bias_hh_l0.grad)
    put("J", J)
    f2 = 1 - torch.tanh(zs[1].detach()) ** 2
    put("|W_hh|", torch.linalg.matrix_norm(W_hh, 2))
    put("max f'(z2)", f2.max())
    put("bound", torch.linalg.matrix_norm(W_hh, 2) * f2.max())
    put("|J|", torch.linalg.matrix_norm(J, 2))
    return n


MANUAL = we.numbers()
TORCH = torch_numbers()


def test_the_same_quantities_on_both_sides():
    assert list(MANUAL) == list(TORCH)


@pytest.mark.parametrize("name", list(MANUAL))
def test_number_matches_autograd(name):
    assert MANUAL[name] == pytest.approx(TORCH[name], rel=1e-12, abs=1e-15), (
        f"{name}: manual_bp {MANUAL[name]!r}, torch {TORCH[name]!r}"
    )


def test_every_printed_number_is_checked(tmp_path):
    out = tmp_path / "rnn.md"
    we.main(["--out", str(out)])
    text = out.read_text(encoding="utf-8")
    printed = re.findall(r"-?\d+\.\d{6}\b", text)
    checked = {we._f(v) for v in TORCH.values()}
    unchecked = sorted(set(printed) - checked)
    assert not unchecked, f"numbers in the report that no test checks: {unchecked}"
    assert len(printed) >= 60, len(printed)
    for name in ("E", "delta1[1]", "delta2[2]", "dE/dW_hh[1,1]", "|J|"):
        assert we._f(TORCH[name]) in text, name


def test_the_committed_report_is_current():
    """reports/worked_example_rnn.md is what the generator writes today."""
    from pathlib import Path

    committed = Path(__file__).parents[1] / "reports" / "worked_example_rnn.md"
    assert committed.read_text(encoding="utf-8") == we.render()


def test_planted_bug_is_caught():
    """A δ recursion without the route through W_hh changes δ_1: the comparison must fail."""
    from manual_bp.ops import recurrent

    original = recurrent.CELLS["RNN_TANH"]
    act = recurrent.get_activation("tanh")

    def no_recurrence(d, df, tape, p, valid=None):
        zero_w = {**p, "weight_hh": 0 * p["weight_hh"]}
        return recurrent.rnn_backward(d, df, tape, zero_w, act, valid)

    recurrent.CELLS["RNN_TANH"] = recurrent.Cell("RNN_TANH", 1, 1, original.forward, no_recurrence)
    try:
        broken = we.numbers()
    finally:
        recurrent.CELLS["RNN_TANH"] = original
    assert broken["delta1[1]"] != pytest.approx(TORCH["delta1[1]"], rel=1e-6)


# --- through the oracle: torch_ref.manual_trace on the same torch nn.RNN -------------------


class WorkedRNN(torch.nn.Module):
    """The worked example as a torch model: nn.RNN(1, 2) with the example's weights, h_0 an
    input (so the trace gives ∂E/∂h_0), every step's output to the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = torch.nn.RNN(1, 2).double()
        with torch.no_grad():
            self.rnn.weight_ih_l0.copy_(T(ex.RNN_W_IH))
            self.rnn.weight_hh_l0.copy_(T(ex.RNN_W_HH))
            self.rnn.bias_ih_l0.copy_(T(ex.RNN_B_IH))
            self.rnn.bias_hh_l0.copy_(T(ex.RNN_B_HH))

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x, h0)  # (T, N, H) = (2, 1, 2)
        return out


def oracle_numbers() -> dict[str, float]:
    """The report's numbers that the oracle's trace holds, under the report's names.
    MSELoss(reduction="sum") is 2E, so every derivative is halved (exactly: a power of 2)."""
    x, y, h0 = T(ex.RNN_X), T(ex.RNN_TARGETS), torch.zeros(1, 1, 2, dtype=torch.float64)
    trace = torch_ref.manual_trace(
        WorkedRNN(), torch.nn.MSELoss(reduction="sum"), (x, h0), y, input_grads=True
    )
    n: dict[str, float] = {"E": trace.loss / 2}

    def put(name: str, values: torch.Tensor) -> None:
        values = values.numpy()
        if values.ndim == 1:
            n.update({f"{name}[{k + 1}]": float(v) for k, v in enumerate(values)})
        else:
            n.update({f"{name}[{j + 1},{k + 1}]": float(values[j, k])
                      for j in range(values.shape[0]) for k in range(values.shape[1])})  # fmt: skip

    for t in (1, 2):
        put(f"h{t}", trace.outputs["rnn"][t - 1, 0])
        put(f"dE/dh{t}", trace.hidden_grads["rnn"][0, t - 1, 0] / 2)  # (L·D, T, N, H)
        put(f"delta{t}", trace.deltas["rnn"][0, t - 1, 0] / 2)  # (L·D, T, N, G·H)
    put("dE/dh0", trace.input_grads[1][0, 0] / 2)
    put("dE/dW_hh", trace.grads["rnn.weight_hh_l0"] / 2)
    put("dE/dW_ih", trace.grads["rnn.weight_ih_l0"][:, 0] / 2)
    put("dE/db_ih", trace.grads["rnn.bias_ih_l0"] / 2)
    put("dE/db_hh", trace.grads["rnn.bias_hh_l0"] / 2)
    return n


ORACLE = oracle_numbers()


def test_the_oracle_gives_every_backward_number():
    """δ_t, ∂E/∂h_t, ∂E/∂h_0 and every parameter gradient of the report, from the trace."""
    wanted = {
        name for name in MANUAL
        if name.split("[")[0] in ("E", "h1", "h2", "dE/dh1", "dE/dh2", "dE/dh0", "delta1",
                                  "delta2", "dE/dW_hh", "dE/dW_ih", "dE/db_ih", "dE/db_hh")
    }  # fmt: skip
    assert set(ORACLE) == wanted
    assert len(ORACLE) == 25


@pytest.mark.parametrize("name", list(ORACLE))
def test_the_oracle_reproduces_the_number(name):
    assert ORACLE[name] == pytest.approx(MANUAL[name], rel=1e-12, abs=1e-15), (
        f"{name}: through torch_ref {ORACLE[name]!r}, manual_bp {MANUAL[name]!r}"
    )


def test_the_oracle_agrees_with_autograd_on_the_example():
    x, y, h0 = T(ex.RNN_X), T(ex.RNN_TARGETS), torch.zeros(1, 1, 2, dtype=torch.float64)
    report = torch_ref.compare_gradients(
        WorkedRNN(), torch.nn.MSELoss(reduction="sum"), (x, h0), y, input_grads=True, rtol=1e-12
    )
    assert report.ok, str(report)
    assert sum(r.kind == "input" for r in report.rows) == 2
