"""The free-probability density of JJᵀ (experiments.theory.free_probability): the closed cases
(Marchenko–Pastur, the Fuss–Catalan moments of a Gaussian product), and the density's own
mass, mean and normalised variance against the moments the lab computes in closed form
(experiments.measure.jacobian.spectrum_theory)."""

import time

import numpy as np
import pytest

from experiments.measure import jacobian as jm
from experiments.theory import free_probability as fp


def test_one_gaussian_layer_is_marchenko_pastur():
    x = np.array([0.05, 0.5, 1.0, 2.0, 3.0, 3.9])
    got = fp.jacobian_spectrum("linear", "gaussian", 1.0, 1.0, 1).density(x)
    np.testing.assert_allclose(got, np.sqrt(4 / x - 1) / (2 * np.pi), rtol=1e-3)


@pytest.mark.parametrize("depth", [2, 3])
def test_a_gaussian_product_has_the_fuss_catalan_moments(depth):
    """Products of L square Gaussian matrices: E[λ] = 1, E[λ²] = L + 1 (Fuss–Catalan), the
    upper edge (L + 1)^(L+1)/L^L."""
    s = fp.jacobian_spectrum("linear", "gaussian", 1.0, 1.0, depth)
    edge = (depth + 1) ** (depth + 1) / depth**depth
    mass, mean, var = s.moments(np.linspace(-16.0, np.log10(edge), 4000))
    assert mass == pytest.approx(1.0, abs=2e-3)
    assert mean == pytest.approx(1.0, abs=2e-3) and var == pytest.approx(depth, rel=5e-3)
    beyond = s.density(np.array([1.05 * edge]))
    assert beyond[0] < 1e-6


#: (activation, weights, depth, log10 x grid covering the support, mass tolerance, variance
#: tolerance): shallow nets integrate to 1 on the grid; at depth 64 mass sits below 1e-12 (the
#: density of a product of L factors goes like x^(−L/(L+1)) at 0), which carries no weight in
#: the moments. tanh's d = sech⁴(√q z) has a density ∝ (1 − d)^(−1/2) at d = 1, and the narrow
#: depth-4 orthogonal spectrum keeps a steep upper edge that the trapezoid under-counts by
#: 2e-4 of mass: 1.3% of a variance of 0.017.
MOMENT_CASES = [
    ("tanh", "orthogonal", 4, [(-16.0, -0.6, 800), (-0.6, 0.4, 3000)], 1e-3, 2e-2),
    ("tanh", "orthogonal", 64, [(-16.0, -3.0, 800), (-3.0, 1.0, 3000)], 1e-3, 1e-3),
    ("tanh", "gaussian", 4, [(-16.0, 1.5, 3000)], 5e-3, 1e-2),
    ("tanh", "gaussian", 64, [(-12.0, 3.0, 3000)], None, 1e-3),
    ("relu", "orthogonal", 4, [(-24.0, -2.0, 1000), (-2.0, 1.5, 3000)], 1e-3, 1e-2),
    ("relu", "gaussian", 4, [(-24.0, -2.0, 1000), (-2.0, 1.5, 3000)], 1e-3, 1e-2),
    ("relu", "gaussian", 64, [(-12.0, 3.0, 3000)], None, 1e-3),
]


@pytest.mark.parametrize(
    ("activation", "weights", "depth", "grid", "mass_tol", "var_tol"), MOMENT_CASES
)
def test_the_density_has_the_closed_form_moments(
    activation, weights, depth, grid, mass_tol, var_tol
):
    """The density integrated over its support (ε = 1e-9 leaves no tail) has the mean
    (σ_w² μ1)^L and the normalised variance L (μ2/μ1² − 1 − s1) of the closed forms, and
    mass 1 with relu's atom at 0 (½: the dead units)."""
    sigma_w2, sigma_b2 = {a: (w, b) for a, w, b in jm.CRITICAL}[activation]
    q = jm.critical_q(activation, sigma_w2, sigma_b2)
    s = fp.jacobian_spectrum(activation, weights, sigma_w2, q, depth)
    theory = jm.spectrum_theory(activation, weights, sigma_w2, sigma_b2, q, depth)
    mass, mean, var = s.moments(np.unique(np.concatenate([np.linspace(*g) for g in grid])))
    assert mean == pytest.approx(theory.mean_s2, rel=2e-3), "mean"
    assert var == pytest.approx(theory.normalised_var, rel=var_tol), "normalised variance"
    if mass_tol is not None:
        assert mass == pytest.approx(1.0, abs=mass_tol), "mass"


def test_relu_keeps_the_labs_mean_and_half_its_mass_at_zero():
    for weights in ("orthogonal", "gaussian"):
        s = fp.jacobian_spectrum("relu", weights, 2.0, 1.0, 8)
        theory = jm.spectrum_theory("relu", weights, 2.0, 0.0, 1.0, 8)
        assert s.mean() == pytest.approx(theory.mean_s2, rel=1e-12)
        assert s.normalised_variance() == pytest.approx(theory.normalised_var, rel=1e-12)
        assert s.zero_mass == 0.5


def test_a_deep_tanh_density_takes_about_a_second():
    """The report draws twelve densities: each must cost about a second, not a minute."""
    s = fp.jacobian_spectrum("tanh", "orthogonal", 1.05, 0.02592, 64)
    start = time.process_time()
    s.density(10.0 ** np.linspace(-8.0, 3.0, 221))
    assert time.process_time() - start < 10.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown weights 'uniform'"):
        fp.jacobian_spectrum("tanh", "uniform", 1.0, 0.1, 2)
    with pytest.raises(ValueError, match="positive numbers"):
        fp.jacobian_spectrum("relu", "gaussian", 2.0, 1.0, 2).density(np.array([0.0, 1.0]))


def test_a_coarse_path_stays_on_the_physical_root():
    """On the report's grid (0.02 decades) the narrow depth-4 orthogonal tanh spectrum kept
    its mass: a looser jump guard followed a second root with Im G ≤ 0 and half the mass."""
    q = jm.critical_q("tanh", 1.05, 2.01e-5)
    s = fp.jacobian_spectrum("tanh", "orthogonal", 1.05, q, 4)
    lx = np.linspace(-8.0, 3.0, 551)
    r = fp.log10_density(s, lx)
    assert np.trapezoid(r, lx) == pytest.approx(1.0, abs=0.05)
    assert lx[np.argmax(r)] == pytest.approx(0.06, abs=0.03)
