"""Elementwise functions as a table: name → (f, f′), each f′ written from its formula.

Every entry is built by a factory that takes the function's options as keywords
(`get_activation("leaky_relu", negative_slope=0.2)`), so that the network's backward can
write the δ recursion once for all of them:

    δ^(l) = f′(z^(l)) ⊙ (W^(l+1))ᵀ δ^(l+1)          →   delta = act.grad(z) * dL_da

The table holds the activations (relu … rrelu) and the elementwise math of torch (exp, log,
sqrt, pow with a number, clamp, abs, round, …): both are one f and its f′. PReLU, whose
slope is a learned parameter, is a layer at the end of this module.

All functions are float64 and elementwise. The activations are stable for |z| up to 1e3 and
beyond: no exp of a large positive number is ever formed, so no overflow warning is raised.
The math functions follow torch where torch's answer is inf or NaN (log 0 = −inf, √0′ = inf,
log(−1) = NaN, e^{1000} = inf, 0^{−1} = inf) and compute it without a NumPy warning; the
oracle's finite checks then refuse the model, saying where.

Conventions at kinks (the subgradient torch's backward takes; each one is tested against
torch). torch's formulas are in tools/autograd/derivatives.yaml (abs, clamp, sign, round,
pow, sqrt, …) and the `*_backward` kernels of ATen, written out in Python in
torch/_decomp/decompositions.py (hardswish_backward, hardsigmoid_backward, elu_backward,
threshold_backward, leaky_relu_backward, rrelu_with_noise_backward, …):

| f            | kink (f′ or f jumps)  | f′ there       | torch's rule                        |
|--------------|-----------------------|----------------|-------------------------------------|
| relu         | 0                     | 0              | threshold_backward: z ≤ 0 ? 0 : 1   |
| leaky_relu   | 0                     | slope          | z > 0 ? 1 : slope                   |
| rrelu (eval) | 0                     | (l + u)/2      | leaky_relu, slope (lower + upper)/2 |
| elu (α ≠ 1)  | 0                     | α              | elu_backward: z ≤ 0 ? α eᶻ : 1      |
| selu         | 0                     | α·scale        | z ≤ 0 ? α·scale·eᶻ : scale          |
| celu         | none (C¹: f′(0±) = 1) | 1              | elu_backward, input_scale 1/α       |
| hardtanh     | min, max              | 0              | z ≤ min or z ≥ max ? 0 : 1          |
| relu6        | 0, 6                  | 0              | hardtanh(0, 6)                      |
| clamp        | min, max              | 1              | clamp_backward: min ≤ z ≤ max       |
| hardsigmoid  | −3, 3                 | 0              | −3 < z < 3 ? 1/6 (float32) : 0      |
| hardswish    | −3, 3                 | 0 (−3), 1 (3)  | z ≤ −3 ? 0 : (z < 3 ? z/3 + ½ : 1)  |
| softshrink   | ±λ                    | 0              | z > λ or z < −λ ? 1 : 0             |
| hardshrink   | ±λ (f jumps)          | 0              | −λ ≤ z ≤ λ ? 0 : 1                  |
| threshold    | t (f jumps)           | 0              | threshold_backward: z ≤ t ? 0 : 1   |
| softplus     | βz = threshold        | σ(βz)          | βz > threshold ? 1 : σ(βz)          |
| abs          | 0                     | 0              | grad · sgn(z)                       |
| sign         | 0 (f jumps)           | 0              | zeros_like                          |
| round        | k + ½ (f jumps)       | 0              | zeros_like; halves to even          |
| floor, ceil  | integers (f jumps)    | 0              | zeros_like                          |
| trunc        | integers ≠ 0          | 0              | zeros_like                          |
| pow(z, 0)    | none                  | 0              | pow_backward: e == 0 ? 0 : e·z^{e−1} |

clamp with min > max is max everywhere with f′ = 0, as torch's; hardshrink with λ < 0 is the
identity, as torch's.

`kink(z)` names the entries within rounding distance (TIE_RTOL, see manual_bp.ops.base.near)
of these points: where float64 rounding can decide which side torch and NumPy take.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from manual_bp.ops.base import TIE_RTOL, Array, Layer, Shape, near


@dataclass(frozen=True)
class Activation:
    """An elementwise f with its derivative f′, both functions of the pre-activation z."""

    name: str
    f: Callable[[Array], Array]
    grad: Callable[[Array], Array]
    options: dict[str, Any] = field(default_factory=dict)
    #: f′ written from the output a = f(z) where torch's backward takes it from there
    #: (σ′ = a(1 − a), tanh′ = 1 − a², exp′ = a, √′ = 1/(2a)): as torch computes it.
    grad_from_output: Callable[[Array], Array] | None = None
    #: the entries of z within rounding distance of a point where f′ (or f) jumps, as a
    #: boolean mask (see manual_bp.ops.base.near); None where f is smooth.
    kink: Callable[[Array], Array] | None = None

    def __call__(self, z: Array) -> Array:
        return self.f(z)

    def derivative(self, z: Array, a: Array) -> Array:
        """f′(z), from the output a = f(z) where that is cheaper."""
        return self.grad(z) if self.grad_from_output is None else self.grad_from_output(a)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.name}({opts})"


def _sigmoid(z: Array) -> Array:
    """σ(z) = 1/(1 + e^{-z}), formed from e^{-|z|} so that no exponent overflows."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(z: Array) -> Array:
    """log(1 + eᶻ) = max(z, 0) + log1p(e^{−|z|}): no overflow for any z."""
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def _quiet(fn: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """fn computing torch's inf/NaN (log 0, 1/0, √−1, e^{1000}) without a NumPy warning."""

    @functools.wraps(fn)
    def quiet(z: Array) -> Array:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return fn(z)

    return quiet


def _kinks(*points: float) -> Callable[[Array], Array]:
    """The kink mask of an f whose f′ (or f) jumps at `points`."""
    return lambda z: near(z, points)


def _number(value: Any, what: str) -> float:
    """An option as a finite float; ValueError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{what}: expected a finite number, got {value!r}")
    return float(value)


# --- activations -----------------------------------------------------------------------


def identity() -> Activation:
    """f(z) = z, f′(z) = 1."""
    return Activation("identity", lambda z: z, lambda z: np.ones_like(z))


def sigmoid() -> Activation:
    """f = σ(z), f′ = σ(z)(1 − σ(z)) ∈ [0, 1/4]."""

    def grad(z: Array) -> Array:
        s = _sigmoid(z)
        return s * (1.0 - s)

    return Activation("sigmoid", _sigmoid, grad, grad_from_output=lambda a: a * (1.0 - a))


def tanh() -> Activation:
    """f = tanh z, f′ = 1 − tanh² z ∈ [0, 1]."""
    return Activation(
        "tanh", np.tanh, lambda z: 1.0 - np.tanh(z) ** 2, grad_from_output=lambda a: 1.0 - a * a
    )


def relu() -> Activation:
    """f = max(z, 0), f′ = [z > 0]."""
    # NOTE: relu'(0) = 0, as in torch.
    return Activation(
        "relu",
        lambda z: np.maximum(z, 0.0),
        lambda z: (z > 0).astype(np.float64),
        kink=_kinks(0.0),
    )


def _leaky(name: str, s: float, options: dict[str, Any]) -> Activation:
    """f = z if z > 0 else s·z, f′ = 1 if z > 0 else s (leaky_relu_backward)."""
    return Activation(
        name,
        lambda z: np.where(z > 0, z, s * z),
        lambda z: np.where(z > 0, 1.0, s),
        options,
        kink=None if s == 1.0 else _kinks(0.0),
    )


def leaky_relu(negative_slope: float = 0.01) -> Activation:
    """f = z if z > 0 else s·z, f′ = 1 if z > 0 else s."""
    s = _number(negative_slope, "leaky_relu: negative_slope")
    return _leaky("leaky_relu", s, {"negative_slope": s})


def rrelu(lower: float = 1.0 / 8.0, upper: float = 1.0 / 3.0) -> Activation:
    """Randomized leaky ReLU in eval mode: leaky_relu with slope (lower + upper)/2."""
    lo, hi = _number(lower, "rrelu: lower"), _number(upper, "rrelu: upper")
    if lo > hi:
        raise ValueError(f"rrelu: lower must not exceed upper, got lower={lo}, upper={hi}")
    return _leaky("rrelu", (lo + hi) / 2.0, {"lower": lo, "upper": hi})


def _elu_family(
    name: str, alpha: float, scale: float, input_scale: float, options: dict[str, Any]
) -> Activation:
    """torch's elu kernel: f = scale·z (z > 0), α·scale·(e^{z·input_scale} − 1) (z ≤ 0);
    f′ = scale (z > 0), input_scale·α·scale·e^{z·input_scale} (z ≤ 0)."""
    neg, neg_in = alpha * scale, input_scale

    def f(z: Array) -> Array:
        return np.where(z > 0, z * scale, np.expm1(np.minimum(z, 0.0) * neg_in) * neg)

    def grad(z: Array) -> Array:
        return np.where(z > 0, scale, neg_in * neg * np.exp(np.minimum(z, 0.0) * neg_in))

    jumps = scale != neg_in * neg  # f′(0⁺) = scale, f′(0⁻) = input_scale·α·scale
    return Activation(name, f, grad, options, kink=_kinks(0.0) if jumps else None)


def elu(alpha: float = 1.0) -> Activation:
    """f = z if z > 0 else α(eᶻ − 1), f′ = 1 if z > 0 else α eᶻ."""
    alpha = _number(alpha, "elu: alpha")
    return _elu_family("elu", alpha, 1.0, 1.0, {"alpha": alpha})


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu() -> Activation:
    """f = scale·(z if z > 0 else α(eᶻ − 1)), α ≈ 1.6733, scale ≈ 1.0507 (Klambauer 2017)."""
    return _elu_family("selu", _SELU_ALPHA, _SELU_SCALE, 1.0, {})


def celu(alpha: float = 1.0) -> Activation:
    """f = z if z > 0 else α(e^{z/α} − 1), f′ = 1 if z > 0 else e^{z/α}."""
    alpha = _number(alpha, "celu: alpha")
    if alpha == 0:
        raise ValueError("celu: alpha must be nonzero, got 0 (torch raises ZeroDivisionError)")
    return _elu_family("celu", alpha, 1.0, 1.0 / alpha, {"alpha": alpha})


_SQRT1_2 = 0.70710678118654752440  # torch's M_SQRT1_2
_INV_SQRT_2PI = 1.12837916709551257390 * _SQRT1_2 * 0.5  # torch's kBeta = 1/√(2π)
_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)
_GELU_CUBIC = 0.044715


class _LazySpecial:
    """scipy.special, imported on first use (~0.3 s that a model without these never pays)."""

    def __getattr__(self, name: str) -> Any:
        import scipy.special

        return getattr(scipy.special, name)


special = _LazySpecial()


def _erf(z: Array) -> Array:
    # NOTE: scipy.special is imported on first use: it costs ~0.3 s, which a model without
    # erf or the erf form of GELU should not pay on its first gradient
    from scipy.special import erf

    return erf(z)


def _gelu_erf(z: Array) -> Array:
    """f = z Φ(z) = z · ½(1 + erf(z/√2)), as torch's kernel forms it."""
    # NOTE: like torch, −0.0 below z ≈ −8.3, where 1 + erf rounds to 0 (the exact value is
    # below 1e-16·|z|); torch and this table then agree on ties downstream.
    return z * 0.5 * (1.0 + _erf(z * _SQRT1_2))


def _gelu_erf_grad(z: Array) -> Array:
    """f′ = Φ(z) + z φ(z), φ(z) = e^{−z²/2}/√(2π)."""
    return 0.5 * (1.0 + _erf(z * _SQRT1_2)) + z * (_INV_SQRT_2PI * np.exp(z * z * -0.5))


def _gelu_tanh(z: Array) -> Array:
    """f = ½ z (1 + tanh u), u = √(2/π)(z + 0.044715 z³)."""
    u = _SQRT_2_OVER_PI * (z + _GELU_CUBIC * z**3)
    return 0.5 * z * (1.0 + np.tanh(u))


def _gelu_tanh_grad(z: Array) -> Array:
    """f′ = ½(1 + tanh u) + ½ z (1 − tanh² u) √(2/π)(1 + 3·0.044715 z²)."""
    t = np.tanh(_SQRT_2_OVER_PI * (z + _GELU_CUBIC * z**3))
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_CUBIC * z**2)
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du


