"""The activations (relu … rrelu, gelu, silu, mish, the hard and shrink functions):
each a factory returning f and its f′ written from the formula.

torch's formulas are in tools/autograd/derivatives.yaml and the `*_backward` kernels of ATen,
written out in Python in torch/_decomp/decompositions.py; the conventions at kinks are
tabled in manual_bp.ops.activations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.activations.core import Activation, _kinks, _number, _sigmoid, _softplus
from manual_bp.ops.base import Array

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
    if lo > hi:  # (min_val = max_val: a constant, f′ = 0 everywhere, as torch)
        raise ValueError(f"hardtanh: min_val must not exceed max_val, got {lo} and {hi}")
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
