"""The input–output Jacobian of experiments.measure.jacobian against torch.autograd's, its
free-probability theory against moments computed here by quad, and the experiment's files."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from experiments import jacobian_spectrum
from experiments.measure import jacobian as jm
from experiments.theory import meanfield as mf


def _torch_jacobian(config: jm.JacobianConfig, depth: int) -> np.ndarray:
    """∂h^(L)/∂h^(0) of the same weights by torch.autograd.functional.jacobian."""
    weights, biases, h0 = jm.parameters(config)
    act = {"tanh": torch.tanh, "relu": torch.relu}[config.activation]
    Ws = [torch.from_numpy(W) for W in weights[:depth]]
    bs = [torch.from_numpy(b) for b in biases[:depth]]

    def forward(h):
        for W, b in zip(Ws, bs, strict=True):
            h = W @ act(h) + b
        return h

    return torch.autograd.functional.jacobian(forward, torch.from_numpy(h0)).numpy()


@pytest.mark.parametrize(
    "activation, weights", [("tanh", "gaussian"), ("tanh", "orthogonal"), ("relu", "gaussian")]
)
def test_the_product_of_explicit_factors_is_autograds_jacobian(activation, weights):
    config = jm.JacobianConfig(activation, weights, 1.3, 0.05, 12, 6, 3, 0.7)
    ours = jm.products(config, (1, 3, 6))
    for depth, J in ours.items():
        theirs = _torch_jacobian(config, depth)
        np.testing.assert_allclose(
            J,
            theirs,
            rtol=1e-12,
            atol=1e-12 * np.abs(theirs).max(),
            err_msg=f"{activation}/{weights} depth {depth}",
        )


def test_a_linear_orthogonal_stack_is_an_exact_isometry():
    config = jm.JacobianConfig("linear", "orthogonal", 1.0, 0.0, 16, 20, 0, 1.0)
    for depth, s in jm.singular_values(config, (5, 20)).items():
        np.testing.assert_allclose(s, 1.0, atol=1e-12, err_msg=f"depth {depth}")


def _mu(k: int, q: float) -> float:
    r = math.sqrt(q)
    value, _ = integrate.quad(
        lambda z: (1 / math.cosh(r * z) ** 2) ** (2 * k) * math.exp(-0.5 * z * z),
        -14,
        14,
        epsrel=1e-13,
    )
    return value / math.sqrt(2 * math.pi)


def test_spectrum_theory_at_criticality_matches_independent_moments():
    """At the fixed point q* every layer contributes μ2/μ1² − 1 − s1 (Pennington et al. 2017)."""
    q = mf.fixed_point("tanh", 1.05, 2.01e-5)
    per_layer = _mu(2, q) / _mu(1, q) ** 2 - 1.0
    chi = 1.05 * _mu(1, q)
    for weights, s1 in (("orthogonal", 0.0), ("gaussian", -1.0)):
        t = jm.spectrum_theory("tanh", weights, 1.05, 2.01e-5, q, 64)
        assert t.normalised_var == pytest.approx(64 * (per_layer - s1), rel=1e-8), weights
        assert t.mean_s2 == pytest.approx(chi**64, rel=1e-8)
        assert t.var_s2 == pytest.approx(chi**128 * 64 * (per_layer - s1), rel=1e-8)


@pytest.mark.parametrize("weights, per_layer", [("orthogonal", 1.0), ("gaussian", 2.0)])
def test_relu_at_criticality_grows_linearly_either_way(weights, per_layer):
    t = jm.spectrum_theory("relu", weights, 2.0, 0.0, 1.0, 32)
    assert t.mean_s2 == pytest.approx(1.0) and t.var_s2 == pytest.approx(32 * per_layer)


def test_measured_variance_matches_theory_at_small_depth():
    """Depth 4, width 128: finite-width corrections are small; the mean over 8 networks is
    within 15 % of free probability for both weights."""
    q = mf.fixed_point("tanh", 1.05, 2.01e-5)
    for weights in ("orthogonal", "gaussian"):
        spectra = [
            jm.singular_values(
                jm.JacobianConfig("tanh", weights, 1.05, 2.01e-5, 128, 4, s, q), (4,)
            )
            for s in range(8)
        ]
        var = np.mean([np.var(sv[4] ** 2) for sv in spectra])
        theory = jm.spectrum_theory("tanh", weights, 1.05, 2.01e-5, q, 4).var_s2
        assert var == pytest.approx(theory, rel=0.15), (weights, var, theory)


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="unknown weights 'uniform'"):
        jm.JacobianConfig("tanh", "uniform", 1.0, 0.0, 4, 2, 0, 1.0)
    config = jm.JacobianConfig("tanh", "gaussian", 1.0, 0.0, 4, 2, 0, 1.0)
    with pytest.raises(ValueError, match="depths must lie in 1..2"):
        jm.products(config, (3,))


@pytest.mark.filterwarnings("error")  # quiet: any warning fails the run
def test_the_experiment_writes_the_same_bytes_twice(tmp_path):
    for name in ("a", "b"):
        assert jacobian_spectrum.main(["--quick", "--out", str(tmp_path / name)]) == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == [
        "README.md",
        "density.csv",
        "s_max_vs_depth.png",
        "spectral_density.png",
        "spectrum.csv",
        "theory_density.csv",
        "variance_vs_depth.png",
    ]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_the_radial_mode_contracts_at_the_q_maps_slope():
    """Critical tanh (σ_w² = 1.05, σ_b² = 2.01e-5): ξ_q = 20.2, slope 0.9518 per layer, so
    the radial singular value has log10 s² = 2L log10 0.9518: −0.69 at L = 16, −2.75 at 64;
    one orthogonal network's smallest s² sits there."""
    xi_q = mf.depth_scales("tanh", 1.05, 2.01e-5).xi_q
    assert xi_q == pytest.approx(20.2, abs=0.05)
    assert jm.radial_log10_s2("tanh", 1.05, 2.01e-5, 16) == pytest.approx(-0.687, abs=2e-3)
    assert jm.radial_log10_s2("tanh", 1.05, 2.01e-5, 64) == pytest.approx(-2.746, abs=2e-3)
    q = jm.critical_q("tanh", 1.05, 2.01e-5)
    config = jm.JacobianConfig("tanh", "orthogonal", 1.05, 2.01e-5, 128, 32, 0, q)
    s = jm.singular_values(config, (32,))[32]
    predicted = jm.radial_log10_s2("tanh", 1.05, 2.01e-5, 32)
    assert np.log10(s[-1] ** 2) == pytest.approx(predicted, abs=0.25)
    assert np.log10(s[-2] ** 2) > predicted + 0.5  # an outlier: the rest of the bulk is above


def test_relu_loses_rank_where_a_unit_is_dead_in_some_layer():
    config = jm.JacobianConfig("relu", "orthogonal", 2.0, 0.0, 64, 8, 0, 1.0)
    ranks = jm.rank_bound(config, (1, 4, 8))
    J = jm.products(config, (1, 4, 8))
    for depth, bound in ranks.items():
        assert bound == pytest.approx(32, abs=12)
        assert np.linalg.matrix_rank(J[depth]) <= bound, depth
    assert ranks[1] >= ranks[4] >= ranks[8]