def gelu(approximate: str = "none") -> Activation:
    """f = z Φ(z) (approximate='none') or its tanh form (approximate='tanh')."""
    forms = {"none": (_gelu_erf, _gelu_erf_grad), "tanh": (_gelu_tanh, _gelu_tanh_grad)}
    if approximate not in forms:
        raise ValueError(f"gelu: approximate must be one of {sorted(forms)}, got {approximate!r}")
    f, grad = forms[approximate]
    return Activation("gelu", f, grad, {"approximate": approximate})


def silu() -> Activation:
    """f = z σ(z), f′ = σ(z)(1 + z(1 − σ(z)))."""

    def grad(z: Array) -> Array:
        s = _sigmoid(z)
        return s * (1.0 + z * (1.0 - s))

    return Activation("silu", lambda z: z * _sigmoid(z), grad)


def mish() -> Activation:
    """f = z tanh(softplus z), f′ = t + z σ(z)(1 − t²), t = tanh(softplus z) (Misra 2019)."""

    def grad(z: Array) -> Array:
        t = np.tanh(_softplus(z))
        return t + z * _sigmoid(z) * (1.0 - t * t)

    return Activation("mish", lambda z: z * np.tanh(_softplus(z)), grad)


def softplus(beta: float = 1.0, threshold: float = 20.0) -> Activation:
    """f = log(1 + e^{βz})/β, f′ = σ(βz); linear (f = z, f′ = 1) where βz > threshold."""
    beta, threshold = _number(beta, "softplus: beta"), _number(threshold, "softplus: threshold")
    if beta == 0:
        raise ValueError("softplus: beta must be nonzero, got 0 (torch would divide by it)")

    def f(z: Array) -> Array:
        bz = beta * z
        return np.where(bz > threshold, z, _softplus(bz) / beta)

    def grad(z: Array) -> Array:
        bz = beta * z
        return np.where(bz > threshold, 1.0, _sigmoid(bz))

    return Activation(
        "softplus", f, grad, {"beta": beta, "threshold": threshold}, kink=_kinks(threshold / beta)
    )


