"""torch's elementwise math (exp, log, sqrt, pow with a number, abs, clamp,
sign and rounding): each a factory returning f and its f′.

torch's formulas are in tools/autograd/derivatives.yaml and the `*_backward` kernels of ATen,
written out in Python in torch/_decomp/decompositions.py; the conventions at kinks are
tabled in manual_bp.ops.activations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from manual_bp.ops.activations.core import Activation, _kinks, _number, _quiet
from manual_bp.ops.activations.neural import _erf
from manual_bp.ops.base import TIE_RTOL, Array

# --- elementwise math ------------------------------------------------------------------

_LN2 = 0.6931471805599453  # torch's log2 backward: grad / (z · ln 2)
_TWO_OVER_SQRT_PI = 1.1283791670955126  # torch's erf backward: 2/√π · exp(−z²) · grad
_LN10 = 2.3025850929940456


def exp() -> Activation:
    """f = eᶻ, f′ = eᶻ = a (from the output, as torch)."""
    return Activation("exp", _quiet(np.exp), _quiet(np.exp), grad_from_output=lambda a: a)


def expm1() -> Activation:
    """f = eᶻ − 1, f′ = a + 1 (from the output, as torch)."""
    f = _quiet(np.expm1)
    return Activation("expm1", f, lambda z: f(z) + 1.0, grad_from_output=lambda a: a + 1.0)


def erf() -> Activation:
    """f = erf z, f′ = (2/√π) e^(−z²)."""
    return Activation("erf", _erf, lambda z: _TWO_OVER_SQRT_PI * np.exp(-z * z))


def log() -> Activation:
    """f = log z, f′ = 1/z (log 0 = −inf, log of z < 0 is NaN: torch's too)."""
    return Activation("log", _quiet(np.log), _quiet(lambda z: 1.0 / z))


def log1p() -> Activation:
    """f = log(1 + z), f′ = 1/(z + 1)."""
    return Activation("log1p", _quiet(np.log1p), _quiet(lambda z: 1.0 / (z + 1.0)))


def log2() -> Activation:
    """f = log₂ z, f′ = 1/(z ln 2)."""
    return Activation("log2", _quiet(np.log2), _quiet(lambda z: 1.0 / (z * _LN2)))


def log10() -> Activation:
    """f = log₁₀ z, f′ = 1/(z ln 10)."""
    return Activation("log10", _quiet(np.log10), _quiet(lambda z: 1.0 / (z * _LN10)))


def sqrt() -> Activation:
    """f = √z, f′ = 1/(2a) (from the output, as torch: inf at z = 0)."""
    f = _quiet(np.sqrt)
    from_output = _quiet(lambda a: 1.0 / (2.0 * a))
    return Activation("sqrt", f, lambda z: from_output(f(z)), grad_from_output=from_output)


def rsqrt() -> Activation:
    """f = 1/√z, f′ = −½ a³ (from the output, as torch: −inf at z = 0)."""
    f = _quiet(lambda z: 1.0 / np.sqrt(z))
    from_output = _quiet(lambda a: -0.5 * a**3)
    return Activation("rsqrt", f, lambda z: from_output(f(z)), grad_from_output=from_output)


def reciprocal() -> Activation:
    """f = 1/z, f′ = −a² (from the output, as torch: −inf at z = 0)."""
    f = _quiet(lambda z: 1.0 / z)
    from_output = _quiet(lambda a: -(a * a))
    return Activation("reciprocal", f, lambda z: from_output(f(z)), grad_from_output=from_output)


def square() -> Activation:
    """f = z², f′ = 2z."""
    return Activation("square", _quiet(lambda z: z * z), lambda z: 2.0 * z)


#: the exponents torch's pow kernel computes by another function (which decides the sign of
#: an infinity at z = −0: √−0 = −0, 1/√−0 = −inf, where the C pow gives +0 and +inf)
_TORCH_POW: dict[float, Callable[[Array], Array]] = {
    0.5: np.sqrt,
    -0.5: lambda z: 1.0 / np.sqrt(z),
    2.0: lambda z: z * z,
    3.0: lambda z: z * z * z,
    -1.0: lambda z: 1.0 / z,
    -2.0: lambda z: 1.0 / (z * z),
}


def _pow(z: Array, e: float) -> Array:
    """z^e as torch's pow_tensor_scalar kernel forms it."""
    special_form = _TORCH_POW.get(e)
    return np.power(z, e) if special_form is None else special_form(z)


def pow_(exponent: float) -> Activation:
    """f = z^e, f′ = e z^{e−1}; f′ = 0 everywhere when e = 0 (pow_backward)."""
    e = _number(exponent, "pow: exponent")
    if e == 0:
        return Activation(
            "pow", lambda z: np.ones_like(z), lambda z: np.zeros_like(z), {"exponent": e}
        )
    return Activation(
        "pow",
        _quiet(lambda z: _pow(z, e)),
        _quiet(lambda z: e * _pow(z, e - 1.0)),
        {"exponent": e},
    )


def abs_() -> Activation:
    """f = |z|, f′ = sgn z (0 at z = 0, as torch)."""
    return Activation("abs", np.abs, np.sign, kink=_kinks(0.0))


def sin() -> Activation:
    """f = sin z, f′ = cos z."""
    return Activation("sin", np.sin, np.cos)


def cos() -> Activation:
    """f = cos z, f′ = −sin z."""
    return Activation("cos", np.cos, lambda z: -np.sin(z))


def clamp(min: float | None = None, max: float | None = None) -> Activation:  # noqa: A002
    """f = min(max(z, lo), hi), f′ = [lo ≤ z ≤ hi] (1 on the bounds: clamp_backward)."""
    if min is None and max is None:
        raise ValueError("clamp: expected min, max or both, got neither (torch refuses it too)")
    lo = None if min is None else _number(min, "clamp: min")
    hi = None if max is None else _number(max, "clamp: max")
    options = {"min": lo, "max": hi}
    if lo is not None and hi is not None and lo > hi:
        # NOTE: torch's clamp with min > max is max everywhere, and its gradient is 0.
        return Activation(
            "clamp", lambda z: np.full_like(z, hi), lambda z: np.zeros_like(z), options
        )
    lo_, hi_ = -np.inf if lo is None else lo, np.inf if hi is None else hi

    return Activation(
        "clamp",
        lambda z: np.minimum(np.maximum(z, lo_), hi_),
        lambda z: ((z >= lo_) & (z <= hi_)).astype(np.float64),
        options,
        kink=_kinks(*(p for p in (lo, hi) if p is not None)),
    )


def _step(name: str, f: Callable[[Array], Array], kink: Callable[[Array], Array]) -> Activation:
    """A piecewise-constant f: f′ = 0 (torch's zeros_like), f jumps where `kink` says."""
    return Activation(name, f, lambda z: np.zeros_like(z), kink=kink)


def _near_integer(z: Array) -> Array:
    """Entries within TIE_RTOL·max|z| of an integer."""
    tol = TIE_RTOL * float(np.max(np.abs(z), initial=0.0))
    return np.abs(z - np.rint(z)) <= tol


def sign() -> Activation:
    """f = sgn z ∈ {−1, 0, 1}, f′ = 0."""
    return _step("sign", np.sign, _kinks(0.0))


def angle() -> Activation:
    """f = arg z of a real z: π where z < 0, else 0; f′ = 0 (torch's angle_backward, real)."""
    return _step("angle", lambda z: np.where(z < 0, np.pi, 0.0), _kinks(0.0))


def floor() -> Activation:
    """f = ⌊z⌋, f′ = 0."""
    return _step("floor", np.floor, _near_integer)


def ceil() -> Activation:
    """f = ⌈z⌉, f′ = 0."""
    return _step("ceil", np.ceil, _near_integer)


def trunc() -> Activation:
    """f = z rounded toward 0, f′ = 0; it jumps at every integer but 0."""
    return _step("trunc", np.trunc, lambda z: _near_integer(z) & (np.rint(z) != 0))


def round_(decimals: int = 0) -> Activation:
    """f = z rounded to `decimals` digits, halves to even (torch's nearbyint), f′ = 0."""
    if isinstance(decimals, bool) or not isinstance(decimals, (int, np.integer)):
        raise ValueError(f"round: decimals must be an integer, got {decimals!r}")
    d = int(decimals)
    ten = 10.0 ** abs(d)

    def scaled(z: Array) -> Array:  # the value rounded to an integer
        return z / ten if d < 0 else z * ten

    def f(z: Array) -> Array:
        if d == 0:
            return np.rint(z)
        return np.rint(z / ten) * ten if d < 0 else np.rint(z * ten) / ten

    def kink(z: Array) -> Array:  # halfway between two integers of the scaled value
        y = scaled(z)
        tol = TIE_RTOL * float(np.max(np.abs(y), initial=0.0))
        return np.abs(np.abs(y - np.floor(y)) - 0.5) <= tol

    act = _step("round", f, kink)
    return Activation(act.name, act.f, act.grad, {"decimals": d}, kink=act.kink)
