"""Golden numbers of the worked example of Matt Mazur, "A Step by Step Backpropagation
Example" (2015), through manual_bp and through torch_ref, and the report that prints them.

The post rounds intermediate values to 9 digits, so agreement is to 3e-9."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import torch_ref
from experiments import worked_example
from manual_bp import examples
from manual_bp.optim import SGD

REPORT = Path(__file__).resolve().parents[1] / "reports" / "worked_example.md"
POST_ROUNDING = 3e-9
GOLDEN = {  # the post's printed numbers
    "E_total": 0.298371109,
    "dE/dw5": 0.082167041,
    "delta_o1": 0.138498562,
    "delta_o2": -0.038098236,
    "dE/dw1": 0.000438568,
    "w5 after SGD": 0.35891648,
    "w1 after SGD": 0.149780716,
}


def manual_numbers() -> dict[str, float]:
    net = examples.mazur_network()
    r = net.loss_and_gradients(examples.INPUTS, examples.TARGETS, examples.mazur_loss())
    numbers = {
        "E_total": r.loss,
        "dE/dw5": r.grads["2.weight"][0, 0],
        "delta_o1": r.deltas["2"][0, 0],
        "delta_o2": r.deltas["2"][0, 1],
        "dE/dw1": r.grads["1.weight"][0, 0],
    }
    SGD(examples.LEARNING_RATE).step(net, r.grads)
    params = net.named_parameters()
    numbers["w5 after SGD"] = params["2.weight"][0, 0]
    numbers["w1 after SGD"] = params["1.weight"][0, 0]
    return numbers


@pytest.mark.parametrize("quantity", list(GOLDEN))
def test_manual_bp_reproduces_the_post(quantity):
    got = manual_numbers()[quantity]
    assert got == pytest.approx(GOLDEN[quantity], abs=POST_ROUNDING), (
        f"{quantity}: manual_bp {got:.12f}, the post {GOLDEN[quantity]}"
    )


def mazur_torch_model() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 2), nn.Sigmoid()).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(examples.W1))
        model[0].bias.copy_(torch.from_numpy(examples.B1))
        model[2].weight.copy_(torch.from_numpy(examples.W2))
        model[2].bias.copy_(torch.from_numpy(examples.B2))
    return model


def test_torch_ref_reproduces_the_post():
    """Through the oracle: MSELoss(sum) is 2·E_total, so its gradients are twice the post's."""
    model = mazur_torch_model()
    x, t = torch.from_numpy(examples.INPUTS), torch.from_numpy(examples.TARGETS)
    trace = torch_ref.manual_trace(model, nn.MSELoss(reduction="sum"), x, t)
    assert trace.loss / 2 == pytest.approx(GOLDEN["E_total"], abs=POST_ROUNDING)
    assert float(trace.grads["2.weight"][0, 0]) / 2 == pytest.approx(
        GOLDEN["dE/dw5"], abs=POST_ROUNDING
    )
    assert float(trace.grads["0.weight"][0, 0]) / 2 == pytest.approx(
        GOLDEN["dE/dw1"], abs=POST_ROUNDING
    )
    assert float(trace.deltas["2"][0, 0]) / 2 == pytest.approx(
        GOLDEN["delta_o1"], abs=POST_ROUNDING
    )
    assert float(trace.deltas["2"][0, 1]) / 2 == pytest.approx(
        GOLDEN["delta_o2"], abs=POST_ROUNDING
    )
    report = torch_ref.compare_gradients(model, nn.MSELoss(reduction="sum"), x, t, rtol=1e-12)
    assert report.ok, str(report)


def test_the_report_shows_the_posts_numbers(tmp_path):
    out = tmp_path / "worked.md"
    worked_example.main(["--out", str(out)])
    text = out.read_text()
    for number in (
        "0.298371109",
        "0.082167041",
        "0.138498562",
        "0.000438568",
        "0.358916480",
        "0.149780716",
        "0.055399425",
        "0.036350306",
    ):
        assert number in text, f"{number} missing from the worked example report"
    assert np.isfinite(manual_numbers()["E_total"])


def test_error_after_the_step_with_the_posts_weights():
    """The post keeps the biases fixed; its own updated weights (as printed, 9 digits) give
    E_total = 0.291027774, the number the report prints (the post itself prints 0.291027924)."""
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    w1 = np.array([[0.149780716, 0.19956143], [0.24975114, 0.29950229]])
    w2 = np.array([[0.35891648, 0.408666186], [0.511301270, 0.561370121]])
    out = sigmoid(w2 @ sigmoid(w1 @ examples.INPUTS[0] + examples.B1) + examples.B2)
    e_total = 0.5 * np.sum((examples.TARGETS[0] - out) ** 2)
    assert e_total == pytest.approx(0.291027774, abs=POST_ROUNDING)
    assert "| the weights only (the post) | b1 = 0.35, b2 = 0.60 | 0.291027774 |" in (
        worked_example.render()
    )


def test_the_committed_report_is_what_the_experiment_writes():
    assert REPORT.read_text() == worked_example.render(), (
        "reports/worked_example.md is stale: python -m experiments.worked_example"
    )


def test_the_report_cites_public_sources_only():
    text = worked_example.render()
    assert 'Matt Mazur, ["A Step by Step\nBackpropagation Example"][mazur] (2015)' in text
    assert f"[mazur]: {worked_example.MAZUR_URL}" in text
    assert "Rumelhart" in text
    assert not re.search(r"seed \d|seeds/|shared/", text, re.IGNORECASE)


@pytest.mark.parametrize(
    ("biases", "want"),
    [("per_unit", 0.280471447), ("shared", 0.285750887)],
)
def test_the_step_with_per_unit_and_with_shared_biases(biases, want):
    """The post's network shares one bias per layer; manual_bp's has one per unit. The same
    SGD step gives E_total 0.285750887 with shared biases (their gradient is the sum over
    the layer's units) and 0.280471447 with a bias per unit; the report prints both."""
    net = examples.mazur_network()
    r = net.loss_and_gradients(examples.INPUTS, examples.TARGETS, examples.mazur_loss())
    grads = r.grads if biases == "per_unit" else worked_example.shared_bias_gradients(r.grads)
    SGD(examples.LEARNING_RATE).step(net, grads)
    if biases == "shared":
        for key in ("1.bias", "2.bias"):
            b = net.named_parameters()[key]
            assert b[0] == b[1], (key, b)
    after = net.loss_and_gradients(examples.INPUTS, examples.TARGETS, examples.mazur_loss())
    assert round(after.loss, 9) == want, (biases, after.loss)
    assert f"{want:.9f}" in REPORT.read_text()
