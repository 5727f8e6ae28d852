"""Mean-field theory against values computed independently here: every Gaussian expectation
by scipy.integrate.quad (dblquad for the c-map) over activations written out in this file
with scipy.special, never through manual_bp's own quadrature or activation table.

What is checked: the moments, the variance map's fixed point (exactly 0 where the iterates
fall to 0), χ1, the critical line (σ_b² = 0.05: σ_w²* ≈ 1.761), the δ and weight-gradient
ratio theory, the c-map and the depth scales ξ_q, ξ_c, the moments of D² for the Jacobian
spectrum, and the tanh power law at σ_w² = 1.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, optimize, special

from experiments.theory import batch_gradient
from experiments.theory import meanfield as mf

# --- the activations, written out independently (f, f′, kinks) ---------------------------------

INDEPENDENT = {
    "tanh": (np.tanh, lambda u: 1.0 / np.cosh(u) ** 2, ()),
    "sigmoid": (special.expit, lambda u: special.expit(u) * special.expit(-u), ()),
    "gelu": (
        lambda u: u * special.ndtr(u),
        lambda u: special.ndtr(u) + u * np.exp(-0.5 * u * u) / math.sqrt(2 * math.pi),
        (),
    ),
    "silu": (
        lambda u: u * special.expit(u),
        lambda u: special.expit(u) * (1 + u * special.expit(-u)),
        (),
    ),
    "softplus": (
        lambda u: np.where(u > 20, u, np.logaddexp(0.0, u)),
        lambda u: np.where(u > 20, 1.0, special.expit(u)),
        (20.0,),
    ),
    "elu": (
        lambda u: np.where(u > 0, u, np.expm1(np.minimum(u, 0.0))),
        lambda u: np.where(u > 0, 1.0, np.exp(np.minimum(u, 0.0))),
        (0.0,),
    ),
    "relu": (lambda u: np.maximum(u, 0.0), lambda u: (u > 0) * 1.0, (0.0,)),
    "linear": (lambda u: u, lambda u: np.ones_like(u), ()),
}


def expect(g, q: float, kinks=()) -> float:
    """E[g(√q z)] by quad over |z| ≤ 14 (the mass beyond is < 1e-44), split at the kinks."""
    if q == 0:
        return float(g(np.array(0.0)))
    r = math.sqrt(q)
    cuts = [-14.0, *sorted(k / r for k in kinks if abs(k / r) < 14), 14.0]
    total = 0.0
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        value, _ = integrate.quad(
            lambda z: float(g(np.array(r * z))) * math.exp(-0.5 * z * z),
            a,
            b,
            epsabs=0.0,
            epsrel=1e-13,
            limit=400,
        )
        total += value
    return total / math.sqrt(2 * math.pi)


def moments(name: str, q: float) -> tuple[float, float]:
    f, df, kinks = INDEPENDENT[name]
    return expect(lambda u: f(u) ** 2, q, kinks), expect(lambda u: df(u) ** 2, q, kinks)


def q_map(name: str, q: float, sw2: float, sb2: float) -> float:
    return sw2 * moments(name, q)[0] + sb2


def fixed_point(name: str, sw2: float, sb2: float) -> float:
    """q* by brentq on the quad map, bracketed from the known answer's neighbourhood."""
    return optimize.brentq(lambda q: q_map(name, q, sw2, sb2) - q, 1e-6, 50.0, xtol=1e-15)


def chi1(name: str, sw2: float, sb2: float) -> float:
    return sw2 * moments(name, fixed_point(name, sw2, sb2))[1]


# --- moments --------------------------------------------------------------------------------

QS = [1e-4, 0.01, 0.36, 1.0, 4.0, 16.0, 100.0]


@pytest.mark.parametrize("name", sorted(INDEPENDENT))
@pytest.mark.parametrize("q", QS)
def test_moments_match_independent_quadrature(name, q):
    got = mf.moments(name, q)
    want = moments(name, q)
    for k, what in enumerate(("E[φ²]", "E[φ′²]")):
        assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-300), (
            f"{name} {what} at q={q}: module {got[k]!r}, quad {want[k]!r}"
        )


@pytest.mark.parametrize("name", ["tanh", "relu", "gelu", "elu"])
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("q", [0.0259, 1.0, 9.0])
def test_derivative_moments_for_the_jacobian_match_quad(name, k, q):
    _, df, kinks = INDEPENDENT[name]
    want = expect(lambda u: df(u) ** (2 * k), q, kinks)
    assert mf.derivative_moment(name, q, k) == pytest.approx(want, rel=1e-9), (name, k, q)