def logsigmoid() -> Activation:
    """f = log σ(z) = min(z, 0) − log1p(e^{−|z|}), f′ = 1 − σ(z) = σ(−z)."""

    def grad(z: Array) -> Array:
        e = np.exp(-np.abs(z))  # torch's buffer
        return np.where(z < 0, 1.0, 0.0) - np.where(z < 0, 1.0, -1.0) * (e / (1.0 + e))

    return Activation(
        "logsigmoid", lambda z: np.minimum(z, 0.0) - np.log1p(np.exp(-np.abs(z))), grad
    )


def softsign() -> Activation:
    """f = z/(1 + |z|), f′ = 1/(1 + |z|)²."""
    return Activation(
        "softsign", lambda z: z / (1.0 + np.abs(z)), lambda z: 1.0 / (1.0 + np.abs(z)) ** 2
    )


def tanhshrink() -> Activation:
    """f = z − tanh z, f′ = tanh² z."""
    return Activation("tanhshrink", lambda z: z - np.tanh(z), lambda z: np.tanh(z) ** 2)


def hardtanh(min_val: float = -1.0, max_val: float = 1.0) -> Activation:
    """f = clip(z, min, max), f′ = [min < z < max]."""
    lo, hi = _number(min_val, "hardtanh: min_val"), _number(max_val, "hardtanh: max_val")
    if not lo < hi:
        raise ValueError(f"hardtanh: min_val must be below max_val, got {lo} and {hi}")
    # NOTE: f'(min) = f'(max) = 0, as in torch's hardtanh_backward.
    return Activation(
        "hardtanh",
        lambda z: np.clip(z, lo, hi),
        lambda z: ((z > lo) & (z < hi)).astype(np.float64),
        {"min_val": lo, "max_val": hi},
        kink=_kinks(lo, hi),
    )


