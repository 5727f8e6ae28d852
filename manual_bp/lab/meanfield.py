"""Mean-field theory of signal propagation in a wide random MLP (Poole et al. 2016,
Schoenholz et al. 2017): what the δ recursion does on average.

With W_ij ~ (0, σ_w²/fan_in), b_i ~ (0, σ_b²) and width → ∞, each pre-activation is
Gaussian with variance q^(l), and one layer maps

    q^(l+1) = σ_w² E[φ(√q^(l) z)²] + σ_b²,           z ~ N(0, 1)       (variance map)
    χ_l     = σ_w² E[φ′(√q^(l) z)²]                                    (‖δ‖² per layer)

because δ^(l) = φ′(z^(l)) ⊙ (W^(l+1))ᵀ δ^(l+1) gives E‖δ^(l)‖² = χ_l E‖δ^(l+1)‖². So

    log10(‖δ^(1)‖ / ‖δ^(L−1)‖) ≈ ½ Σ_{l=1}^{L−2} log10 χ_l,    q^(1) = σ_w² Var(x) + σ_b²,

and at the fixed point q* = map(q*) one layer multiplies ‖δ‖² by χ1 = χ(q*): χ1 < 1 is
the ordered phase (gradients vanish), χ1 > 1 the chaotic one (they explode). Along the
trajectory matters: tanh at σ_w² = 1 reaches q* = 0 only as q^(l) ≈ 1/(2l), so χ_l → 1
from below and the gradient decays as a power law the fixed point alone does not see.

Gaussian expectations E[g(√q z)]:
- closed forms where they exist: linear, relu, leaky_relu (both moments for every q);
- smooth activations with √q ≤ 0.6: Gauss–Hermite with 96 nodes. It converges slowly
  for tanh-like integrands, whose poles at z = ±iπ/(2√q) close in on the real axis as q
  grows (relative error 1e-9 at q = 1, 4e-4 at q = 16 against the panels below);
- everything else (kinks: elu, hardtanh, relu6, softplus's threshold; saturating units at
  large q, whose φ′ is a spike of width ~1 under a Gaussian of width √q): the line split at
  every kink, at ±2ᵏ (the activation's scale) and at ±√q·2⁻ʲ (the Gaussian's) in u = √q z,
  each panel by 24-node Gauss–Legendre, over |z| ≤ 12 (the mass beyond is < 10⁻³²).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np

from manual_bp.ops.activations import Activation, get_activation

Array = np.ndarray

_HERMITE_NODES = 96
_HERMITE_MAX_SCALE = 0.6
_LEGENDRE_NODES = 24
_Z_MAX = 12.0
#: q beyond this is ∞ for float64 purposes; χ of every activation here has a limit there.
Q_MAX = 1e300


# --- Gaussian expectations ------------------------------------------------------------


@cache
def _hermite() -> tuple[Array, Array]:
    x, w = np.polynomial.hermite.hermgauss(_HERMITE_NODES)
    return x * math.sqrt(2.0), w / math.sqrt(math.pi)  # ∫ g(z) φ(z) dz ≈ Σ w g(x)


@cache
def _legendre() -> tuple[Array, Array]:
    return np.polynomial.legendre.leggauss(_LEGENDRE_NODES)


def _panel_nodes(scale: float, kinks: tuple[float, ...]) -> tuple[Array, Array]:
    """Nodes u and weights for ∫ g(u) N(u; 0, scale²) du over |u| ≤ 12·scale.

    Panels end at the kinks and at ±2ᵏ (k = −3…6: the activation's own scale) and at
    ±scale·2⁻ʲ (j = 0…10: the Gaussian's); beyond |u| = 64 every activation here is
    linear or constant to round-off, so a panel there only has to follow the Gaussian.
    """
    u_max = _Z_MAX * scale
    own = 2.0 ** np.arange(-3, 7)
    gaussian = scale * 2.0 ** -np.arange(0, 11)
    ends = np.concatenate([own, gaussian, [u_max]])
    cuts = np.concatenate([-ends, [0.0], ends, [k for k in kinks if abs(k) < u_max]])
    cuts = np.unique(cuts[np.abs(cuts) <= u_max])
    x, w = _legendre()
    lo, hi = cuts[:-1, None], cuts[1:, None]
    u = (0.5 * (hi - lo) * x + 0.5 * (hi + lo)).ravel()
    weight = (0.5 * (hi - lo) * w).ravel()
    density = np.exp(-0.5 * (u / scale) ** 2) / (scale * math.sqrt(2.0 * math.pi))
    return u, weight * density


def _nodes(q: float, kinks: tuple[float, ...]) -> tuple[Array, Array]:
    """Nodes u = √q z and weights with E[g(√q z)] ≈ Σ w g(u)."""
    if not q >= 0:
        raise ValueError(f"the variance q must be non-negative, got {q}")
    scale = math.sqrt(min(q, Q_MAX))
    if scale == 0.0:
        return np.zeros(1), np.ones(1)
    if not kinks and scale <= _HERMITE_MAX_SCALE:
        z, w = _hermite()
        return scale * z, w
    return _panel_nodes(scale, kinks)


def gaussian_expectation(
    g: Callable[[Array], Array], q: float, kinks: tuple[float, ...] = ()
) -> float:
    """E[g(√q z)], z ~ N(0, 1): Gauss–Hermite when g is smooth on the scale √q, else panels."""
    u, w = _nodes(q, kinks)
    return float(w @ g(u))


# --- the table: per activation, E[φ(√q z)²] and E[φ′(√q z)²] ---------------------------


Moments = Callable[[float], tuple[float, float]]


def _closed_form(phi2: Callable[[float], float], dphi2: Callable[[float], float]):
    return lambda act: lambda q: (phi2(q), dphi2(q))


def _leaky(act: Activation) -> Moments:
    s2 = act.options["negative_slope"] ** 2
    return lambda q: (0.5 * (1.0 + s2) * q, 0.5 * (1.0 + s2))


def _kinks(act: Activation) -> tuple[float, ...]:
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
    kinks = _kinks(act)

    def both(q: float) -> tuple[float, float]:
        u, w = _nodes(q, kinks)
        return float(w @ act.f(u) ** 2), float(w @ act.grad(u) ** 2)

    return both


#: name → q ↦ (E[φ(√q z)²], E[φ′(√q z)²]); activations not listed go by quadrature.
CLOSED_FORMS: dict[str, Callable[[Activation], Moments]] = {
    "identity": _closed_form(lambda q: q, lambda q: 1.0),
    "linear": _closed_form(lambda q: q, lambda q: 1.0),
    "relu": _closed_form(lambda q: 0.5 * q, lambda q: 0.5),
    "leaky_relu": _leaky,
}


def _as_activation(activation: str | Activation) -> Activation:
    return activation if isinstance(activation, Activation) else get_activation(activation)


def moments(activation: str | Activation, q: float) -> tuple[float, float]:
    """(E[φ(√q z)²], E[φ′(√q z)²]) for z ~ N(0, 1)."""
    act = _as_activation(activation)
    phi2, dphi2 = CLOSED_FORMS.get(act.name, _by_quadrature)(act)(min(float(q), Q_MAX))
    return float(phi2), float(dphi2)


def variance_map(activation: str | Activation, q: float, sigma_w2: float, sigma_b2: float) -> float:
    """q^(l+1) = σ_w² E[φ(√q z)²] + σ_b²."""
    return sigma_w2 * moments(activation, q)[0] + sigma_b2


def chi(activation: str | Activation, q: float, sigma_w2: float) -> float:
    """χ = σ_w² E[φ′(√q z)²], the factor on E‖δ‖² of one layer at pre-activation variance q."""
    return sigma_w2 * moments(activation, q)[1]


def trajectory(
    activation: str | Activation, sigma_w2: float, sigma_b2: float, q1: float, n: int
) -> Array:
    """q^(1), …, q^(n) from q^(1) = q1 by the variance map (capped at Q_MAX)."""
    act = _as_activation(activation)
    q = np.empty(n)
    if n:
        q[0] = min(q1, Q_MAX)
    for l in range(1, n):
        q[l] = min(variance_map(act, q[l - 1], sigma_w2, sigma_b2), Q_MAX)
    return q


def _check(sigma_w2: float, sigma_b2: float) -> None:
    if not (sigma_w2 >= 0 and sigma_b2 >= 0):
        raise ValueError(f"σ_w² and σ_b² must be non-negative, got {sigma_w2} and {sigma_b2}")


def fixed_point(
    activation: str | Activation,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    q1: float | None = None,
    *,
    tol: float = 1e-13,
    iterations: int = 200,
) -> float:
    """q* = lim q^(l), iterating the map from q1 (default σ_w² + σ_b²); ∞ when it diverges.

    The map is increasing in q for the activations here, so the iterates are monotone and
    q* is the fixed point on the side q1 starts from. Where `iterations` steps do not
    settle it (near criticality the approach is a power law, q^(l) ≈ 1/(2l) for tanh at
    σ_w² = 1), the root of map(q) − q is bracketed beyond the last iterate and bisected.
    """
    _check(sigma_w2, sigma_b2)
    act = _as_activation(activation)

    def gap(q: float) -> float:
        return variance_map(act, q, sigma_w2, sigma_b2) - q

    q = sigma_w2 + sigma_b2 if q1 is None else float(q1)
    for _ in range(iterations):
        q_next = variance_map(act, q, sigma_w2, sigma_b2)
        if q_next >= Q_MAX:
            return math.inf
        if abs(q_next - q) <= tol * q:
            return q_next
        q = q_next
    if gap(q) < 0:  # decreasing towards the largest root below q; gap(0) = σ_b² + σ_w²φ(0)² ≥ 0
        lo, hi = 0.0, q
    else:  # increasing: find a q with gap < 0 above
        lo, hi = q, max(2.0 * q, 1.0)
        while gap(hi) >= 0:
            if hi >= Q_MAX:
                return math.inf
            lo, hi = hi, min(max(2.0 * hi, hi * hi), Q_MAX)
    for _ in range(100):  # the bracket shrinks by 2¹⁰⁰ ≈ 10³⁰
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if gap(mid) >= 0 else (lo, mid)
    return 0.5 * (lo + hi)


def chi1_theory(
    activation: str | Activation, sigma_w2: float, sigma_b2: float = 0.0, q1: float | None = None
) -> float:
    """χ1 = σ_w² E[φ′(√q* z)²] at the fixed point reached from q1."""
    q_star = fixed_point(activation, sigma_w2, sigma_b2, q1)
    return chi(activation, min(q_star, Q_MAX), sigma_w2)


def delta_ratio_log10_theory(
    activation: str | Activation,
    sigma_w2: float,
    sigma_b2: float,
    depth: int,
    var_x: float = 1.0,
) -> float:
    """½ Σ_{l=1}^{depth−2} log10 χ_l along q^(1) = σ_w² Var(x) + σ_b², q^(l+1) = map(q^(l))."""
    _check(sigma_w2, sigma_b2)
    if depth < 2:
        raise ValueError(f"depth must be at least 2 (one hidden layer), got {depth}")
    act = _as_activation(activation)
    q, total = min(sigma_w2 * var_x + sigma_b2, Q_MAX), 0.0
    for _ in range(depth - 2):
        phi2, dphi2 = moments(act, q)
        chi_l = sigma_w2 * dphi2
        total += 0.5 * (math.log10(chi_l) if chi_l > 0 else -math.inf)
        q = min(sigma_w2 * phi2 + sigma_b2, Q_MAX)
    return total


def critical_sigma_w2(
    activation: str | Activation, sigma_b2: float = 0.0, lo: float = 0.05, hi: float = 20.0
) -> float:
    """The σ_w² where χ1 = 1 (order to chaos), by bisection on log χ1 over [lo, hi]."""
    act = _as_activation(activation)

    def log_chi1(s: float) -> float:
        return math.log(chi1_theory(act, s, sigma_b2))

    f_lo, f_hi = log_chi1(lo), log_chi1(hi)
    if not f_lo < 0 < f_hi:
        raise ValueError(
            f"χ1 − 1 does not change sign on σ_w² ∈ [{lo}, {hi}] for {act!r} "
            f"(log χ1 = {f_lo:.3g}, {f_hi:.3g})"
        )
    for _ in range(45):  # (hi − lo)/2⁴⁵ < 1e-12
        mid = 0.5 * (lo + hi)
        if log_chi1(mid) < 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
