"""Mean-field theory of signal propagation in a wide random MLP (Poole et al. 2016,
"Exponential expressivity in deep neural networks through transient chaos"; Schoenholz et
al. 2017, "Deep information propagation"): what the δ recursion does on average.

With W_ij ~ (0, σ_w²/fan_in), b_i ~ (0, σ_b²) and width → ∞, each pre-activation is
Gaussian with variance q^(l), and one layer maps

    q^(l+1) = σ_w² E[φ(√q^(l) z)²] + σ_b²,           z ~ N(0, 1)       (variance map)
    χ_l     = σ_w² E[φ′(√q^(l) z)²]                                    (‖δ‖² per layer)

because δ^(l) = φ′(z^(l)) ⊙ (W^(l+1))ᵀ δ^(l+1) gives E‖δ^(l)‖² = χ_l E‖δ^(l+1)‖². So

    log10(‖δ^(1)‖ / ‖δ^(L−1)‖) ≈ ½ Σ_{l=1}^{L−2} log10 χ_l,    q^(1) = σ_w² Var(x) + σ_b².

The weight gradient SGD uses is ∂L/∂W^(l) = Σ_n δ_n^(l) a_n^(l−1)ᵀ. With the examples' δ
uncorrelated (random labels), E‖∂L/∂W^(l)‖² = Σ_n E‖δ_n^(l)‖² E‖a_n^(l−1)‖², and the second
moment of a^(l−1) per unit is E[φ(√q^(l−1) z)²] = (q^(l) − σ_b²)/σ_w² (Var(x) for l = 1):

    log10(‖∂L/∂W^(1)‖ / ‖∂L/∂W^(L−1)‖) ≈ ½ Σ log10 χ_l + ½ log10(Var(x) / E[φ(√q^(L−2) z)²]).

The forward signal shrinks with δ wherever q^(l) falls to 0 (relu and tanh below
criticality); the weight gradient then stays flat although δ vanishes.

At the fixed point q* = map(q*) one layer multiplies ‖δ‖² by χ1 = χ(q*): χ1 < 1 is the
ordered phase, χ1 > 1 the chaotic one. Two inputs with correlation c at q* follow the
correlation map (c-map)

    c^(l+1) = (σ_w² E[φ(u1) φ(u2)] + σ_b²) / q*,   u1 = √q* z1,  u2 = √q* (c z1 + √(1−c²) z2),

whose fixed point c* (1 in the ordered phase) is approached as e^{−l/ξ_c}, with
ξ_c = −1/ln χ_c(c*), χ_c = σ_w² E[φ′(u1) φ′(u2)] (= χ1 at c* = 1); q^(l) approaches q* as
e^{−l/ξ_q}, ξ_q = −1/ln(d map/dq at q*). ξ_c diverges on the critical line χ1 = 1.
Dropout with keep probability ρ puts 1/ρ on the q-map (the diagonal) but not on the c-map's
numerator: c = 1 stops being a fixed point and ξ_c stays finite (`depth_scales(keep=ρ)`).

The Gaussian quadrature lives in experiments.theory.quadrature, the batch's weight gradient
(what the correlation map adds to the single-example theory) in theory.batch_gradient.

Gaussian expectations E[g(√q z)]:
- closed forms where they exist: linear, relu, leaky_relu (both moments for every q);
- smooth activations with √q ≤ 0.6: Gauss–Hermite with 96 nodes. It converges slowly
  for tanh-like integrands, whose poles at z = ±iπ/(2√q) close in on the real axis as q
  grows (relative error 1e-9 at q = 1, 4e-4 at q = 16 against the panels below);
- everything else (kinks: elu, hardtanh, relu6, softplus's threshold; saturating units at
  large q, whose φ′ is a spike of width ~1 under a Gaussian of width √q): the line split at
  every kink, at ±2ᵏ (the activation's scale) and at ±√q·2⁻ʲ (the Gaussian's) in u = √q z,
  each panel by 24-node Gauss–Legendre, over |z| ≤ 12 (the mass beyond is < 10⁻³²).
The c-map's double integral uses a 2-d Gauss–Hermite product in (z1, z2) for smooth
activations (160² nodes) and the arc-cosine kernel (Cho & Saul 2009) for relu.

Roots (fixed points, the critical σ_w²) are found by scipy.optimize.brentq.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from experiments.theory.quadrature import (
    HERMITE_2D_NODES,
    Q_MAX,
    gauss_panels,
    gaussian_expectation,
    hermite,
    nodes,
)
from manual_bp.ops.activations import Activation, get_activation

Array = np.ndarray

#: brentq's relative tolerance: 4 ulp, the smallest it accepts.
_RTOL = 4 * np.finfo(float).eps


def _brentq(f: Callable[[float], float], lo: float, hi: float) -> float:
    return float(brentq(f, lo, hi, xtol=1e-300, rtol=_RTOL, maxiter=400))


# --- the table: per activation, E[φ(√q z)²] and E[φ′(√q z)²] ---------------------------


Moments = Callable[[float], tuple[float, float]]


def _closed_form(phi2: Callable[[float], float], dphi2: Callable[[float], float]):
    return lambda act: lambda q: (phi2(q), dphi2(q))


def _leaky(act: Activation) -> Moments:
    s2 = act.options["negative_slope"] ** 2
    return lambda q: (0.5 * (1.0 + s2) * q, 0.5 * (1.0 + s2))


def kinks(act: Activation) -> tuple[float, ...]:
    """The points where φ′ jumps, for the quadrature's panels."""
    table = {
        "relu": (0.0,),
        "leaky_relu": (0.0,),
        "elu": (0.0,),
        "hardtanh": (act.options.get("min_val", -1.0), act.options.get("max_val", 1.0)),
        "relu6": (0.0, 6.0),
    }
    if act.name == "softplus":
        return (act.options["threshold"] / act.options["beta"],)
    return table.get(act.name, ())


