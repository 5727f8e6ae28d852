"""Activation functions as a table: name → (f, f′), each f′ written from its formula.

Every entry is built by a factory that takes the activation's options as keywords
(`get_activation("leaky_relu", negative_slope=0.2)`), so that the network's backward can
write the δ recursion of the notes once for all of them:

    δ^(l) = f′(z^(l)) ⊙ (W^(l+1))ᵀ δ^(l+1)          →   delta = act.grad(z) * dL_da

All functions are float64, elementwise, and stable for |z| up to 1e3 and beyond: no
exp of a large positive number is ever formed, so no overflow warning is raised.

Conventions at kinks (the subgradient torch's backward uses; each one is tested):

| activation  | kink          | f′ there                  | torch's rule                          |
|-------------|---------------|---------------------------|---------------------------------------|
| relu        | z = 0         | 0                         | grad where result > 0                 |
| leaky_relu  | z = 0         | negative_slope            | z > 0 ? 1 : negative_slope            |
| elu         | z = 0         | alpha                     | z ≤ 0 ? alpha·eᶻ : 1                  |
| hardtanh    | z = min, max  | 0                         | z ≤ min or z ≥ max ? 0 : 1            |
| relu6       | z = 0, 6      | 0                         | hardtanh(0, 6)                        |
| softplus    | βz = threshold| σ(βz)                     | βz > threshold ? 1 : σ(βz)            |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from manual_bp.ops.special import normal_cdf, normal_pdf

Array = np.ndarray


@dataclass(frozen=True)
class Activation:
    """An elementwise f with its derivative f′, both functions of the pre-activation z."""

    name: str
    f: Callable[[Array], Array]
    grad: Callable[[Array], Array]
    options: dict[str, Any] = field(default_factory=dict)
    #: f′ written from the output a = f(z) where the formula allows (σ′ = a(1 − a),
    #: tanh′ = 1 − a²): one transcendental fewer in backward, as torch's backward does.
    grad_from_output: Callable[[Array], Array] | None = None
    #: the entries of z within rounding distance of a kink of f (where f′ jumps), as a
    #: boolean mask (see manual_bp.ops.base.near); None for a smooth f.
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


# --- the table's entries -------------------------------------------------------------


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
    return Activation("relu", lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(np.float64))


def leaky_relu(negative_slope: float = 0.01) -> Activation:
    """f = z if z > 0 else s·z, f′ = 1 if z > 0 else s."""
    s = float(negative_slope)
    return Activation(
        "leaky_relu",
        lambda z: np.where(z > 0, z, s * z),
        lambda z: np.where(z > 0, 1.0, s),
        {"negative_slope": s},
    )


def elu(alpha: float = 1.0) -> Activation:
    """f = z if z > 0 else α(eᶻ − 1), f′ = 1 if z > 0 else α eᶻ."""
    alpha = float(alpha)
    return Activation(
        "elu",
        lambda z: np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0.0))),
        lambda z: np.where(z > 0, 1.0, alpha * np.exp(np.minimum(z, 0.0))),
        {"alpha": alpha},
    )


_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)
_GELU_CUBIC = 0.044715


def _gelu_erf(z: Array) -> Array:
    """f = z Φ(z)."""
    return z * normal_cdf(z)


def _gelu_erf_grad(z: Array) -> Array:
    """f′ = Φ(z) + z φ(z)."""
    return normal_cdf(z) + z * normal_pdf(z)


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


def softplus(beta: float = 1.0, threshold: float = 20.0) -> Activation:
    """f = log(1 + e^{βz})/β, f′ = σ(βz); linear (f = z, f′ = 1) where βz > threshold."""
    beta, threshold = float(beta), float(threshold)

    def f(z: Array) -> Array:
        bz = beta * z
        # log(1 + e^{bz}) = max(bz, 0) + log1p(e^{-|bz|}): no overflow for any bz.
        soft = (np.maximum(bz, 0.0) + np.log1p(np.exp(-np.abs(bz)))) / beta
        return np.where(bz > threshold, z, soft)

    def grad(z: Array) -> Array:
        bz = beta * z
        return np.where(bz > threshold, 1.0, _sigmoid(bz))

    return Activation("softplus", f, grad, {"beta": beta, "threshold": threshold})


def hardtanh(min_val: float = -1.0, max_val: float = 1.0) -> Activation:
    """f = clip(z, min, max), f′ = [min < z < max]."""
    lo, hi = float(min_val), float(max_val)
    if not lo < hi:
        raise ValueError(f"hardtanh: min_val must be below max_val, got {lo} and {hi}")
    # NOTE: f'(min) = f'(max) = 0, as in torch's hardtanh_backward.
    return Activation(
        "hardtanh",
        lambda z: np.clip(z, lo, hi),
        lambda z: ((z > lo) & (z < hi)).astype(np.float64),
        {"min_val": lo, "max_val": hi},
    )


def relu6() -> Activation:
    """f = min(max(z, 0), 6) = hardtanh(z, 0, 6)."""
    act = hardtanh(0.0, 6.0)
    return Activation("relu6", act.f, act.grad)


ACTIVATIONS: dict[str, Callable[..., Activation]] = {
    "identity": identity,
    "linear": identity,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "gelu": gelu,
    "silu": silu,
    "softplus": softplus,
    "hardtanh": hardtanh,
    "relu6": relu6,
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