def relu6() -> Activation:
    """f = min(max(z, 0), 6) = hardtanh(z, 0, 6)."""
    act = hardtanh(0.0, 6.0)
    return Activation("relu6", act.f, act.grad, kink=act.kink)


#: 1/6 as torch's hardsigmoid_backward holds it: a float32 constant (1.0f / 6.0f) in every
#: dtype, 3e-8 above 1/6. Matched, so that a model with Hardsigmoid agrees at rtol 1e-9.
_TORCH_ONE_SIXTH = float(np.float32(1.0) / np.float32(6.0))


def hardsigmoid() -> Activation:
    """f = relu6(z + 3)/6, f′ = 1/6 on (−3, 3), 0 elsewhere (Howard 2019, MobileNetV3)."""
    # NOTE: f′ is torch's float32 1/6 (see _TORCH_ONE_SIXTH), f divides by 6 exactly.
    return Activation(
        "hardsigmoid",
        lambda z: np.minimum(np.maximum(z + 3.0, 0.0), 6.0) / 6.0,
        lambda z: np.where((z > -3.0) & (z < 3.0), _TORCH_ONE_SIXTH, 0.0),
        kink=_kinks(-3.0, 3.0),
    )


def hardswish() -> Activation:
    """f = z·relu6(z + 3)/6, f′ = 0 (z ≤ −3), z/3 + ½ (−3 < z < 3), 1 (z ≥ 3)."""
    return Activation(
        "hardswish",
        lambda z: z * np.minimum(np.maximum(z + 3.0, 0.0), 6.0) / 6.0,
        lambda z: np.where(z <= -3.0, 0.0, np.where(z < 3.0, z / 3.0 + 0.5, 1.0)),
        kink=_kinks(-3.0, 3.0),
    )