def _by_quadrature(act: Activation) -> Moments:
    where = kinks(act)

    def both(q: float) -> tuple[float, float]:
        u, w = nodes(q, where)
        return float(w @ act.f(u) ** 2), float(w @ act.grad(u) ** 2)

    return both


#: name → q ↦ (E[φ(√q z)²], E[φ′(√q z)²]); activations not listed go by quadrature.
CLOSED_FORMS: dict[str, Callable[[Activation], Moments]] = {
    "identity": _closed_form(lambda q: q, lambda q: 1.0),
    "linear": _closed_form(lambda q: q, lambda q: 1.0),
    "relu": _closed_form(lambda q: 0.5 * q, lambda q: 0.5),
    "leaky_relu": _leaky,
}


def as_activation(activation: str | Activation) -> Activation:
    return activation if isinstance(activation, Activation) else get_activation(activation)


def moments(activation: str | Activation, q: float) -> tuple[float, float]:
    """(E[φ(√q z)²], E[φ′(√q z)²]) for z ~ N(0, 1)."""
    act = as_activation(activation)
    phi2, dphi2 = CLOSED_FORMS.get(act.name, _by_quadrature)(act)(min(float(q), Q_MAX))
    return float(phi2), float(dphi2)


def derivative_moment(activation: str | Activation, q: float, k: int) -> float:
    """μ_k = E[φ′(√q z)^{2k}], the moments of D² = diag(φ′)² (Pennington et al. 2017)."""
    act = as_activation(activation)
    return gaussian_expectation(lambda u: act.grad(u) ** (2 * k), min(float(q), Q_MAX), kinks(act))


def variance_map(activation: str | Activation, q: float, sigma_w2: float, sigma_b2: float) -> float:
    """q^(l+1) = σ_w² E[φ(√q z)²] + σ_b²."""
    return sigma_w2 * moments(activation, q)[0] + sigma_b2


def variance_map_slope(activation: str | Activation, q: float, sigma_w2: float) -> float:
    """d map/dq = σ_w² E[z φ(√q z) φ′(√q z)]/√q  (Stein; = χ + σ_w² E[φ φ″]); at q = 0 its
    limit σ_w² φ′(0)²."""
    act = as_activation(activation)
    q = min(float(q), Q_MAX)
    if q == 0.0:
        return sigma_w2 * float(act.grad(np.zeros(1))[0]) ** 2
    return sigma_w2 * gaussian_expectation(lambda u: u * act.f(u) * act.grad(u), q, kinks(act)) / q


