"""The depth-scales experiment: the dropout theory, ξ fitted in finite nets, the trainability
cells (experiments.measure.trainability) and the stacked trainer of the frontier, and the
experiment's files."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from experiments import depth_scales
from experiments.measure import depth_scales as probes
from experiments.measure.train import digits
from experiments.measure.trainability import Budget, Cell, Frontier, train_cell, train_frontier
from experiments.report import depth_scales as report
from experiments.theory import meanfield


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
        "fits.csv",
        "measured.png",
        "propagation.csv",
        "trainability.csv",
        "trainability.png",
    ]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    scales = pd.read_csv(tmp_path / "a" / "depth_scales.csv")
    ordered = scales[(scales["chi1"] < 1) & (scales["keep"] == 1)]
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


# --- dropout in the mean-field maps (Schoenholz et al. 2017, section 5) --------------------


def _gauss2(f, q: float, c: float) -> float:
    """E[f(u1, u2)] for (u1, u2) ~ N(0, q[[1, c], [c, 1]]) by scipy's dblquad (independent of
    the module's Gauss–Hermite rule)."""
    s = math.sqrt(1.0 - c * c)

    def g(z2: float, z1: float) -> float:
        u1, u2 = math.sqrt(q) * z1, math.sqrt(q) * (c * z1 + s * z2)
        return f(u1, u2) * math.exp(-0.5 * (z1 * z1 + z2 * z2)) / (2 * math.pi)

    return integrate.dblquad(g, -10, 10, -10, 10, epsabs=1e-12, epsrel=1e-12)[0]


@pytest.mark.parametrize("sigma_w2", [1.0, 1.7610, 3.0])
@pytest.mark.parametrize("keep", [0.99, 0.95])
def test_dropout_fixed_points_solve_the_maps_by_an_independent_quadrature(sigma_w2, keep):
    """q* = (σ_w²/ρ) E[tanh²] + σ_b²; c* q* = σ_w² E[tanh(u1) tanh(u2)] + σ_b² with c* < 1;
    χ_c = σ_w² E[tanh′ tanh′] at c*: all three by dblquad, to 1e-8."""
    d = meanfield.depth_scales("tanh", sigma_w2, 0.05, keep)
    phi2 = _gauss2(lambda u1, u2: math.tanh(u1) ** 2, d.q_star, 0.0)
    assert d.q_star == pytest.approx(sigma_w2 / keep * phi2 + 0.05, rel=1e-8)
    pair = _gauss2(lambda u1, u2: math.tanh(u1) * math.tanh(u2), d.q_star, d.c_star)
    assert d.c_star < 1.0
    assert d.c_star * d.q_star == pytest.approx(sigma_w2 * pair + 0.05, rel=1e-8)
    dpair = _gauss2(
        lambda u1, u2: (1 - math.tanh(u1) ** 2) * (1 - math.tanh(u2) ** 2), d.q_star, d.c_star
    )
    assert d.chi_c == pytest.approx(sigma_w2 * dpair, rel=1e-8)
    assert d.xi_c == pytest.approx(-1.0 / math.log(d.chi_c), rel=1e-12)


def test_dropout_keeps_xi_c_finite_at_the_critical_line():
    """Without dropout ξ_c diverges at σ_w²*; with ρ = 0.99 (0.95) its largest value over σ_w²
    is 14.5 (6.8) layers, the size of Schoenholz et al.'s figure 5 peaks."""
    critical = meanfield.critical_sigma_w2("tanh", 0.05)
    assert meanfield.depth_scales("tanh", critical, 0.05).xi_c > 1e3
    grid = np.arange(0.5, 4.0001, 0.05)
    for keep, peak in ((0.99, 14.5), (0.95, 6.8)):
        xi = [meanfield.depth_scales("tanh", s, 0.05, keep).xi_c for s in grid]
        assert max(xi) == pytest.approx(peak, abs=0.1), keep
    same = meanfield.depth_scales("tanh", 1.2, 0.05, 1.0)
    assert same == meanfield.depth_scales("tanh", 1.2, 0.05)
    with pytest.raises(ValueError, match="keep probability"):
        meanfield.depth_scales("tanh", 1.2, 0.05, 0.0)