@pytest.mark.parametrize("name", ["tanh", "gelu", "elu", "silu"])
@pytest.mark.parametrize("q", [0.05, 0.7, 3.0])
def test_variance_map_slope_is_the_derivative_of_the_map(name, q):
    """Stein's form σ_w² E[z φ φ′]/√q against a central difference of the quad map."""
    h = 1e-5 * q
    want = (q_map(name, q + h, 1.3, 0.0) - q_map(name, q - h, 1.3, 0.0)) / (2 * h)
    assert mf.variance_map_slope(name, q, 1.3) == pytest.approx(want, rel=1e-6)


def test_negative_variance_and_bad_correlation_refused():
    with pytest.raises(ValueError, match="non-negative"):
        mf.gaussian_expectation(np.square, -1.0)
    with pytest.raises(ValueError, match="non-negative"):
        mf.fixed_point("tanh", -1.0)
    with pytest.raises(ValueError, match=r"\[−1, 1\]"):
        mf.pair_moments("tanh", 1.0, 1.5)
    with pytest.raises(ValueError, match=r"\[−1, 1\]"):
        mf.pair_moments("elu", 1.0, -1.5)  # kinked φ go by the nested panels, same check


# --- fixed points, χ1 and the critical line ---------------------------------------------------

NAMED = [
    ("chi1 relu σ_w²=2", lambda: mf.chi1_theory("relu", 2.0), 1.0, 1e-12),
    ("chi1 tanh σ_w²=0.5", lambda: mf.chi1_theory("tanh", 0.5), 0.5, 1e-12),
    ("chi1 linear σ_w²=3", lambda: mf.chi1_theory("linear", 3.0), 3.0, 1e-12),
    ("chi1 gelu σ_w²=2 (q* = 0, gelu′(0) = ½)", lambda: mf.chi1_theory("gelu", 2.0), 0.5, 1e-12),
    ("critical σ_w² tanh, σ_b² = 0", lambda: mf.critical_sigma_w2("tanh"), 1.0, 1e-6),
    (
        "q* tanh 1.05 / 2.01e-5 (Pennington et al.)",
        lambda: mf.fixed_point("tanh", 1.05, 2.01e-5),
        0.02592,
        1e-5,
    ),
]


@pytest.mark.parametrize("name, value, expected, tol", NAMED, ids=[n for n, *_ in NAMED])
def test_named_values(name, value, expected, tol):
    got = value()
    assert abs(got - expected) <= tol, f"{name}: got {got!r}, expected {expected} ± {tol}"


@pytest.mark.parametrize(
    "name, sw2, sb2",
    [
        ("tanh", 2.0, 0.0),
        ("tanh", 1.05, 2.01e-5),
        ("tanh", 1.5, 0.05),
        ("sigmoid", 1.0, 0.0),
        ("gelu", 1.8, 0.05),
        ("silu", 1.5, 0.1),
        ("elu", 0.8, 0.2),
        ("softplus", 0.5, 0.0),
    ],
)
def test_fixed_point_and_chi1_match_quad(name, sw2, sb2):
    q = mf.fixed_point(name, sw2, sb2)
    want = fixed_point(name, sw2, sb2)
    assert q == pytest.approx(want, rel=1e-9), f"{name} σ_w²={sw2} σ_b²={sb2}: {q} vs {want}"
    assert mf.chi(name, q, sw2) == pytest.approx(sw2 * moments(name, want)[1], rel=1e-9)


@pytest.mark.parametrize(
    "name, sw2",
    [
        ("relu", 1.0),
        ("relu", 1.999),
        ("tanh", 0.5),
        ("tanh", 1.0),
        ("gelu", 2.0),
        ("silu", 1.9),
        ("linear", 0.9),
        ("elu", 0.99),
    ],
)
def test_q_star_is_exactly_zero_where_the_iterates_fall_to_zero(name, sw2):
    assert mf.fixed_point(name, sw2, 0.0) == 0.0, f"{name} at σ_w² = {sw2}"
    # and they do fall: the quad map is below the identity from q1 down to tiny q
    for q in (sw2, 1e-3, 1e-8):
        assert q_map(name, q, sw2, 0.0) < q, (name, q)