def chi(activation: str | Activation, q: float, sigma_w2: float) -> float:
    """χ = σ_w² E[φ′(√q z)²], the factor on E‖δ‖² of one layer at pre-activation variance q."""
    return sigma_w2 * moments(activation, q)[1]


def trajectory(
    activation: str | Activation, sigma_w2: float, sigma_b2: float, q1: float, n: int
) -> Array:
    """q^(1), …, q^(n) from q^(1) = q1 by the variance map (capped at Q_MAX)."""
    act = as_activation(activation)
    q = np.empty(n)
    if n:
        q[0] = min(q1, Q_MAX)
    for l in range(1, n):
        q[l] = min(variance_map(act, q[l - 1], sigma_w2, sigma_b2), Q_MAX)
    return q


def _check(sigma_w2: float, sigma_b2: float) -> None:
    if not (sigma_w2 >= 0 and sigma_b2 >= 0):
        raise ValueError(f"σ_w² and σ_b² must be non-negative, got {sigma_w2} and {sigma_b2}")


# --- the variance fixed point -----------------------------------------------------------


def fixed_point(
    activation: str | Activation,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    q1: float | None = None,
) -> float:
    """q* = lim q^(l) from q1 (default σ_w² + σ_b²): exactly 0 where the iterates fall to 0,
    ∞ where they grow without bound.

    The map is increasing in q, so the iterates are monotone: they rise to the first root
    of gap(q) = map(q) − q above q1, or fall to the largest one below. Roots by brentq.
    Falling with gap(0) = 0 (σ_b² = 0, φ(0) = 0), there is a root in (0, q1) exactly when
    the map's slope at 0, lim map(q)/q, exceeds 1: for every activation here map(q)/q is
    monotone in q (decreasing for tanh and elu, increasing for gelu and silu, constant for
    relu), so it crosses 1 below q1 only from above. Otherwise q* = 0, whether the approach
    is geometric (relu below σ_w² = 2) or a power law (tanh at σ_w² = 1: q^(l) ≈ 1/(2l)).
    """
    _check(sigma_w2, sigma_b2)
    act = as_activation(activation)
    q = sigma_w2 + sigma_b2 if q1 is None else float(q1)
    if not q >= 0:
        raise ValueError(f"q1 must be non-negative, got {q1}")
    q = min(q, Q_MAX)

    def gap(x: float) -> float:
        return variance_map(act, x, sigma_w2, sigma_b2) - x

    g = gap(q)
    if g == 0.0:
        return q
    if g > 0:  # rising: find a point above with gap < 0
        lo, hi = q, max(16.0 * q, 1.0)
        while gap(hi) > 0:
            if hi >= Q_MAX:
                return math.inf
            lo, hi = hi, min(hi * 16.0 if hi < 1e10 else hi * hi, Q_MAX)
        return _brentq(gap, lo, hi)
    # falling
    if gap(0.0) > 0:
        return _brentq(gap, 0.0, q)
    if variance_map_slope(act, 0.0, sigma_w2) <= 1.0 or q == 0.0:
        return 0.0
    eps = q * 1e-12  # the slope at 0 exceeds 1: gap(eps) > 0
    return _brentq(gap, eps, q) if gap(eps) > 0 else 0.0


def chi1_theory(
    activation: str | Activation, sigma_w2: float, sigma_b2: float = 0.0, q1: float | None = None
) -> float:
    """χ1 = σ_w² E[φ′(√q* z)²] at the fixed point reached from q1."""
    q_star = fixed_point(activation, sigma_w2, sigma_b2, q1)
    return chi(activation, min(q_star, Q_MAX), sigma_w2)


# --- depth-wise theory of δ and of ∂L/∂W ---------------------------------------------------