def test_dropout_in_a_wide_net_settles_at_the_dropout_fixed_point():
    """q^(l) of a width-1000 tanh net with ρ = 0.9 settles at the dropout q* (1/ρ on the
    diagonal), well above the q* without dropout: a net that forgot the 1/ρ scaling fails."""
    probe = probes.Probe(width=1000, depth=16, pairs=4, lengths=16)
    rows = pd.DataFrame(probes.propagate((probes.Config("tanh", 1.5, (1.0, 0.9), 0), probe)))
    late = rows[rows["layer"] > 8].groupby("keep")["q"].mean()
    with_dropout = meanfield.depth_scales("tanh", 1.5, 0.05, 0.9).q_star
    without = meanfield.depth_scales("tanh", 1.5, 0.05).q_star
    gap = with_dropout - without
    assert gap / without > 0.05
    assert abs(late[0.9] - with_dropout) < 0.4 * gap, (late[0.9], with_dropout, without)
    assert abs(late[1.0] - without) < 0.4 * gap, (late[1.0], with_dropout, without)


# --- the fit --------------------------------------------------------------------------------


@pytest.mark.parametrize("xi", [1.5, 6.0, 20.0])
def test_the_fit_recovers_a_known_depth_scale_from_noisy_synthetic_curves(xi):
    rng = np.random.default_rng(7)
    layers = np.arange(1, 97)
    dev = 0.8 * np.exp(-(layers - 1) / xi) + 1e-3 * rng.standard_normal(len(layers))
    fit = probes.fit_depth_scale(layers, dev)
    assert fit.points >= 3
    assert fit.xi == pytest.approx(xi, rel=0.05), fit
    assert abs(dev[fit.last - 1]) > probes.FLOOR_FACTOR * probes.noise_floor(dev)


def test_the_fit_refuses_to_fit_noise_and_mismatched_arrays():
    rng = np.random.default_rng(8)
    assert math.isnan(probes.fit_depth_scale(np.arange(1, 50), rng.normal(size=49) * 1e-3).xi)
    with pytest.raises(ValueError, match="equal 1-d arrays"):
        probes.fit_depth_scale(np.arange(3), np.ones(4))


def test_finite_nets_give_the_ordered_xi_c_of_the_theory():
    """tanh at σ_w² = 1 (ξ_c = 3.63): the fit of one width-500 net lands within 10%."""
    rows = pd.DataFrame(
        probes.propagate((probes.Config("tanh", 1.0, (1.0,), 0), probes.Probe(depth=48)))
    )
    fit = probes.fit_depth_scale(rows["layer"].to_numpy(), -rows["one_minus_c"].to_numpy())
    assert fit.xi == pytest.approx(meanfield.depth_scales("tanh", 1.0, 0.05).xi_c, rel=0.1)


# --- the frontier's stacked trainer ------------------------------------------------------------


def test_the_stacked_trainer_follows_manual_bp_step_for_step(data):
    """Three cells trained side by side give train_cell's (manual_bp's network) test loss to
    round-off, at each checkpoint; a cell's result does not depend on its neighbours."""
    cells = tuple(Cell(s, 4, 0) for s in (1.0, 1.5, 2.5))
    rows = train_frontier((4, cells, Frontier(checkpoints=(7, 30)), data))
    alone = train_frontier((4, cells[1:2], Frontier(checkpoints=(7, 30)), data))
    for steps in (7, 30):
        for c in cells:
            ref = train_cell((c, Budget(width=32, batch=16, steps=steps), data))
            got = [r for r in rows if r["sigma_w2"] == c.sigma_w2 and r["budget"] == steps][0]
            assert got["test_loss"] == pytest.approx(ref["test_loss"], rel=1e-12), (c, steps)
            assert got["test_acc"] == ref["test_acc"]
    mid = [r for r in rows if r["sigma_w2"] == 1.5]
    assert [r["test_loss"] for r in alone] == pytest.approx(
        [r["test_loss"] for r in mid], rel=1e-12
    )


def test_the_stacked_trainer_refuses_mixed_depths(data):
    with pytest.raises(ValueError, match="cells of that depth"):
        train_frontier((4, (Cell(1.0, 3),), Frontier(), data))
