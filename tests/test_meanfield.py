"""Mean-field theory: the issue's named values, Gaussian expectations against closed forms
(both quadrature paths, kinks included), the fixed point, and the trajectory theory."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import ndtr as normal_cdf

from manual_bp.lab import meanfield as mf
from manual_bp.ops.activations import get_activation

# --- named values from the issue ------------------------------------------------------------

NAMED = [
    ("chi1 relu σ_w²=2", lambda: mf.chi1_theory("relu", 2.0), 1.0, 1e-12),
    ("chi1 tanh σ_w²=0.5", lambda: mf.chi1_theory("tanh", 0.5), 0.5, 1e-9),
    ("q* tanh σ_w²=2", lambda: mf.fixed_point("tanh", 2.0), 0.6180, 1e-3),
    ("chi1 linear σ_w²=3", lambda: mf.chi1_theory("linear", 3.0), 3.0, 1e-12),
    ("chi1 leaky_relu σ_w²=2", lambda: mf.chi1_theory("leaky_relu", 2.0), 1.0001, 1e-12),
    ("critical σ_w² tanh", lambda: mf.critical_sigma_w2("tanh"), 1.0, 1e-6),
    ("chi1 gelu σ_w²=2 (q* = 0, gelu'(0)=½)", lambda: mf.chi1_theory("gelu", 2.0), 0.5, 1e-9),
]


@pytest.mark.parametrize("name, value, expected, tol", NAMED, ids=[n for n, *_ in NAMED])
def test_named_values(name, value, expected, tol):
    got = value()
    assert abs(got - expected) <= tol, f"{name}: got {got!r}, expected {expected} ± {tol}"


# --- Gaussian expectations ------------------------------------------------------------------

QS = [1e-6, 1e-2, 0.3, 1.0, 3.9, 4.1, 17.0, 1e3, 1e6, 1e12]


@pytest.mark.parametrize("name, options", [("relu", {}), ("leaky_relu", {"negative_slope": 0.2}),
                                           ("linear", {})])  # fmt: skip
@pytest.mark.parametrize("q", QS)
def test_quadrature_split_at_kinks_matches_closed_forms(name, options, q):
    act = get_activation(name, **options)
    closed = mf.moments(act, q)
    quad = mf._by_quadrature(act)(q)
    for k, what in enumerate(("E[φ²]", "E[φ′²]")):
        assert quad[k] == pytest.approx(closed[k], rel=1e-12), f"{name} {what} at q={q}"


def _elu_moments(q: float, alpha: float) -> tuple[float, float]:
    """E[φ²] = q/2 + α²(e^{2q}Φ(−2√q) − 2e^{q/2}Φ(−√q) + ½), E[φ′²] = ½ + α² e^{2q}Φ(−2√q)."""
    r = math.sqrt(q)
    e2 = math.exp(2 * q) * float(normal_cdf(np.array([-2 * r]))[0])
    e1 = math.exp(q / 2) * float(normal_cdf(np.array([-r]))[0])
    return q / 2 + alpha**2 * (e2 - 2 * e1 + 0.5), 0.5 + alpha**2 * e2


@pytest.mark.parametrize("alpha", [1.0, 0.3])
@pytest.mark.parametrize("q", [1e-4, 0.5, 2.0, 10.0, 60.0])
def test_elu_moments_closed_form(alpha, q):
    got = mf.moments(get_activation("elu", alpha=alpha), q)
    want = _elu_moments(q, alpha)
    for k, what in enumerate(("E[φ²]", "E[φ′²]")):
        assert got[k] == pytest.approx(want[k], rel=1e-11), f"elu(α={alpha}) {what} at q={q}"


@pytest.mark.parametrize("q", QS)
def test_normal_cdf_squared_closed_form(q):
    """E[Φ(√q z)²] = ¼ + arcsin(q/(1+q))/(2π): a smooth integrand, both quadrature paths.

    Φ from math.erfc, so that only the quadrature is tested here."""
    cdf = np.vectorize(lambda x: 0.5 * math.erfc(-x / math.sqrt(2)))
    got = mf.gaussian_expectation(lambda u: cdf(u) ** 2, q)
    want = 0.25 + math.asin(q / (1 + q)) / (2 * math.pi)
    assert got == pytest.approx(want, rel=1e-11), f"q={q}: {got} vs {want}"


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "gelu", "silu", "softplus", "elu"])
@pytest.mark.parametrize("q", [0.01, 0.1, 0.36])
def test_hermite_and_panels_agree(name, q):
    """Where Gauss–Hermite is used (√q ≤ 0.6) it agrees with the panels to round-off."""
    act = get_activation(name)
    z, w = mf._hermite()
    u, v = mf._panel_nodes(math.sqrt(q), ())
    for g in (lambda x: act.f(x) ** 2, lambda x: act.grad(x) ** 2):
        hermite, panels = float(w @ g(math.sqrt(q) * z)), float(v @ g(u))
        if name == "elu":  # a kink at 0: Hermite is not used there, and is visibly off
            assert abs(hermite / panels - 1) > 1e-8, f"elu at q={q}: Hermite exact at a kink?"
            continue
        assert hermite == pytest.approx(panels, rel=1e-13), (
            f"{name} at q={q}: Hermite {hermite}, panels {panels}"
        )


def test_negative_variance_refused():
    with pytest.raises(ValueError, match="non-negative"):
        mf.gaussian_expectation(np.square, -1.0)


# --- the fixed point and the trajectory -----------------------------------------------------


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "gelu", "elu", "silu"])
@pytest.mark.parametrize("sigma_w2, sigma_b2", [(0.7, 0.0), (1.5, 0.05), (3.0, 0.0)])
def test_fixed_point_is_fixed(name, sigma_w2, sigma_b2):
    q = mf.fixed_point(name, sigma_w2, sigma_b2)
    if math.isinf(q):
        assert mf.variance_map(name, 1e200, sigma_w2, sigma_b2) >= 1e200, f"{name}: q* = inf"
        return
    q_next = mf.variance_map(name, q, sigma_w2, sigma_b2)
    assert abs(q_next - q) <= 1e-9 * max(q, 1e-12), f"{name} σ_w²={sigma_w2}: {q} → {q_next}"


@given(st.floats(0.05, 4.0), st.integers(2, 80))
def test_trajectory_theory_closed_for_linear_and_relu(sigma_w2, depth):
    got = mf.delta_ratio_log10_theory("linear", sigma_w2, 0.0, depth)
    assert got == pytest.approx(0.5 * (depth - 2) * math.log10(sigma_w2), abs=1e-10)
    got = mf.delta_ratio_log10_theory("relu", sigma_w2, 0.3, depth)
    assert got == pytest.approx(0.5 * (depth - 2) * math.log10(sigma_w2 / 2), abs=1e-10)


def test_tanh_at_criticality_decays_as_a_power_law():
    """q^(l) ≈ 1/(2l) at σ_w² = 1: the fixed point (q* = 0, χ1 = 1) predicts no loss, the
    trajectory a slow one that grows like log(depth)."""
    q = mf.trajectory("tanh", 1.0, 0.0, 1.0, 1001)
    assert q[1000] * 2000 == pytest.approx(1.0, abs=0.01), f"2l·q^(l) at l=1000: {q[1000] * 2000}"
    ratios = [mf.delta_ratio_log10_theory("tanh", 1.0, 0.0, d) for d in (16, 64, 256)]
    assert mf.chi1_theory("tanh", 1.0) == pytest.approx(1.0, abs=1e-12)
    assert ratios[0] < 0 and ratios[0] > ratios[1] > ratios[2], f"not decaying: {ratios}"
    steps = np.diff(ratios)  # per factor 4 in depth: roughly constant for a power law
    assert steps[1] == pytest.approx(steps[0], rel=0.3), f"not logarithmic in depth: {ratios}"


def test_depth_two_is_zero_and_depth_one_refused():
    assert mf.delta_ratio_log10_theory("sigmoid", 1.0, 0.0, 2) == 0.0
    with pytest.raises(ValueError, match="depth must be at least 2"):
        mf.delta_ratio_log10_theory("sigmoid", 1.0, 0.0, 1)
    with pytest.raises(ValueError, match="non-negative"):
        mf.fixed_point("tanh", -1.0)