@dataclass(frozen=True)
class RatioTheory:
    """The mean-field predictions of one configuration's ratios, in decades."""

    delta_ratio_log10: float  # ½ Σ_{l=1}^{L−2} log10 χ_l
    grad_ratio_log10: float  # the same + ½ log10(Var(x) / E[φ(√q^(L−2) z)²])


def _log10(x: float) -> float:
    if x > 0:
        return math.log10(x)
    return -math.inf if x == 0 else math.nan


def ratio_theory(
    activation: str | Activation,
    sigma_w2: float,
    sigma_b2: float,
    depth: int,
    var_x: float = 1.0,
) -> RatioTheory:
    """δ and ∂L/∂W ratios, first over last hidden layer, along the variance trajectory
    q^(1) = σ_w² Var(x) + σ_b², q^(l+1) = map(q^(l)).

    ∂L/∂W^(1) sees the input (second moment Var(x)), ∂L/∂W^(L−1) the activation
    a^(L−2) = φ(h^(L−2)) (second moment E[φ(√q^(L−2) z)²]); at depth 2 both are W^(1).
    """
    _check(sigma_w2, sigma_b2)
    if depth < 2:
        raise ValueError(f"depth must be at least 2 (one hidden layer), got {depth}")
    act = as_activation(activation)
    q, delta, last_moment = min(sigma_w2 * var_x + sigma_b2, Q_MAX), 0.0, var_x
    for _ in range(depth - 2):
        phi2, dphi2 = moments(act, q)
        delta += 0.5 * _log10(sigma_w2 * dphi2)
        last_moment = phi2
        q = min(sigma_w2 * phi2 + sigma_b2, Q_MAX)
    forward = 0.5 * (_log10(var_x) - _log10(last_moment))
    return RatioTheory(delta, delta + forward)  # ∞ − ∞ is NaN: nothing to predict


def delta_ratio_log10_theory(
    activation: str | Activation,
    sigma_w2: float,
    sigma_b2: float,
    depth: int,
    var_x: float = 1.0,
) -> float:
    """½ Σ_{l=1}^{depth−2} log10 χ_l along q^(1) = σ_w² Var(x) + σ_b², q^(l+1) = map(q^(l))."""
    return ratio_theory(activation, sigma_w2, sigma_b2, depth, var_x).delta_ratio_log10


def grad_ratio_log10_theory(
    activation: str | Activation,
    sigma_w2: float,
    sigma_b2: float,
    depth: int,
    var_x: float = 1.0,
) -> float:
    """log10(‖∂L/∂W^(1)‖/‖∂L/∂W^(depth−1)‖) predicted: δ's ratio plus the forward moments'."""
    return ratio_theory(activation, sigma_w2, sigma_b2, depth, var_x).grad_ratio_log10


def critical_sigma_w2(
    activation: str | Activation,
    sigma_b2: float = 0.0,
    lo: float = 0.05,
    hi: float | None = None,
) -> float:
    """The σ_w² where χ1 = 1 (order to chaos), by brentq on log χ1 over [lo, hi].

    Without `hi` the bracket is found: hi starts at 20 and doubles until χ1 > 1 (sigmoid's
    φ′(0) = 1/4 puts its critical σ_w² near 103, beyond any fixed small bracket), up to 2^20.
    """
    act = as_activation(activation)

    def log_chi1(s: float) -> float:
        return math.log(chi1_theory(act, s, sigma_b2))

    top = 20.0 * 2.0**16 if hi is None else hi
    end = 20.0 if hi is None else hi
    f_lo, f_hi = log_chi1(lo), log_chi1(end)
    while hi is None and f_hi <= 0 and end < top:
        lo, f_lo = end, f_hi
        end *= 2.0
        f_hi = log_chi1(end)
    if not f_lo < 0 < f_hi:
        raise ValueError(
            f"χ1 − 1 does not change sign on σ_w² ∈ [{lo}, {end}] for {act!r} "
            f"(log χ1 = {f_lo:.3g}, {f_hi:.3g})"
        )
    return _brentq(log_chi1, lo, end)


# --- two inputs: the correlation map and the depth scales ---------------------------------


