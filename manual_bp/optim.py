"""Optimisers and gradient clipping, each with its update formula, as torch computes it.

| name            | update (g = ∂L/∂θ, t the step count from 1)                              |
|-----------------|--------------------------------------------------------------------------|
| SGD             | θ ← θ − α g                                                              |
| Adam            | m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², θ ← θ − α m̂/(√v̂ + ε)              |
| clip_grad_norm  | g ← g · min(1, c/(‖g‖ + 10⁻⁶)), ‖g‖ the norm over all gradients together |

Optimisers update the arrays of `model.named_parameters()` in place (a manual_bp Network, or
anything with that method), given gradients keyed the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

import numpy as np

Array = np.ndarray


class HasParameters(Protocol):
    def named_parameters(self) -> dict[str, Array]: ...


def _matched(model: HasParameters, grads: Mapping[str, Array]) -> dict[str, tuple[Array, Array]]:
    """{name: (θ, g)} for every gradient given; unknown names and wrong shapes are errors."""
    params = model.named_parameters()
    unknown = sorted(set(grads) - set(params))
    if unknown:
        raise ValueError(f"gradients for unknown parameters {unknown}; known: {sorted(params)}")
    pairs = {}
    for name, g in grads.items():
        theta = params[name]
        if np.shape(g) != theta.shape:
            raise ValueError(
                f"gradient of {name!r} has shape {np.shape(g)}, expected {theta.shape}"
            )
        pairs[name] = (theta, np.asarray(g, dtype=np.float64))
    return pairs


def _positive(what: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{what} must be a number > 0, got {value!r}")
    return float(value)


class SGD:
    """θ ← θ − α ∇θ L for every parameter (updated in place): plain gradient descent."""

    def __init__(self, lr: float) -> None:
        if not lr > 0:
            raise ValueError(f"the learning rate must be > 0, got {lr!r}")
        self.lr = float(lr)

    def step(self, model: HasParameters, grads: Mapping[str, Array]) -> None:
        """One step; `grads` is keyed like model.named_parameters() ("<node>.<param>")."""
        for theta, g in _matched(model, grads).values():
            theta -= self.lr * g


class Adam:
    """torch.optim.Adam (Kingma & Ba 2015, Algorithm 1), with torch's ε outside the root:

        g ← g + λθ                                    (weight_decay λ: L2 added to g)
        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
        m̂ = m / (1 − β₁ᵗ),       v̂ = v / (1 − β₂ᵗ)       (v̂ ← max(v̂_max, v̂) with amsgrad)
        θ ← θ − α m̂ / (√v̂ + ε)

    t counts the steps taken with each parameter, from 1; m, v start at 0. The arithmetic
    follows torch's single-tensor loop (m by lerp, the step size α/(1 − β₁ᵗ), the denominator
    √v/√(1 − β₂ᵗ) + ε), so that the same gradients give the same θ to rounding.
    """

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        self.lr = _positive("lr", lr)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be ≥ 0, got {eps!r}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be ≥ 0, got {weight_decay!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps, self.weight_decay, self.amsgrad = float(eps), float(weight_decay), bool(amsgrad)
        #: per parameter name: step count t, m, v (and v_max with amsgrad)
        self.state: dict[str, dict[str, Array | int]] = {}

    def step(self, model: HasParameters, grads: Mapping[str, Array]) -> None:
        """One Adam step for every parameter with a gradient (θ updated in place)."""
        beta1, beta2 = self.betas
        for name, (theta, g) in _matched(model, grads).items():
            if self.weight_decay:
                g = g + self.weight_decay * theta
            state = self.state.setdefault(
                name, {"step": 0, "m": np.zeros_like(theta), "v": np.zeros_like(theta)}
            )
            state["step"] += 1
            t, m, v = state["step"], state["m"], state["v"]
            m += (g - m) * (1.0 - beta1)  # m ← β₁m + (1 − β₁)g, as torch's lerp
            v *= beta2
            v += (1.0 - beta2) * g * g  # v ← β₂v + (1 − β₂)g²
            step_size = self.lr / (1.0 - beta1**t)
            sqrt_bias2 = math.sqrt(1.0 - beta2**t)
            if self.amsgrad:
                v_max = state.setdefault("v_max", np.zeros_like(theta))
                np.maximum(v_max, v, out=v_max)
                denom = np.sqrt(v_max) / sqrt_bias2 + self.eps
            else:
                denom = np.sqrt(v) / sqrt_bias2 + self.eps
            theta -= step_size * (m / denom)  # θ ← θ − α m̂/(√v̂ + ε)


def clip_grad_norm(
    grads: Mapping[str, Array],
    max_norm: float,
    norm_type: float = 2.0,
    *,
    error_if_nonfinite: bool = False,
) -> tuple[dict[str, Array], float]:
    """torch.nn.utils.clip_grad_norm_, on a copy: g ← g · min(1, c / (‖g‖ + 10⁻⁶)).

    ‖g‖ = ‖(‖g₁‖_p, ‖g₂‖_p, …)‖_p is the p-norm of all gradients taken together (p = inf:
    the largest |gᵢ|). Returns the clipped gradients (new arrays) and that total norm, as
    measured before clipping. A non-finite norm scales by NaN, as torch does, unless
    error_if_nonfinite, which raises ValueError.
    """
    max_norm = float(max_norm)
    p = float(norm_type)
    if not (p > 0):
        raise ValueError(f"norm_type must be > 0 or inf, got {norm_type!r}")
    arrays = {name: np.asarray(g, dtype=np.float64) for name, g in grads.items()}
    if not arrays:
        return {}, 0.0
    if math.isinf(p):
        per_tensor = [float(np.max(np.abs(g), initial=0.0)) for g in arrays.values()]
        total = max(per_tensor)
    else:
        per_tensor = [float(np.linalg.norm(g.ravel(), ord=p)) for g in arrays.values()]
        total = float(np.linalg.norm(np.array(per_tensor), ord=p))
    if error_if_nonfinite and not math.isfinite(total):
        raise ValueError(
            f"the total norm of order {norm_type} of the gradients is {total}, so they cannot "
            f"be clipped; pass error_if_nonfinite=False to clip anyway (torch then scales by NaN)"
        )
    coef = min(max_norm / (total + 1e-6), 1.0)  # NOTE: torch multiplies even when coef is 1
    return {name: g * coef for name, g in arrays.items()}, total
