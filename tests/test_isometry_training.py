"""The training-speed study (experiments.isometry_training): the student is the Jacobian
study's net plus a readout, the teacher sets Var y = 1, SGD lowers the loss, the summary counts
what the curves show, and the experiment writes the same bytes twice."""

import math

import numpy as np
import pandas as pd
import pytest

from experiments import isometry_training as experiment
from experiments.measure import isometry_training as speed
from experiments.measure import jacobian as jm
from experiments.report import isometry_training as report

CONFIG = speed.SpeedConfig("tanh", "orthogonal", 1.05, 2.01e-5, 0.02592, 6, 16, 0, 30, 0.01)


def test_the_student_is_the_jacobian_studys_net_with_a_readout():
    net = speed.network(CONFIG)
    square = jm.JacobianConfig("tanh", "orthogonal", 1.05, 2.01e-5, 16, 6, 0, 0.02592)
    weights, _, _ = jm.parameters(square)
    params = net.named_parameters()
    for l, W in enumerate(weights, start=1):
        np.testing.assert_array_equal(params[f"{l}.weight"], W)
    assert params["7.weight"].shape == (4, 16) and "7.bias" not in params


def test_the_teacher_has_unit_output_variance_and_puts_h1_at_q_star():
    A, s = speed.teacher(CONFIG)
    assert s**2 * 1.05 + 2.01e-5 == pytest.approx(0.02592, rel=1e-12)
    # Var y = s² Σ_j A_ij², E over A = s² · N · 1/(N s²) = 1
    assert np.mean(s**2 * np.sum(A**2, axis=1)) == pytest.approx(1.0, abs=0.5)


def test_sgd_lowers_the_loss_and_the_curve_is_evaluated_every_few_steps():
    run = speed.train(CONFIG)
    assert len(run["loss"]) == CONFIG.steps // CONFIG.every + 1
    assert run["loss"][-1] < run["loss"][0]
    assert speed.steps_to([1.0, 0.6, 0.4, 0.3], 10, 0.5) == 20.0
    assert speed.steps_to([1.0, 0.6], 10, 0.5) == math.inf


def test_the_summary_counts_what_the_curves_show():
    curves = pd.DataFrame(
        {
            "depth": 6,
            "activation": "tanh",
            "weights": "orthogonal",
            "sigma_w2": 1.0,
            "sigma_b2": 0.0,
            "q_star": 0.1,
            "seed": [0, 0, 0, 1, 1, 1],
            "step": [0, 10, 20, 0, 10, 20],
            "loss": [1.0, 0.4, 0.3, 1.0, 0.8, 0.6],
        }
    )
    spread = {(6, "tanh", "orthogonal", 0.0): 0.5}
    (row,) = report.summarise(curves, spread, 0.5).to_dict("records")
    assert row["final_median"] == pytest.approx(0.45, rel=1e-12)
    assert (row["final_min"], row["final_max"]) == (0.3, 0.6)
    assert row["reached"] == 1 and row["steps_to_median"] == 10.0


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="q\\* > σ_b²"):
        speed.SpeedConfig("tanh", "gaussian", 1.0, 0.1, 0.05, 4, 8, 0, 10, 0.01)
    with pytest.raises(ValueError, match="must be ≥ 1"):
        speed.SpeedConfig("tanh", "gaussian", 1.0, 0.0, 0.05, 4, 8, 0, 0, 0.01)


@pytest.mark.filterwarnings("error")  # quiet: any warning fails the run
def test_the_experiment_writes_the_same_bytes_twice(tmp_path):
    for name in ("a", "b"):
        assert experiment.main(["--quick", "--out", str(tmp_path / name), "--jobs", "1"]) == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["README.md", "curves.csv", "loss_curves.png", "speed_vs_spread.png",
                     "summary.csv"]  # fmt: skip
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def _cell_row(depth, weights, low, high):
    return {"depth": depth, "activation": "tanh", "weights": weights, "q_star": 0.02,
            "normalised_var": 0.003 * depth, "final_median": (low + high) / 2,
            "final_min": low, "final_max": high}  # fmt: skip


def test_the_depth_trend_is_claimed_only_where_the_seed_ranges_are_disjoint():
    rows = [
        _cell_row(64, "orthogonal", 0.10, 0.12),
        _cell_row(128, "orthogonal", 0.13, 0.15),
        _cell_row(200, "orthogonal", 0.16, 0.20),
        _cell_row(64, "gaussian", 0.5, 0.6),
        _cell_row(128, "gaussian", 0.55, 0.7),
        _cell_row(200, "gaussian", 0.8, 0.9),
    ]
    (text,) = report.depth_trend(pd.DataFrame(rows))
    assert "**Depth 64, 128, 200**" in text
    orthogonal, gaussian = text.split("; tanh/orthogonal")[1], text.split("; tanh/orthogonal")[0]
    assert "rises with depth (ranges disjoint)" in orthogonal
    assert "gaussian" in gaussian and "ranges overlap" in gaussian
    assert report.depth_trend(pd.DataFrame(rows[:2] + rows[3:5])) == []  # two depths: no trend