def _pair_relu(q: float, c: float) -> tuple[float, float]:
    """Arc-cosine kernel: E[relu(u1) relu(u2)] = q (√(1−c²) + (π − θ) c)/(2π), θ = arccos c,
    E[relu′(u1) relu′(u2)] = (π − θ)/(2π)."""
    theta = math.acos(min(max(c, -1.0), 1.0))
    return q * (math.sqrt(max(1.0 - c * c, 0.0)) + (math.pi - theta) * c) / (2 * math.pi), (
        math.pi - theta
    ) / (2 * math.pi)


def _pair_linear(q: float, c: float) -> tuple[float, float]:
    return q * c, 1.0


def _pair_leaky(act: Activation) -> Callable[[float, float], tuple[float, float]]:
    """φ(u) = relu(u) − a·relu(−u): E[φφ] = (1 + a²) K(c) − 2a K(−c) with K the arc-cosine
    kernel above; E[φ′φ′] = (1 + a²)(π − θ)/(2π) + 2a θ/(2π)."""
    a = act.options["negative_slope"]

    def both(q: float, c: float) -> tuple[float, float]:
        k_plus, p_same = _pair_relu(q, c)
        k_minus, _ = _pair_relu(q, -c)
        return (1 + a * a) * k_plus - 2 * a * k_minus, (1 + a * a) * p_same + 2 * a * (0.5 - p_same)

    return both


def _pair_by_panels(act: Activation, q: float, c: float) -> tuple[float, float]:
    """E[φ(u1)φ(u2)], E[φ′(u1)φ′(u2)] for φ with kinks: u1 on panels that end at the kinks,
    and for each u1 the conditional u2 | u1 ~ N(c u1, q(1 − c²)) on panels that end at them."""
    where = kinks(act)
    u, w = gauss_panels(math.sqrt(min(q, Q_MAX)), where)
    s = math.sqrt(min(q * (1.0 - c * c), Q_MAX))
    if s == 0.0:
        return moments(act, q)
    inner_f, inner_g = np.empty(len(u)), np.empty(len(u))
    for i, ui in enumerate(u):
        y, v = gauss_panels(s, tuple(k - c * ui for k in where))
        u2 = c * ui + y
        inner_f[i], inner_g[i] = v @ act.f(u2), v @ act.grad(u2)
    return float(w @ (act.f(u) * inner_f)), float(w @ (act.grad(u) * inner_g))


#: name → (q, c) ↦ (E[φ(u1)φ(u2)], E[φ′(u1)φ′(u2)]) where a closed form exists.
PAIR_CLOSED_FORMS: dict[str, Callable[[float, float], tuple[float, float]]] = {
    "relu": _pair_relu,
    "linear": _pair_linear,
    "identity": _pair_linear,
}


def pair_moments(activation: str | Activation, q: float, c: float) -> tuple[float, float]:
    """(E[φ(u1)φ(u2)], E[φ′(u1)φ′(u2)]) for (u1, u2) ~ N(0, q [[1, c], [c, 1]])."""
    act = as_activation(activation)
    if not -1.0 <= c <= 1.0:
        raise ValueError(f"the correlation c must lie in [−1, 1], got {c}")
    if act.name in PAIR_CLOSED_FORMS:
        return PAIR_CLOSED_FORMS[act.name](q, c)
    if act.name == "leaky_relu":
        return _pair_leaky(act)(q, c)
    if c >= 1.0:
        return moments(act, q)
    if kinks(act):
        return _pair_by_panels(act, q, c)
    z, w = hermite(HERMITE_2D_NODES)
    r = math.sqrt(q)
    u1 = r * z[:, None]
    u2 = r * (c * z[:, None] + math.sqrt(max(1.0 - c * c, 0.0)) * z[None, :])
    ww = w[:, None] * w[None, :]
    return float(np.sum(ww * act.f(u1) * act.f(u2))), float(
        np.sum(ww * act.grad(u1) * act.grad(u2))
    )