@pytest.mark.parametrize("name, sw2", [("relu", 2.5), ("linear", 1.1), ("elu", 2.0)])
def test_q_star_is_infinite_where_the_iterates_grow_without_bound(name, sw2):
    assert mf.fixed_point(name, sw2, 0.0) == math.inf
    assert q_map(name, 1e6, sw2, 0.0) > 1e6


def test_the_fixed_point_is_the_one_on_q1s_side():
    """gelu at σ_w² = 3: map(q)/q rises from ¾ at 0 to 3/2 at ∞, so it crosses 1 once, at an
    unstable root q_u. Iterates from above q_u grow without bound, from below fall to 0."""
    q_u = optimize.brentq(lambda q: q_map("gelu", q, 3.0, 0.0) - q, 1e-3, 10.0, xtol=1e-15)
    assert mf.fixed_point("gelu", 3.0, 0.0, q1=1.1 * q_u) == math.inf
    assert mf.fixed_point("gelu", 3.0, 0.0, q1=0.9 * q_u) == 0.0


def test_critical_line_at_sigma_b2_0_05_matches_quad():
    """σ_w²* where χ1 = 1 at σ_b² = 0.05: ≈ 1.761 (Schoenholz et al. 2017, Fig. 1)."""
    want = optimize.brentq(lambda s: chi1("tanh", s, 0.05) - 1.0, 1.5, 2.0, xtol=1e-10)
    got = mf.critical_sigma_w2("tanh", 0.05)
    assert got == pytest.approx(want, abs=1e-8), (got, want)
    assert round(got, 3) == 1.761


def test_critical_line_finds_its_own_bracket_for_sigmoid():
    """sigmoid′(0) = 1/4: χ1 reaches 1 only near σ_w² ≈ 103, far beyond the old fixed
    bracket [0.05, 20]; the default call has to widen it (independent quad: 103.00755)."""

    def chi1_sigmoid(sw2: float) -> float:  # q* ≈ 25 here: beyond fixed_point's bracket
        q = optimize.brentq(lambda q: q_map("sigmoid", q, sw2, 0.0) - q, 1.0, 1e3, xtol=1e-13)
        return sw2 * moments("sigmoid", q)[1]

    want = optimize.brentq(lambda s: chi1_sigmoid(s) - 1.0, 50.0, 200.0, xtol=1e-10)
    got = mf.critical_sigma_w2("sigmoid")
    assert got == pytest.approx(want, rel=1e-8), (got, want)
    assert round(got, 5) == 103.00755
    assert mf.chi1_theory("sigmoid", got) == pytest.approx(1.0, abs=1e-9)


def test_critical_line_refuses_a_bracket_without_a_sign_change():
    with pytest.raises(ValueError, match="does not change sign"):
        mf.critical_sigma_w2("tanh", 0.05, lo=2.0, hi=3.0)


# --- the ratios: δ and the weight gradient --------------------------------------------------


def ratios(name: str, sw2: float, sb2: float, depth: int) -> tuple[float, float]:
    """½ Σ log10 χ_l and the weight-gradient ratio, along the quad trajectory."""
    q, delta, last = sw2 + sb2, 0.0, 1.0
    for _ in range(depth - 2):
        phi2, dphi2 = moments(name, q)
        delta += 0.5 * math.log10(sw2 * dphi2)
        last = phi2
        q = sw2 * phi2 + sb2
    return delta, delta + 0.5 * math.log10(1.0 / last)


@pytest.mark.parametrize(
    "name, sw2, sb2, depth",
    [
        ("tanh", 1.0, 0.0, 12),
        ("tanh", 1 / 3, 1 / 768, 10),
        ("sigmoid", 1.0, 0.0, 9),
        ("gelu", 2.0, 0.0, 11),
        ("elu", 1.0, 0.0, 8),
    ],
)
def test_ratio_theory_matches_quad_trajectory(name, sw2, sb2, depth):
    got = mf.ratio_theory(name, sw2, sb2, depth)
    delta, grad = ratios(name, sw2, sb2, depth)
    assert got.delta_ratio_log10 == pytest.approx(delta, abs=1e-9)
    assert got.grad_ratio_log10 == pytest.approx(grad, abs=1e-9)


