"""Golden numbers of seed 003's worked example, through manual_bp and through torch_ref.

The seed rounds intermediate values to 9 digits, so agreement is to 3e-9."""

import numpy as np
import pytest
import torch
import torch.nn as nn

import torch_ref
from manual_bp import examples
from manual_bp.optim import SGD

SEED_ROUNDING = 3e-9
GOLDEN = {  # the seed's printed numbers
    "E_total": 0.298371109,
    "dE/dw5": 0.082167041,
    "delta_o1": 0.138498562,
    "delta_o2": -0.038098236,
    "dE/dw1": 0.000438568,
    "w5 after SGD": 0.35891648,
    "w1 after SGD": 0.149780716,
}


def manual_numbers() -> dict[str, float]:
    net = examples.seed_network()
    r = net.loss_and_gradients(examples.INPUTS, examples.TARGETS, examples.seed_loss())
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
def test_manual_bp_reproduces_the_seed(quantity):
    got = manual_numbers()[quantity]
    assert got == pytest.approx(GOLDEN[quantity], abs=SEED_ROUNDING), (
        f"{quantity}: manual_bp {got:.12f}, seed {GOLDEN[quantity]}"
    )


def seed_torch_model() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 2), nn.Sigmoid()).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(examples.W1))
        model[0].bias.copy_(torch.from_numpy(examples.B1))
        model[2].weight.copy_(torch.from_numpy(examples.W2))
        model[2].bias.copy_(torch.from_numpy(examples.B2))
    return model


def test_torch_ref_reproduces_the_seed():
    """Through the oracle: MSELoss(sum) is 2·E_total, so its gradients are twice the seed's."""
    model = seed_torch_model()
    x, t = torch.from_numpy(examples.INPUTS), torch.from_numpy(examples.TARGETS)
    trace = torch_ref.manual_trace(model, nn.MSELoss(reduction="sum"), x, t)
    assert trace.loss / 2 == pytest.approx(GOLDEN["E_total"], abs=SEED_ROUNDING)
    assert float(trace.grads["2.weight"][0, 0]) / 2 == pytest.approx(
        GOLDEN["dE/dw5"], abs=SEED_ROUNDING
    )
    assert float(trace.grads["0.weight"][0, 0]) / 2 == pytest.approx(
        GOLDEN["dE/dw1"], abs=SEED_ROUNDING
    )
    assert float(trace.deltas["2"][0, 0]) / 2 == pytest.approx(
        GOLDEN["delta_o1"], abs=SEED_ROUNDING
    )
    assert float(trace.deltas["2"][0, 1]) / 2 == pytest.approx(
        GOLDEN["delta_o2"], abs=SEED_ROUNDING
    )
    report = torch_ref.compare_gradients(model, nn.MSELoss(reduction="sum"), x, t, rtol=1e-12)
    assert report.ok, str(report)


def test_the_report_shows_the_seed_numbers(tmp_path):
    from experiments import worked_example

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