def softshrink(lambd: float = 0.5) -> Activation:
    """f = z − λ (z > λ), z + λ (z < −λ), 0 otherwise;  f′ = [|z| > λ]."""
    lam = _number(lambd, "softshrink: lambd")
    if lam < 0:
        raise ValueError(f"softshrink: lambd must be >= 0, got {lam} (torch refuses it too)")
    return Activation(
        "softshrink",
        lambda z: np.where(z > lam, z - lam, np.where(z < -lam, z + lam, 0.0)),
        lambda z: ((z > lam) | (z < -lam)).astype(np.float64),
        {"lambd": lam},
        kink=_kinks(-lam, lam),
    )


def hardshrink(lambd: float = 0.5) -> Activation:
    """f = z where |z| > λ, 0 where −λ ≤ z ≤ λ;  f′ = [z < −λ or z > λ]."""
    lam = _number(lambd, "hardshrink: lambd")
    inside = (
        (lambda z: (z >= -lam) & (z <= lam)) if lam >= 0 else (lambda z: np.zeros(z.shape, bool))
    )
    return Activation(
        "hardshrink",
        lambda z: np.where(inside(z), 0.0, z),
        lambda z: np.where(inside(z), 0.0, 1.0),
        {"lambd": lam},
        kink=_kinks(-lam, lam) if lam >= 0 else None,  # λ < 0: the identity, as in torch
    )


def threshold(threshold: float, value: float) -> Activation:
    """f = z where z > t, else value;  f′ = [z > t]."""
    t, v = _number(threshold, "threshold: threshold"), _number(value, "threshold: value")
    return Activation(
        "threshold",
        lambda z: np.where(z > t, z, v),
        lambda z: (z > t).astype(np.float64),
        {"threshold": t, "value": v},
        kink=_kinks(t),
    )


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


