"""The trainability cells (experiments.measure.trainability) and the depth-scales experiment:
deterministic cells, the two ends of the phase diagram, and the experiment's files."""

import numpy as np
import pandas as pd
import pytest

from experiments import depth_scales
from experiments.measure.train import digits
from experiments.measure.trainability import Budget, Cell, train_cell
from experiments.report import depth_scales as report


@pytest.fixture(scope="module")
def data():
    return digits(0)


def test_a_cell_is_deterministic_and_depends_on_its_sigma(data):
    budget = Budget(steps=30)
    a = train_cell((Cell(1.5, 3), budget, data))
    b = train_cell((Cell(1.5, 3), budget, data))
    c = train_cell((Cell(2.5, 3), budget, data))
    assert a == b
    assert a["test_loss"] != c["test_loss"]
    assert a["steps"] == 30 and a["diverged"] == 0


def test_shallow_cells_train_and_deep_ordered_ones_do_not(data):
    """σ_w² = 0.5 at σ_b² = 0.05: ξ_c = 1.19, 6ξ_c = 7.1 layers."""
    budget = Budget(steps=300)
    shallow = train_cell((Cell(1.5, 3), budget, data))
    deep = train_cell((Cell(0.5, 24), budget, data))
    assert shallow["test_acc"] > 0.8, shallow
    assert deep["test_acc"] < 0.3, deep


def test_bad_cells_are_refused(data):
    with pytest.raises(ValueError, match="need depth ≥ 1 and σ_w² > 0"):
        train_cell((Cell(-1.0, 3), Budget(steps=1), data))


def test_agreement_counts_cells_on_either_side_of_six_xi_c():
    cells = pd.DataFrame(
        {"sigma_w2": [1.0, 1.0, 1.0], "depth": [4, 16, 32], "test_acc": [0.9, 0.2, 0.6]}
    )
    xi = pd.Series({1.0: 3.0})  # 6ξ_c = 18
    assert report.agreement(cells, xi) == {
        "below": 2,
        "below_trained": 1,
        "above": 1,
        "above_trained": 1,
    }
    assert report.deepest_trained(cells).to_dict() == {1.0: 32}


@pytest.mark.filterwarnings("error")  # quiet: any warning fails the run
def test_the_experiment_writes_the_same_bytes_twice(tmp_path):
    for name in ("a", "b"):
        assert (
            depth_scales.main(
                ["--quick", "--out", str(tmp_path / name), "--jobs", "1", "--no-progress"]
            )
            == 0
        )
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == [
        "README.md",
        "depth_scales.csv",
        "depth_scales.png",
        "trainability.csv",
        "trainability.png",
    ]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    scales = pd.read_csv(tmp_path / "a" / "depth_scales.csv")
    ordered = scales[scales["chi1"] < 1]
    # the CSV holds 6 digits: near χ1 = 1 that leaves ln χ1 to ~1e-4 relative
    np.testing.assert_allclose(ordered["xi_c"], -1 / np.log(ordered["chi1"]), rtol=1e-3)


def test_xi_c_is_drawn_as_a_divergence_not_a_grid_peak():
    """Approaching the critical line, ξ_c grows without bound (∝ 1/|σ_w² − σ_w²*|); the curve
    breaks on the line instead of joining the two nearest grid points in a finite peak."""
    from experiments.theory import meanfield

    scales = report.scales_frame("tanh", np.linspace(0.5, 4.0, 36), 0.05)
    critical = report.critical_line("tanh", 0.05)
    sigma, xi_c = report.divergent_xi_c(scales, critical)
    assert np.all(np.diff(sigma) > 0)
    assert np.isnan(xi_c[sigma == critical]).all()
    finite = xi_c[~np.isnan(xi_c)]
    assert finite.max() > 1e5 > 100 * scales["xi_c"].max(), (finite.max(), scales["xi_c"].max())
    near = meanfield.depth_scales("tanh", critical + 1e-4, 0.05).xi_c
    far = meanfield.depth_scales("tanh", critical + 1e-3, 0.05).xi_c
    assert 5 < near / far < 20, (near, far)  # ∝ 1/distance: ten times closer, ~ten times longer