@given(st.floats(0.05, 4.0), st.integers(2, 80))
def test_ratio_theory_closed_forms_for_linear_and_relu(sigma_w2, depth):
    """Homogeneous activations with σ_b² = 0: δ falls by χ per layer and the forward signal
    by the same factor, so the weight-gradient ratio is 0 exactly."""
    for name, chi_ in (("linear", sigma_w2), ("relu", sigma_w2 / 2)):
        got = mf.ratio_theory(name, sigma_w2, 0.0, depth)
        assert got.delta_ratio_log10 == pytest.approx(
            0.5 * (depth - 2) * math.log10(chi_), abs=1e-10
        )
        assert got.grad_ratio_log10 == pytest.approx(0.0, abs=1e-9), name


def test_depth_two_is_zero_and_depth_one_refused():
    got = mf.ratio_theory("sigmoid", 1.0, 0.0, 2)
    assert got.delta_ratio_log10 == 0.0 and got.grad_ratio_log10 == 0.0
    with pytest.raises(ValueError, match="depth must be at least 2"):
        mf.ratio_theory("sigmoid", 1.0, 0.0, 1)


def test_tanh_at_criticality_decays_as_a_power_law_with_exponent_one_half():
    """q^(l) ≈ 1/(2l) at σ_w² = 1: χ_l ≈ 1 − 1/l, so ‖δ^(1)‖/‖δ^(L−1)‖ ∝ (L − 2)^(−1/2),
    while the weight-gradient ratio levels off (a^(l) shrinks like √q^(l))."""
    q = mf.trajectory("tanh", 1.0, 0.0, 1.0, 2001)
    assert q[2000] * 2 * 2001 == pytest.approx(1.0, abs=0.01)
    depths = np.array([256, 512, 1024, 2048])
    delta = [mf.ratio_theory("tanh", 1.0, 0.0, int(d)).delta_ratio_log10 for d in depths]
    slope = np.polyfit(np.log10(depths - 2), delta, 1)[0]
    assert slope == pytest.approx(-0.5, abs=0.02), slope
    grads = [mf.ratio_theory("tanh", 1.0, 0.0, int(d)).grad_ratio_log10 for d in depths]
    assert max(grads) - min(grads) < 0.02, grads


# --- the c-map and the depth scales ----------------------------------------------------------


def pair(name: str, q: float, c: float, derivative: bool = False) -> float:
    f, df, _ = INDEPENDENT[name]
    g = df if derivative else f
    s = math.sqrt(1 - c * c)
    r = math.sqrt(q)

    def integrand(z2, z1):
        return float(g(r * z1) * g(r * (c * z1 + s * z2))) * math.exp(-0.5 * (z1 * z1 + z2 * z2))

    value, _ = integrate.dblquad(integrand, -12, 12, -12, 12, epsabs=1e-13, epsrel=1e-11)
    return value / (2 * math.pi)