ACTIVATIONS: dict[str, Callable[..., Activation]] = {
    # activations
    "identity": identity,
    "linear": identity,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "rrelu": rrelu,
    "elu": elu,
    "selu": selu,
    "celu": celu,
    "gelu": gelu,
    "silu": silu,
    "mish": mish,
    "softplus": softplus,
    "logsigmoid": logsigmoid,
    "softsign": softsign,
    "tanhshrink": tanhshrink,
    "hardtanh": hardtanh,
    "relu6": relu6,
    "hardsigmoid": hardsigmoid,
    "hardswish": hardswish,
    "softshrink": softshrink,
    "hardshrink": hardshrink,
    "threshold": threshold,
    # elementwise math
    "exp": exp,
    "expm1": expm1,
    "erf": erf,
    "log": log,
    "log1p": log1p,
    "log2": log2,
    "log10": log10,
    "sqrt": sqrt,
    "rsqrt": rsqrt,
    "reciprocal": reciprocal,
    "square": square,
    "pow": pow_,
    "abs": abs_,
    "sin": sin,
    "cos": cos,
    "clamp": clamp,
    "sign": sign,
    "round": round_,
    "floor": floor,
    "ceil": ceil,
    "trunc": trunc,
    "tan": tan,
    "asin": asin,
    "acos": acos,
    "atan": atan,
    "sinh": sinh,
    "cosh": cosh,
    "asinh": asinh,
    "acosh": acosh,
    "atanh": atanh,
    "exp2": exp2,
    "erfc": erfc,
    "erfinv": erfinv,
    "lgamma": lgamma,
    "digamma": digamma,
    "polygamma": polygamma,
    "mvlgamma": mvlgamma,
    "i0": i0,
    "i0e": i0e,
    "i1": i1,
    "i1e": i1e,
    "logit": logit,
    "sinc": sinc,
    "frac": frac,
    "ndtr": ndtr,
    "ndtri": ndtri,
    "log_ndtr": log_ndtr,
    "erfcx": erfcx,
    "entr": entr,
    "nan_to_num": nan_to_num,
}

IDENTITY = identity()


def get_activation(name: str, **options: Any) -> Activation:
    """The activation called `name`, built with `options`; unknown names list the known ones."""
    try:
        factory = ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; known activations: {', '.join(sorted(ACTIVATIONS))}"
        ) from None
    return factory(**options)


# --- PReLU: a learned slope -------------------------------------------------------------


class PReLU(Layer):
    """z = a if a > 0 else w·a, w of shape (C,) on channel dim 1 (or (1,), shared);
    δ_prev = δ ⊙ (a > 0 ? 1 : w),  ∂L/∂w = Σ_{all but dim 1} δ ⊙ (a > 0 ? 0 : a)."""

    def __init__(self, weight: Array) -> None:
        super().__init__()
        w = np.asarray(weight, dtype=np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"PReLU: expected a weight of shape (C,) or (1,), got {w.shape}")
        self.params["weight"] = w

    def __repr__(self) -> str:
        return f"PReLU(num_parameters={self.params['weight'].size})"

    def shape(self, in_shape: Shape) -> Shape:
        c = self.params["weight"].size
        if c > 1 and (len(in_shape) < 2 or in_shape[1] != c):
            raise ValueError(
                f"PReLU: expected an input of shape (N, {c}, *) for {c} slopes, got "
                f"{tuple(in_shape)}"
            )
        return tuple(in_shape)

    def _slope(self, ndim: int) -> Array:
        """w shaped to broadcast along dim 1: (1, C, 1, …), or a 0-d slope for C = 1."""
        w = self.params["weight"]
        return w.reshape((1, w.size) + (1,) * (ndim - 2)) if w.size > 1 else w.reshape(())

    def forward(self, a: Array) -> tuple[Array, Array]:
        self.shape(a.shape)
        return np.where(a > 0, a, self._slope(a.ndim) * a), a

    def backward(self, delta: Array, a: Array) -> tuple[Array, dict[str, Array]]:
        positive = a > 0
        delta_prev = np.where(positive, delta, self._slope(a.ndim) * delta)
        return delta_prev, self.param_grads(delta, a)

    def param_grads(self, delta: Array, a: Array) -> dict[str, Array]:
        dw = np.where(a > 0, 0.0, a * delta)
        w = self.params["weight"]
        if w.size > 1:  # Σ over every dim but the channels, dim 1
            return {"weight": dw.sum(axis=tuple(i for i in range(a.ndim) if i != 1))}
        return {"weight": np.atleast_1d(dw.sum())}

    def ties(self, a: Array) -> tuple[Array]:
        return (near(a, (0.0,)),)
