"""Losses elementwise in y and t: regression (MSE, L1, smooth L1, Huber, ½ squared error) in
the residual d = y − t, and binary cross-entropy in p (or the logit x)."""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.losses.base import (
    Array,
    Loss,
    Shape,
    _check_broadcasts_to,
    _finite,
    _float_param,
    _input,
    _numeric,
    _sigmoid,
)
from manual_bp.ops.base import TIE_RTOL

#: torch clamps each log in BCELoss at −100 and its backward's denominator at EPSILON,
#: declared `constexpr float EPSILON = 1e-12` in ATen: 1e-12 rounded to float32.
_BCE_LOG_FLOOR = -100.0
_BCE_EPSILON = float(np.float32(1e-12))  # 9.99999996e-13

# --- regression: elementwise in d = y − t --------------------------------------------


class _Elementwise(Loss):
    """Target of exactly the input's shape (torch broadcasts with a warning: refused)."""

    per_element = True

    def check(self, y_shape: Shape, target: Any) -> None:
        loss = type(self).__name__
        t = _numeric(loss, "target", target)
        if t.shape != tuple(y_shape):
            raise ValueError(
                f"{loss}: expected a target of the input's shape {tuple(y_shape)}, got shape "
                f"{t.shape} (torch would broadcast it with only a warning)"
            )
        _finite(loss, "target", t)
        self._check_nonempty(y_shape)

    def _prepare(self, y: Any, target: Any) -> tuple[Array, Array]:
        y = _input(type(self).__name__, y)
        self.check(y.shape, target)
        return y, np.asarray(target, dtype=np.float64)


class MSELoss(_Elementwise):
    """L = mean (y − t)²,  ∂L/∂y = 2 (y − t) / n   (reduction='sum': no 1/n)."""

    name = "mse_loss"

    def __call__(self, y: Array, target: Array) -> tuple[float, Array]:
        y, t = self._prepare(y, target)
        d = y - t
        return self._reduce(d * d), 2.0 * d * self._scale(d.size)


def _residual_kink(y: Array, target: Array) -> Array:
    """Entries where y − t is within rounding distance of 0 (relative to |y| and |t|)."""
    y, t = np.asarray(y, np.float64), np.asarray(target, np.float64)
    scale = max(float(np.max(np.abs(y), initial=0.0)), float(np.max(np.abs(t), initial=0.0)))
    return np.abs(y - t) <= TIE_RTOL * scale


class L1Loss(_Elementwise):
    """L = mean |y − t|,  ∂L/∂y = sign(y − t) / n."""

    name = "l1_loss"

    def __call__(self, y: Array, target: Array) -> tuple[float, Array]:
        y, t = self._prepare(y, target)
        d = y - t
        # NOTE: L1′(0) = sign(0) = 0, as torch's sgn.
        return self._reduce(np.abs(d)), np.sign(d) * self._scale(d.size)

    def ties(self, y: Array, target: Array) -> Array:
        """ℓ′ jumps at y = t."""
        return _residual_kink(y, target)


class SmoothL1Loss(_Elementwise):
    """ℓ = ½ d²/β for |d| < β else |d| − ½β,  ℓ′ = d/β for |d| < β else sign(d); β = 0 is L1."""

    name = "smooth_l1_loss"

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        if not np.isfinite(beta) or beta < 0:
            raise ValueError(f"SmoothL1Loss: expected a finite beta >= 0, got beta={beta!r}")
        self.beta = float(beta)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "beta": self.beta}

    def __call__(self, y: Array, target: Array) -> tuple[float, Array]:
        y, t = self._prepare(y, target)
        d = y - t
        if self.beta == 0.0:  # NOTE: torch switches to l1_loss here, whose ℓ′(0) = 0
            return self._reduce(np.abs(d)), np.sign(d) * self._scale(d.size)
        inside = np.abs(d) < self.beta
        terms = np.where(inside, 0.5 * d * d / self.beta, np.abs(d) - 0.5 * self.beta)
        grad = np.where(inside, d / self.beta, np.sign(d))
        return self._reduce(terms), grad * self._scale(d.size)

    def ties(self, y: Array, target: Array) -> Array | None:
        """ℓ′ is continuous at |d| = β (d/β = sign d there); with β = 0 it is L1's jump."""
        return _residual_kink(y, target) if self.beta == 0.0 else None


class HuberLoss(_Elementwise):
    """ℓ = ½ d² for |d| < δ else δ(|d| − ½δ),  ℓ′ = d for |d| ≤ δ else δ sign(d)."""

    name = "huber_loss"

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        if not np.isfinite(delta) or delta <= 0:
            raise ValueError(f"HuberLoss: expected a finite delta > 0, got delta={delta!r}")
        self.delta = float(delta)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "delta": self.delta}

    def __call__(self, y: Array, target: Array) -> tuple[float, Array]:
        y, t = self._prepare(y, target)
        d = y - t
        inside = np.abs(d) < self.delta
        terms = np.where(inside, 0.5 * d * d, self.delta * (np.abs(d) - 0.5 * self.delta))
        grad = np.clip(d, -self.delta, self.delta)
        return self._reduce(terms), grad * self._scale(d.size)