@pytest.mark.parametrize(
    "name, q, c",
    [
        ("tanh", 0.57, 0.3),
        ("tanh", 1.4, 0.95),
        ("relu", 2.0, -0.4),
        ("relu", 1.0, 0.8),
        ("gelu", 0.8, 0.5),
    ],
)
def test_pair_moments_match_dblquad(name, q, c):
    got = mf.pair_moments(name, q, c)
    assert got[0] == pytest.approx(pair(name, q, c), rel=1e-8, abs=1e-12)
    if name == "relu":  # a product of steps: Sheppard's orthant probability ¼ + arcsin(c)/(2π)
        want = 0.25 + math.asin(c) / (2 * math.pi)
    else:
        want = pair(name, q, c, derivative=True)
    assert got[1] == pytest.approx(want, rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("sw2", [1.0, 1.5])
def test_ordered_phase_xi_c_is_minus_one_over_ln_chi1(sw2):
    d = mf.depth_scales("tanh", sw2, 0.05)
    assert d.c_star == 1.0
    assert d.xi_c == pytest.approx(-1.0 / math.log(chi1("tanh", sw2, 0.05)), rel=1e-8)


@pytest.mark.parametrize("sw2", [2.5, 4.0])
def test_chaotic_phase_c_star_is_a_fixed_point_of_the_independent_c_map(sw2):
    d = mf.depth_scales("tanh", sw2, 0.05)
    q = fixed_point("tanh", sw2, 0.05)
    c_next = (sw2 * pair("tanh", q, d.c_star) + 0.05) / q
    assert d.c_star < 1 and c_next == pytest.approx(d.c_star, abs=1e-8)
    slope = sw2 * pair("tanh", q, d.c_star, derivative=True)
    assert d.xi_c == pytest.approx(-1.0 / math.log(slope), rel=1e-6)


@pytest.mark.parametrize("sw2", [1.2, 3.0])
def test_xi_c_is_the_decay_length_of_the_iterated_c_map(sw2):
    """|c^(l) − c*| ∝ e^{−l/ξ_c}: the rate fitted over iterations of the c-map."""
    d = mf.depth_scales("tanh", sw2, 0.05)
    c, gaps = 0.2, []
    for _ in range(60):
        c = mf.correlation_map("tanh", c, d.q_star, sw2, 0.05)
        gaps.append(abs(c - d.c_star))
    gaps = np.array(gaps)
    keep = (gaps < 1e-3) & (gaps > 1e-11)
    assert keep.sum() >= 5, gaps
    rate = -np.polyfit(np.nonzero(keep)[0], np.log(gaps[keep]), 1)[0]
    assert 1.0 / rate == pytest.approx(d.xi_c, rel=0.02), (1.0 / rate, d.xi_c)


def test_xi_q_is_the_decay_length_of_the_iterated_variance_map():
    d = mf.depth_scales("tanh", 2.0, 0.05)
    q = mf.trajectory("tanh", 2.0, 0.05, 3.0, 30)
    gaps = np.abs(q - d.q_star)
    keep = (gaps < 1e-3) & (gaps > 1e-12)
    rate = -np.polyfit(np.nonzero(keep)[0], np.log(gaps[keep]), 1)[0]
    assert 1.0 / rate == pytest.approx(d.xi_q, rel=0.02)


def test_xi_c_diverges_at_the_critical_line():
    critical = mf.critical_sigma_w2("tanh", 0.05)
    near = [mf.depth_scales("tanh", critical + e, 0.05).xi_c for e in (-0.05, -0.01, 0.01, 0.05)]
    assert near[1] > 3 * near[0] and near[2] > 3 * near[3], near
    assert min(near) > 50, near


# --- pairs with kinks, and the batch theory of the weight gradient ----------------------------


@pytest.mark.parametrize("name", ["elu", "leaky_relu", "relu"])
@pytest.mark.parametrize("c", [-0.5, 0.0, 0.5, 0.9, 1.0])
def test_pair_moments_of_kinked_activations(name, c):
    """Against independent 2-D quadrature (scipy dblquad, split at the kink); at c = 0 they
    factor into 1-D moments, at c = 1 they are E[φ²], E[φ′²]."""
    act = mf.as_activation(name)
    q = 1.3
    got = mf.pair_moments(act, q, c)
    s = math.sqrt(q * (1 - c * c))

    def expect(g):
        def inner(u1):
            m = c * u1

            def f(y):
                return g(u1, m + y) * math.exp(-0.5 * (y / s) ** 2) / (s * math.sqrt(2 * math.pi))

            lo, hi = -12 * s, 12 * s
            cut = min(max(-m, lo), hi)
            return (
                integrate.quad(f, lo, cut, epsabs=0, epsrel=1e-11)[0]
                + integrate.quad(f, cut, hi, epsabs=0, epsrel=1e-11)[0]
            )

        dens = lambda u: math.exp(-0.5 * u * u / q) / math.sqrt(2 * math.pi * q)  # noqa: E731
        r = 12 * math.sqrt(q)
        return sum(
            integrate.quad(lambda u: inner(u) * dens(u), a, b, epsabs=0, epsrel=1e-10)[0]
            for a, b in ((-r, 0.0), (0.0, r))
        )

    if c == 1.0:  # one input twice: the 1-D moments
        want = mf.moments(act, q)
    else:
        f = lambda v: float(act.f(np.array([v]))[0])  # noqa: E731
        d = lambda v: float(act.grad(np.array([v]))[0])  # noqa: E731
        want = (expect(lambda a, b: f(a) * f(b)), expect(lambda a, b: d(a) * d(b)))
    for k, what in enumerate(("E[φφ]", "E[φ′φ′]")):
        assert got[k] == pytest.approx(want[k], rel=1e-7, abs=1e-12), (name, c, what, got, want)


def test_the_batch_theory_without_cross_terms_is_the_single_example_theory():
    """An odd φ with σ_b² = 0 keeps independent inputs uncorrelated (c stays 0), so the cross
    terms vanish at the input side and the batch theory equals the single-example one only
    where the output errors are uncorrelated too: a batch of one."""
    for act, sw2, depth in (("tanh", 1.0, 16), ("sigmoid", 1.0, 8), ("relu", 2.0, 32)):
        single = mf.grad_ratio_log10_theory(act, sw2, 0.0, depth)
        assert batch_gradient.batch_grad_ratio_log10_theory(
            act, sw2, 0.0, depth, 1
        ) == pytest.approx(single, abs=1e-12), act


def test_the_batch_theory_predicts_relu_kaiming():
    """relu + kaiming_normal: the single-example theory says 0 decades, the measured batch
    ratio (batch 128, width 256, seeds 0–2) is −0.44…−0.57 at depths 8–32; the correlation
    map's cross terms at the last hidden layer give −0.51…−0.64."""
    want = {8: -0.51, 16: -0.60, 32: -0.64}
    for depth, value in want.items():
        assert mf.grad_ratio_log10_theory("relu", 2.0, 0.0, depth) == pytest.approx(0.0, abs=1e-12)
        got = batch_gradient.batch_grad_ratio_log10_theory("relu", 2.0, 0.0, depth, 128)
        assert got == pytest.approx(value, abs=0.01), (depth, got)


def test_the_batch_theory_reads_the_output_layers_own_sigma_w2():
    """The logits' q is σ_w,out² E[φ²] + σ_b,out², with the (K, N) output layer's own
    variance: xavier_normal's 2/(fan_in + fan_out) gives σ_w,out² = 2N/(N + K), about 2 where
    the hidden layers have 1. For sigmoid (c_out = 1: every example's logits alike) that
    doubles the outputs' common error, the cross terms at W^(L−1) grow, and the ratio falls
    from −38.955 to −39.07 at depth 64 (measured at width 256, 6 seeds: −39.10 ± 0.03; at
    depth 4, −1.335 to −1.449, measured −1.39 ± 0.04). Without an output variance the theory
    is the hidden one's; a linear net (c_out = 0, no cross terms) does not see it."""
    for act, sw2, depth in (("sigmoid", 1.0, 64), ("relu", 2.0, 16), ("tanh", 1.0, 8)):
        same = batch_gradient.batch_grad_ratio_log10_theory(
            act, sw2, 0.0, depth, 128, sigma_w2_out=sw2, sigma_b2_out=0.0
        )
        assert same == batch_gradient.batch_grad_ratio_log10_theory(act, sw2, 0.0, depth, 128)
    out = 2 * 256 / 266  # xavier_normal's (10, 256) output layer
    for depth, old, new in ((64, -38.955, -39.070), (4, -1.335, -1.449)):
        got = batch_gradient.batch_grad_ratio_log10_theory(
            "sigmoid", 1.0, 0.0, depth, 128, sigma_w2_out=out
        )
        hidden = batch_gradient.batch_grad_ratio_log10_theory("sigmoid", 1.0, 0.0, depth, 128)
        assert hidden == pytest.approx(old, abs=2e-3) and got == pytest.approx(new, abs=2e-3)
    linear = [
        batch_gradient.batch_grad_ratio_log10_theory("linear", 1.0, 0.0, 16, 128, sigma_w2_out=s)
        for s in (1.0, 2.0)
    ]
    assert linear[0] == pytest.approx(linear[1], abs=1e-12)
    draws = batch_gradient.batch_grad_ratio_log10_draws(
        "sigmoid", 1.0, 0.0, 64, 128, sigma_w2_out=out, draws=50
    )
    assert np.mean(draws) == pytest.approx(-39.07, abs=0.05)  # the draws read it too
    with pytest.raises(ValueError):
        batch_gradient.batch_grad_ratio_log10_theory("relu", 2.0, 0.0, 8, 4, sigma_w2_out=-1.0)


def test_the_output_error_gram():
    """Uniform outputs (q = 0): E‖p − y‖² = 1 − 1/K, and the two examples' errors are
    uncorrelated; identical confident outputs (q large, c = 1): ⟨p, p′⟩ → 1."""
    d, o = batch_gradient.output_error_gram(0.0, 0.0, 10)
    assert d == pytest.approx(0.9, abs=1e-12) and o == pytest.approx(0.0, abs=1e-12)
    d, o = batch_gradient.output_error_gram(1e8, 1.0, 10)
    assert o == pytest.approx(0.9, abs=1e-3) and d == pytest.approx(1.8, abs=1e-3)
