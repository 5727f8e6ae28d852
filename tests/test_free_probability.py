"""The free-probability density of JJᵀ (experiments.theory.free_probability): the closed cases
(Marchenko–Pastur, the Fuss–Catalan moments of a Gaussian product), and mass, mean and
variance against the moments the lab computes (experiments.measure.jacobian.spectrum_theory)."""

import numpy as np
import pytest

from experiments.measure import jacobian as jm
from experiments.theory import free_probability as fp


def _moments(spectrum: fp.Spectrum, lo: float, hi: float, n: int = 2500):
    """(mass with the zero atom, mean, variance) of the density on log10 x ∈ [lo, hi]."""
    lx = np.linspace(lo, hi, n)
    x, r = 10.0**lx, fp.log10_density(spectrum, lx)
    mass, m1, m2 = (np.trapezoid(r * x**k, lx) for k in range(3))
    return mass + spectrum.zero_mass, m1, m2 - m1**2


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
    mass, mean, var = _moments(s, -16.0, np.log10(edge), n=4000)
    assert mass == pytest.approx(1.0, abs=2e-3)
    assert mean == pytest.approx(1.0, abs=2e-3) and var == pytest.approx(depth, rel=5e-3)
    beyond = s.density(np.array([1.05 * edge]))
    assert beyond[0] < 1e-3


def test_relu_keeps_the_labs_mean_and_half_its_mass_at_zero():
    """The moments the closed forms give (the density's own moments wait for a tail-free
    integration: the ε-smoothing adds a Lorentzian tail that inflates the variance)."""
    for weights in ("orthogonal", "gaussian"):
        s = fp.jacobian_spectrum("relu", weights, 2.0, 1.0, 8)
        theory = jm.spectrum_theory("relu", weights, 2.0, 0.0, 1.0, 8)
        assert s.mean() == pytest.approx(theory.mean_s2, rel=1e-12)
        assert s.normalised_variance() == pytest.approx(theory.normalised_var, rel=1e-12)
        assert s.zero_mass == 0.5


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown weights 'uniform'"):
        fp.jacobian_spectrum("tanh", "uniform", 1.0, 0.1, 2)
    with pytest.raises(ValueError, match="positive numbers"):
        fp.jacobian_spectrum("relu", "gaussian", 2.0, 1.0, 2).density(np.array([0.0, 1.0]))