class HalfSquaredError(_Elementwise):
    """L = ½ Σ (y − t)²,  ∂L/∂y = y − t. Seed 003's E_total = Σ ½(target − out)²."""

    name = "half_squared_error"

    def __init__(self) -> None:
        super().__init__("sum")

    def options(self) -> dict[str, Any]:
        return {}

    def __call__(self, y: Array, target: Array) -> tuple[float, Array]:
        y, t = self._prepare(y, target)
        d = y - t
        return float(0.5 * (d * d).sum()), d


# --- binary: elementwise in p (or the logit x) and t ----------------------------------


class BCELoss(_Elementwise):
    """ℓ = −w [t log p + (1 − t) log(1 − p)], logs ≥ −100;  ℓ′ = w (p − t) / max(p(1 − p), ε).

    Both clamps are torch's, ε = float32(1e-12): the backward is not the derivative of the
    clamped forward (at p = 0, t = 1 it is −1/ε while ℓ is flat), and that is what
    autograd returns.
    """

    name = "binary_cross_entropy"

    def __init__(self, weight: Array | None = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.weight = _float_param("BCELoss", "weight", weight)

    def options(self) -> dict[str, Any]:
        return {"weight": self.weight, **super().options()}

    def check(self, y_shape: Shape, target: Any) -> None:
        super().check(y_shape, target)
        t = np.asarray(target)
        if ((t < 0) | (t > 1)).any():
            bad = tuple(int(i) for i in np.argwhere((t < 0) | (t > 1))[0])
            raise ValueError(
                f"BCELoss: expected targets in [0, 1] (torch raises too), got {t[bad]} at "
                f"index {bad}"
            )
        if self.weight is not None:
            _check_broadcasts_to("BCELoss", "weight", self.weight.shape, y_shape)

    def _check_probabilities(self, p: Array) -> None:
        outside = ~((p >= 0) & (p <= 1))  # NaN is outside, as in torch's check
        if outside.any():
            bad = tuple(int(i) for i in np.argwhere(outside)[0])
            raise ValueError(
                f"BCELoss: expected inputs in [0, 1] (probabilities; torch raises too), got "
                f"{p[bad]} at index {bad}; use BCEWithLogitsLoss on logits"
            )

    def __call__(self, y: Array, target: Array) -> tuple[float, Array]:
        p, t = self._prepare(y, target)
        self._check_probabilities(p)
        w = 1.0 if self.weight is None else self.weight
        with np.errstate(divide="ignore"):  # log 0 = −inf, then clamped at −100 as torch
            log_p = np.maximum(np.log(p), _BCE_LOG_FLOOR)
            log_1mp = np.maximum(np.log1p(-p), _BCE_LOG_FLOOR)
        terms = w * ((t - 1.0) * log_1mp - t * log_p)
        grad = w * (p - t) / np.maximum((1.0 - p) * p, _BCE_EPSILON)
        return self._reduce(terms), grad * self._scale(p.size)


def _log_sigmoid(x: Array) -> Array:
    """log σ(x) = min(x, 0) − log(1 + e^{−|x|}), no exponent of a positive number."""
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


class BCEWithLogitsLoss(_Elementwise):
    """ℓ = w [(1 − t) x − (1 + (pw − 1) t) log σ(x)],  ℓ′ = w ((1 + (pw − 1) t) σ(x) − pw t)."""

    name = "binary_cross_entropy_with_logits"

    def __init__(
        self,
        weight: Array | None = None,
        reduction: str = "mean",
        pos_weight: Array | None = None,
    ) -> None:
        super().__init__(reduction)
        self.weight = _float_param("BCEWithLogitsLoss", "weight", weight)
        self.pos_weight = _float_param("BCEWithLogitsLoss", "pos_weight", pos_weight)

    def options(self) -> dict[str, Any]:
        return {"weight": self.weight, **super().options(), "pos_weight": self.pos_weight}

    def check(self, y_shape: Shape, target: Any) -> None:
        super().check(y_shape, target)
        for what, arr in (("weight", self.weight), ("pos_weight", self.pos_weight)):
            if arr is not None:
                _check_broadcasts_to("BCEWithLogitsLoss", what, arr.shape, y_shape)

    def __call__(self, y: Array, target: Array) -> tuple[float, Array]:
        x, t = self._prepare(y, target)
        w = 1.0 if self.weight is None else self.weight
        pw = 1.0 if self.pos_weight is None else self.pos_weight
        log_weight = 1.0 + (pw - 1.0) * t  # weight of the log σ(x) term; 1 without pos_weight
        terms = w * ((1.0 - t) * x - log_weight * _log_sigmoid(x))
        grad = w * (log_weight * _sigmoid(x) - pw * t)
        return self._reduce(terms), grad * self._scale(x.size)