def correlation_map(
    activation: str | Activation, c: float, q: float, sigma_w2: float, sigma_b2: float
) -> float:
    """c^(l+1) = (σ_w² E[φ(u1)φ(u2)] + σ_b²) / q at the fixed point q = q*."""
    return (sigma_w2 * pair_moments(activation, q, c)[0] + sigma_b2) / q


@dataclass(frozen=True)
class DepthScales:
    """Schoenholz et al. (2017)'s depth scales at (σ_w², σ_b²) and dropout's keep probability."""

    q_star: float
    chi1: float  # (σ_w²/ρ) E[φ′(√q* z)²]: one input's factor on ‖δ‖² per layer
    c_star: float  # 1 in the ordered phase (χ1 ≤ 1) without dropout; < 1 with it
    chi_c: float  # σ_w² E[φ′(u1)φ′(u2)] at c*: the c-map's slope there
    xi_q: float  # −1/ln(d map/dq at q*)
    xi_c: float  # −1/ln χ_c; ∞ on the critical line (without dropout)


def _xi(slope: float) -> float:
    if slope >= 1.0:
        return math.inf
    return -1.0 / math.log(slope) if slope > 0 else 0.0


def depth_scales(
    activation: str | Activation, sigma_w2: float, sigma_b2: float, keep: float = 1.0
) -> DepthScales:
    """q*, χ1, c*, the c-map's slope at c*, ξ_q and ξ_c, with dropout of keep probability ρ
    on every hidden activation (torch's: φ · mask/ρ, each input its own mask) if keep < 1.

    Dropout scales the diagonal of the map by 1/ρ (E[(mask/ρ)²] = 1/ρ) and leaves the
    off-diagonal alone (two inputs' masks are independent): q* is the fixed point of
    q ↦ (σ_w²/ρ) E[φ(√q z)²] + σ_b², and c^(l+1) = (σ_w² E[φ(u1)φ(u2)] + σ_b²)/q*
    (Schoenholz et al. 2017, section 5).

    c* = 1 is a fixed point of the c-map at q* when ρ = 1; its slope there is χ1, so it is
    stable for χ1 ≤ 1 (ordered). For χ1 > 1, or any ρ < 1 (the map sends c = 1 to
    1 − (1 − ρ)(q* − σ_b²)/q* < 1), the inputs decorrelate to the root c* < 1 of
    c-map(c) − c, found by brentq on [c_lo, 1] with c-map(c_lo) > c_lo.
    """
    _check(sigma_w2, sigma_b2)
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"the keep probability ρ must lie in (0, 1], got {keep!r}")
    act = as_activation(activation)
    diagonal = sigma_w2 / keep  # the q-map's weight variance under dropout
    q = fixed_point(act, diagonal, sigma_b2)
    if not 0 < q < math.inf:
        raise ValueError(
            f"depth scales need a finite q* > 0; {act!r} at σ_w² = {sigma_w2}, "
            f"σ_b² = {sigma_b2}, ρ = {keep} has q* = {q}"
        )
    chi1 = chi(act, q, diagonal)
    xi_q = _xi(variance_map_slope(act, q, diagonal))
    if keep == 1.0 and chi1 <= 1.0:
        return DepthScales(q, chi1, 1.0, chi1, xi_q, _xi(chi1))

    def gap(c: float) -> float:
        return correlation_map(act, c, q, sigma_w2, sigma_b2) - c

    lo = 0.0
    while gap(lo) <= 0:  # odd φ with σ_b² = 0 maps c = 0 to 0: look below
        lo -= 0.25
        if lo < -1.0:
            raise ValueError(f"no correlation fixed point below 1 for {act!r} at σ_w² = {sigma_w2}")
    hi = 1.0 if keep < 1.0 else 1.0 - 1e-6
    if gap(hi) >= 0:  # χ1 − 1 below what the quadrature resolves: on the critical line
        return DepthScales(q, chi1, 1.0, chi1, xi_q, math.inf)
    c_star = _brentq(gap, lo, hi)
    chi_c = sigma_w2 * pair_moments(act, q, c_star)[1]
    return DepthScales(q, chi1, c_star, chi_c, xi_q, _xi(chi_c))
