"""Trigonometric, hyperbolic and special functions (erf, gamma and polygamma,
Bessel i0/i1, logit, ndtr, …): each a factory returning f and its f′.

torch's formulas are in tools/autograd/derivatives.yaml and the `*_backward` kernels of ATen,
written out in Python in torch/_decomp/decompositions.py; the conventions at kinks are
tabled in manual_bp.ops.activations.
The special functions are scipy.special's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from manual_bp.ops.activations.core import Activation, _kinks, _number, _quiet
from manual_bp.ops.activations.elementwise import _LN2, _TWO_OVER_SQRT_PI, _near_integer
from manual_bp.ops.activations.neural import special
from manual_bp.ops.base import Array

# --- trigonometric, hyperbolic and special functions -------------------------------------


def tan() -> Activation:
    """f = tan z, f′ = 1 + a² (from the output, as torch)."""
    return Activation(
        "tan", np.tan, lambda z: 1.0 + np.tan(z) ** 2, grad_from_output=lambda a: 1.0 + a * a
    )


def asin() -> Activation:
    """f = asin z, f′ = 1/√(1 − z²) (NaN outside [−1, 1], as torch)."""
    return Activation("asin", _quiet(np.arcsin), _quiet(lambda z: 1.0 / np.sqrt(1.0 - z * z)))


def acos() -> Activation:
    """f = acos z, f′ = −1/√(1 − z²)."""
    return Activation("acos", _quiet(np.arccos), _quiet(lambda z: -1.0 / np.sqrt(1.0 - z * z)))


def atan() -> Activation:
    """f = atan z, f′ = 1/(1 + z²)."""
    return Activation("atan", np.arctan, lambda z: 1.0 / (z * z + 1.0))


def sinh() -> Activation:
    """f = sinh z, f′ = cosh z."""
    return Activation("sinh", _quiet(np.sinh), _quiet(np.cosh))


def cosh() -> Activation:
    """f = cosh z, f′ = sinh z."""
    return Activation("cosh", _quiet(np.cosh), _quiet(np.sinh))


def asinh() -> Activation:
    """f = asinh z, f′ = 1/√(z² + 1)."""
    return Activation("asinh", np.arcsinh, lambda z: 1.0 / np.sqrt(z * z + 1.0))


def acosh() -> Activation:
    """f = acosh z, f′ = 1/√(z² − 1) (torch: (z² − 1)^(−½))."""
    return Activation("acosh", _quiet(np.arccosh), _quiet(lambda z: 1.0 / np.sqrt(z * z - 1.0)))


def atanh() -> Activation:
    """f = atanh z, f′ = 1/(1 − z²)."""
    return Activation("atanh", _quiet(np.arctanh), _quiet(lambda z: 1.0 / (1.0 - z * z)))


def exp2() -> Activation:
    """f = 2ᶻ, f′ = a ln 2 (from the output, as torch)."""
    return Activation(
        "exp2",
        _quiet(np.exp2),
        _quiet(lambda z: np.exp2(z) * _LN2),
        grad_from_output=lambda a: a * _LN2,
    )


def erfc() -> Activation:
    """f = 1 − erf z, f′ = −(2/√π) e^(−z²)."""
    return Activation("erfc", special.erfc, lambda z: -_TWO_OVER_SQRT_PI * np.exp(-z * z))


def erfinv() -> Activation:
    """f = erf⁻¹ z, f′ = (√π/2) e^(f²) (inf at ±1, NaN outside, as torch)."""
    half_sqrt_pi = 0.5 * math.sqrt(math.pi)
    return Activation(
        "erfinv",
        _quiet(special.erfinv),
        _quiet(lambda z: half_sqrt_pi * np.exp(special.erfinv(z) ** 2)),
    )


def lgamma() -> Activation:
    """f = log|Γ(z)|, f′ = ψ(z) (digamma; poles at 0, −1, −2, ... give inf)."""
    return Activation("lgamma", _quiet(special.gammaln), _quiet(special.psi))


def _trigamma(z: Array) -> Array:
    """ψ⁽¹⁾(z) as torch's calc_trigamma forms it: the reflection π²/sin²(πz) for z < ½ (finite,
    huge, at the poles, where scipy says inf), six steps of the recurrence, then the
    asymptotic series."""
    z = np.asarray(z, dtype=np.float64)
    sign = np.where(z < 0.5, -1.0, 1.0)
    s = np.sin(np.pi * z)
    result = np.where(z < 0.5, -(np.pi * np.pi) / (s * s), 0.0)
    x = np.where(z < 0.5, 1.0 - z, z)
    for _ in range(6):
        result = result + 1.0 / (x * x)
        x = x + 1.0
    ixx = 1.0 / (x * x)
    result = (
        result + (1.0 + 1.0 / (2.0 * x) + ixx * (1.0 / 6 - ixx * (1.0 / 30 - ixx * (1.0 / 42)))) / x
    )
    return sign * result


def digamma() -> Activation:
    """f = ψ(z) = Γ′(z)/Γ(z), f′ = ψ⁽¹⁾(z) (trigamma, formed as torch's)."""
    return Activation("digamma", _quiet(special.psi), _quiet(_trigamma))


def polygamma(n: int) -> Activation:
    """f = ψ⁽ⁿ⁾(z), f′ = ψ⁽ⁿ⁺¹⁾(z); n ≥ 0 (n = 0 is digamma)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"polygamma: expected an integer order n >= 0, got {n!r}")
    k = int(n)

    def psi(order: int) -> Callable[[Array], Array]:
        if order == 0:
            return special.psi
        if order == 1:
            return _trigamma
        return lambda z: special.polygamma(order, z)

    return Activation("polygamma", _quiet(psi(k)), _quiet(psi(k + 1)), {"n": k})


def mvlgamma(p: int) -> Activation:
    """The multivariate log-gamma of dimension p: f = p(p−1)/4 · log π + Σ_{j<p} log Γ(z − j/2),
    f′ = Σ_{j<p} ψ(z − j/2). torch refuses entries z ≤ (p − 1)/2; here they are NaN (which the
    oracle refuses, naming them)."""
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 1:
        raise ValueError(f"mvlgamma: expected an integer p >= 1, got {p!r}")
    k = int(p)
    offsets = np.arange(k) / 2.0

    def outside(fn: Callable[[Array], Array]) -> Callable[[Array], Array]:
        def g(z: Array) -> Array:
            ok = z > (k - 1) / 2.0
            safe = np.where(ok, z, float(k))
            return np.where(ok, fn(safe[..., None] - offsets).sum(-1), np.nan)

        return g

    return Activation(
        "mvlgamma",
        lambda z: k * (k - 1) / 4.0 * math.log(math.pi) + outside(special.gammaln)(z),
        outside(special.psi),
        {"p": k},
    )


def i0() -> Activation:
    """f = I₀(z) (modified Bessel, order 0), f′ = I₁(z)."""
    return Activation("i0", special.i0, special.i1)


def i0e() -> Activation:
    """f = e^(−|z|) I₀(z), f′ = I₁e(z) − sgn z · I₀e(z) (f′ jumps at 0: ∓1 on either side)."""
    return Activation(
        "i0e",
        special.i0e,
        lambda z: special.i1e(z) - np.sign(z) * special.i0e(z),
        kink=_kinks(0.0),
    )


def _at_zero(z: Array, value: float, fn: Callable[[Array], Array]) -> Array:
    """fn(z) where z ≠ 0, `value` at 0 (fn's limit; torch writes it as a branch too)."""
    safe = np.where(z == 0.0, 1.0, z)
    return np.where(z == 0.0, value, fn(safe))


def i1() -> Activation:
    """f = I₁(z), f′ = I₀(z) − I₁(z)/z (½ at z = 0: i1_backward)."""
    return Activation(
        "i1",
        _quiet(special.i1),
        _quiet(lambda z: _at_zero(z, 0.5, lambda t: special.i0(t) - special.i1(t) / t)),
    )


def i1e() -> Activation:
    """f = e^(−|z|) I₁(z), f′ = I₀e(z) − I₁e(z)(sgn z + 1/z) (½ at z = 0: i1e_backward)."""
    return Activation(
        "i1e",
        special.i1e,
        lambda z: _at_zero(
            z, 0.5, lambda t: special.i0e(t) - special.i1e(t) * (np.sign(t) + 1.0 / t)
        ),
    )


def logit(eps: float | None = None) -> Activation:
    """f = log(z/(1 − z)) of z clamped to [ε, 1 − ε] when eps is given; f′ = 1/(z(1 − z)) inside,
    0 outside [ε, 1 − ε] (logit_backward; NaN outside [0, 1] without eps)."""
    if eps is None:
        return Activation(
            "logit",
            _quiet(lambda z: np.log(z / (1.0 - z))),
            _quiet(lambda z: np.where((z < 0) | (z > 1), np.nan, 1.0 / (z * (1.0 - z)))),
        )
    e = _number(eps, "logit: eps")
    lo, hi = e, 1.0 - e

    def f(z: Array) -> Array:
        c = np.clip(z, lo, hi)
        return np.log(c / (1.0 - c))

    return Activation(
        "logit",
        _quiet(f),
        _quiet(lambda z: np.where((z < lo) | (z > hi), 0.0, 1.0 / (z * (1.0 - z)))),
        {"eps": e},
        kink=_kinks(lo, hi),
    )


def sinc() -> Activation:
    """f = sin(πz)/(πz) (1 at 0), f′ = (πz cos πz − sin πz)/(π z²), 0 where π z² is 0 (as
    torch's sinc_backward: z = 0, and |z| < 1e-162 where z² underflows)."""

    def grad(z: Array) -> Array:
        pz, denom = z * math.pi, z * z * math.pi
        return np.where(denom == 0.0, 0.0, (pz * np.cos(pz) - np.sin(pz)) / denom)

    return Activation("sinc", _quiet(np.sinc), _quiet(grad))


_INV_SQRT_2PI = 0.3989422804014327  # 1/√(2π)


def ndtr() -> Activation:
    """f = Φ(z), the standard normal CDF;  f′ = e^(−z²/2)/√(2π)."""
    return Activation("ndtr", special.ndtr, lambda z: _INV_SQRT_2PI * np.exp(-0.5 * z * z))


def ndtri() -> Activation:
    """f = Φ⁻¹(z);  f′ = √(2π) e^(f²/2) (from the output, as torch; inf at 0 and 1)."""
    from_output = _quiet(lambda a: np.exp(0.5 * a * a) / _INV_SQRT_2PI)
    f = _quiet(special.ndtri)
    return Activation("ndtri", f, lambda z: from_output(f(z)), grad_from_output=from_output)


def log_ndtr() -> Activation:
    """f = log Φ(z);  f′ = e^(−z²/2 − f)/√(2π) (stable for z ≪ 0, as torch)."""
    f = _quiet(special.log_ndtr)
    return Activation(
        "log_ndtr", f, _quiet(lambda z: _INV_SQRT_2PI * np.exp(-(f(z) + 0.5 * z * z)))
    )


def erfcx() -> Activation:
    """f = e^(z²) erfc z;  f′ = 2z f − 2/√π (from f, as torch)."""
    return Activation(
        "erfcx",
        _quiet(special.erfcx),
        _quiet(lambda z: 2.0 * z * special.erfcx(z) - _TWO_OVER_SQRT_PI),
    )


def entr() -> Activation:
    """f = −z log z (0 at 0, −inf for z < 0, as torch);  f′ = −(1 + log z)."""

    def f(z: Array) -> Array:
        return np.where(z > 0, -special.xlogy(z, z), np.where(z == 0, 0.0, -np.inf))

    return Activation("entr", _quiet(f), _quiet(lambda z: -(1.0 + np.log(z))))


def nan_to_num(
    nan: float = 0.0, posinf: float | None = None, neginf: float | None = None
) -> Activation:
    """f = z with NaN, +inf, −inf replaced (by default 0 and the largest finite values);
    f′ = 1 where z is finite, 0 elsewhere (torch's nan_to_num backward)."""
    big = float(np.finfo(np.float64).max)
    hi = big if posinf is None else _number(posinf, "nan_to_num: posinf")
    lo = -big if neginf is None else _number(neginf, "nan_to_num: neginf")
    fill = _number(nan, "nan_to_num: nan")
    return Activation(
        "nan_to_num",
        lambda z: np.nan_to_num(z, nan=fill, posinf=hi, neginf=lo),
        lambda z: np.isfinite(z).astype(np.float64),
        {"nan": fill, "posinf": hi, "neginf": lo},
    )


def frac() -> Activation:
    """f = z − trunc z, f′ = 1; f jumps at every integer but 0."""
    return Activation(
        "frac",
        lambda z: z - np.trunc(z),
        lambda z: np.ones_like(z),
        kink=lambda z: _near_integer(z) & (np.rint(z) != 0),
    )
