"""Losses: the value L and ∂L/∂y side by side, with torch's exact semantics, in float64.

A loss is a small object with two methods:

    check(y_shape, target)  -> None                  validation only, before any arithmetic
    loss(y, target)         -> (L: float, ∂L/∂y)      calls check itself first

The constructor keywords are torch's (`reduction`, `weight`, `ignore_index`,
`label_smoothing`, `beta`, `delta`, `pos_weight`); `reduction='none'` is refused, since a
vector of losses has no scalar gradient. Losses are listed in `LOSSES` by torch's
functional name; `get_loss(name, **options)` builds one.

The classification losses share one form, softmax cross-entropy's p − q generalised. With A the
effective target weights (class weights, label smoothing ε/C, ignored rows zero), along
the class axis:

    L = −Σ A ⊙ log p / norm,      ∂L/∂z = ((Σ_c A) p − A) / norm,      p = softmax(z)

For a one-hot A this is the familiar ∂loss/∂z_i = p_i − q_i.

Where torch computes garbage (a mean over nothing, a NaN target) we refuse with a
ValueError saying what was expected and what was given. Where torch silently differs
from what was asked we refuse too, and say so below:

| case                                     | torch                       | here           |
|------------------------------------------|-----------------------------|----------------|
| MSE/L1/… target of another shape         | broadcasts, warns           | ValueError     |
| mean over an empty input / all ignored   | NaN                         | ValueError     |
| label_smoothing < 0                      | silently ignored            | ValueError     |
| NaN / Inf in a float target              | propagates NaN              | ValueError     |
| NaN / Inf in a weight                    | propagates NaN              | ValueError     |
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from manual_bp.ops.activations import sigmoid as _sigmoid_activation
from manual_bp.ops.base import TIE_RTOL

Array = np.ndarray
Shape = tuple[int, ...]

_REDUCTIONS = ("mean", "sum")
#: torch clamps each log in BCELoss at −100 and its backward's denominator at EPSILON,
#: declared `constexpr float EPSILON = 1e-12` in ATen: 1e-12 rounded to float32.
_BCE_LOG_FLOOR = -100.0
_BCE_EPSILON = float(np.float32(1e-12))  # 9.99999996e-13

_sigmoid = _sigmoid_activation().f


# --- validation helpers --------------------------------------------------------------


def _check_reduction(loss: str, reduction: Any) -> str:
    if reduction == "none":
        raise ValueError(
            f"{loss}: reduction='none' gives one loss per element, which has no scalar "
            f"gradient; use reduction='mean' or 'sum'"
        )
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{loss}: expected reduction 'mean' or 'sum', got {reduction!r}")
    return reduction


def _numeric(loss: str, what: str, x: Any) -> Array:
    """x as an array of numbers (bool, strings and objects refused), not yet converted."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{loss}: expected {what} of real numbers, got dtype {arr.dtype}")
    return arr


def _finite(loss: str, what: str, x: Array) -> None:
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise ValueError(
            f"{loss}: expected a finite {what}, got {x[bad]} at index {bad} "
            f"({int((~np.isfinite(x)).sum())} non-finite values)"
        )


def _float_param(loss: str, what: str, x: Any, *, ndim: int | None = None) -> Array | None:
    """A weight / pos_weight option as a float64 copy (the caller's array is never kept)."""
    if x is None:
        return None
    arr = _numeric(loss, what, x)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{loss}: expected {what} of {ndim} dimension(s), got shape {arr.shape}")
    arr = np.array(arr, dtype=np.float64)
    _finite(loss, what, arr)
    return arr


def _check_broadcasts_to(loss: str, what: str, shape: Shape, y_shape: Shape) -> None:
    """torch multiplies weights in place into a tensor of y's shape: broadcast must give y's."""
    try:
        fits = np.broadcast_shapes(shape, y_shape) == tuple(y_shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{loss}: expected {what} broadcastable to the input's shape {tuple(y_shape)}, "
            f"got shape {tuple(shape)}"
        )


def _input(loss: str, y: Any) -> Array:
    return np.asarray(_numeric(loss, "input", y), dtype=np.float64)


# --- the base ------------------------------------------------------------------------


class Loss:
    """Base of all losses: `reduction` and the check / (value, gradient) pair."""

    name: ClassVar[str] = "loss"

    #: elementwise losses also give one loss per element (reduction='none')
    per_element: ClassVar[bool] = False

    def __init__(self, reduction: str = "mean") -> None:
        if reduction == "none" and self.per_element:
            self.reduction = reduction
            return
        self.reduction = _check_reduction(type(self).__name__, reduction)

    def options(self) -> dict[str, Any]:
        return {"reduction": self.reduction}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"

    def check(self, y_shape: Shape, target: Any) -> None:
        raise NotImplementedError

    def __call__(self, y: Array, target: Array) -> tuple[float, Array]:
        raise NotImplementedError

    def ties(self, y: Array, target: Array) -> Array | None:
        """Entries of y within rounding distance of a kink of ℓ′ (see manual_bp.ops.base),
        or None for a loss whose derivative is continuous."""
        return None

    def _check_nonempty(self, y_shape: Shape) -> None:
        if self.reduction == "mean" and int(np.prod(y_shape, dtype=np.int64)) == 0:
            raise ValueError(
                f"{type(self).__name__}: reduction='mean' over an empty input of shape "
                f"{tuple(y_shape)} is 0/0 (torch returns NaN); give at least one element"
            )

    def _scale(self, n: int) -> float:
        """∂(reduction)/∂(each term): 1/n for the mean, 1 for the sum (and for 'none')."""
        return 1.0 / n if self.reduction == "mean" else 1.0

    def _reduce(self, terms: Array) -> Any:
        """The loss: the mean or sum of the terms, or with reduction='none' the terms."""
        if self.reduction == "none":
            return terms
        return float(terms.sum() * self._scale(terms.size))


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


# --- classification: log-softmax along the class axis -------------------------------


def _class_axis(ndim: int) -> int:
    """torch's rule: the class axis is 0 for an unbatched (C,) input, else 1."""
    return 0 if ndim == 1 else 1


def _log_softmax(z: Array, axis: int) -> Array:
    """log p = (z − max z) − log Σ e^{z − max z}: every exponent ≤ 0."""
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _weighted_log_sum(A: Array, log_p: Array) -> float:
    """Σ A ⊙ log p over the entries with A ≠ 0 (torch gathers those: a −∞ elsewhere is fine)."""
    return float((A * np.where(A != 0, log_p, 0.0)).sum())


class _ClassLoss(Loss):
    """Class-index targets (N,), (N, d1, …) or () for input (N, C), (N, C, d1, …) or (C,)."""

    probability_targets: ClassVar[bool] = False

    def __init__(
        self, weight: Array | None = None, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        loss = type(self).__name__
        self.weight = _float_param(loss, "weight", weight, ndim=1)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise ValueError(f"{loss}: expected an integer ignore_index, got {ignore_index!r}")
        self.ignore_index = int(ignore_index)
        self.label_smoothing = 0.0

    def options(self) -> dict[str, Any]:
        return {"weight": self.weight, "ignore_index": self.ignore_index, **super().options()}

    # -- validation --

    def _is_probability_target(self, y_shape: Shape, target: Array) -> bool:
        """torch's rule: a target of exactly the input's shape holds class probabilities."""
        return self.probability_targets and target.shape == tuple(y_shape)

    def check(self, y_shape: Shape, target: Any) -> None:
        loss = type(self).__name__
        y_shape = tuple(y_shape)
        if len(y_shape) == 0:
            raise ValueError(
                f"{loss}: expected input of shape (C,), (N, C) or (N, C, d1, ...), got shape ()"
            )
        C = y_shape[_class_axis(len(y_shape))]
        if C == 0:
            raise ValueError(f"{loss}: expected at least one class, got input shape {y_shape}")
        if self.weight is not None and self.weight.shape != (C,):
            raise ValueError(
                f"{loss}: expected weight of shape ({C},), one per class, got shape "
                f"{self.weight.shape}"
            )
        t = _numeric(loss, "target", target)
        if self._is_probability_target(y_shape, t):
            self._check_probabilities(y_shape, t)
        else:
            self._check_indices(y_shape, t)

    def _check_probabilities(self, y_shape: Shape, t: Array) -> None:
        loss = type(self).__name__
        if t.dtype.kind != "f":
            raise ValueError(
                f"{loss}: a target of the input's shape {y_shape} holds class probabilities "
                f"and must be float, got dtype {t.dtype}"
            )
        if self.ignore_index >= 0:
            raise ValueError(
                f"{loss}: ignore_index is not supported with probability targets (torch "
                f"raises too), got ignore_index={self.ignore_index}"
            )
        _finite(loss, "probability target", t)
        self._check_nonempty(y_shape)

    def _index_shape(self, y_shape: Shape) -> Shape:
        return () if len(y_shape) == 1 else (y_shape[0], *y_shape[2:])

    def _check_indices(self, y_shape: Shape, t: Array) -> None:
        loss = type(self).__name__
        expected = self._index_shape(y_shape)
        also = f" or probabilities of shape {y_shape}" if self.probability_targets else ""
        if len(y_shape) >= 2 and t.ndim >= 1 and t.shape[0] != y_shape[0]:
            raise ValueError(
                f"{loss}: expected target batch size {y_shape[0]} (input shape {y_shape}), "
                f"got target batch size {t.shape[0]} (target shape {t.shape})"
            )
        # NOTE: torch's forward takes a (1,) target for a (C,) input, its backward does not
        if t.shape != expected:
            raise ValueError(
                f"{loss}: expected class indices of shape {expected}{also} for input of "
                f"shape {y_shape}, got target shape {t.shape}"
            )
        if t.dtype.kind not in "iu":
            raise ValueError(
                f"{loss}: expected integer class indices, got dtype {t.dtype} "
                f"(torch refuses non-integer class targets too)"
            )
        C = y_shape[_class_axis(len(y_shape))]
        bad = (t != self.ignore_index) & ((t < 0) | (t >= C))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0]) if t.ndim else ()
            raise ValueError(
                f"{loss}: expected class indices in [0, {C}) or ignore_index="
                f"{self.ignore_index}, got {t[where]} at index {where}"
            )
        if self.reduction == "mean":
            _, w_t = self._index_weights(C, t.reshape(expected))
            if w_t.sum() == 0:
                raise ValueError(
                    f"{loss}: reduction='mean' divides by the total weight of the targets "
                    f"not equal to ignore_index={self.ignore_index}, which is 0 here "
                    f"({int((t == self.ignore_index).sum())} of {t.size} targets ignored); "
                    f"torch returns NaN. Use reduction='sum' or keep a weighted target"
                )

    # -- the effective target weights A --

    def _class_weight(self, C: int) -> Array:
        return np.ones(C) if self.weight is None else self.weight

    def _index_weights(self, C: int, t: Array) -> tuple[Array, Array]:
        """kept ∈ {0, 1} (target ≠ ignore_index) and w_t = weight[t] · kept, shape of t."""
        kept = t != self.ignore_index
        safe = np.where(kept, t, 0)
        return kept, self._class_weight(C)[safe] * kept

    def _target_weights(self, y_shape: Shape, target: Array) -> tuple[Array, float]:
        """A (in y's layout) and the normaliser of L = −Σ A ⊙ log p / norm."""
        axis = _class_axis(len(y_shape))
        C = y_shape[axis]
        w = self._class_weight(C)
        eps = self.label_smoothing
        if self._is_probability_target(y_shape, target):
            q = np.moveaxis(np.asarray(target, dtype=np.float64), axis, -1)  # (N, d1, …, C)
            A = w * ((1.0 - eps) * q + eps / C) if eps > 0 else w * q
            # NOTE: torch's mean divides by N·d1·…, not by the weights
            norm = A.size / C
        else:
            t = target.reshape(self._index_shape(y_shape))  # (N, d1, …) or ()
            kept, w_t = self._index_weights(C, t)
            one_hot = t[..., None] == np.arange(C)  # (N, d1, …, C)
            A = one_hot * w_t[..., None]
            if eps > 0:
                A = (1.0 - eps) * A + (eps / C) * w * kept[..., None]
            norm = float(w_t.sum())
        if self.reduction == "sum":
            norm = 1.0
        return np.moveaxis(A, -1, axis), norm  # back to (N, C, d1, …)


class NLLLoss(_ClassLoss):
    """L = −Σᵢ w_{tᵢ} x_{i,tᵢ} / Σᵢ w_{tᵢ} (ignored i left out),  ∂L/∂x = −A / norm."""

    name = "nll_loss"

    def __call__(self, y: Array, target: Array) -> tuple[float, Array]:
        log_p = _input("NLLLoss", y)
        self.check(log_p.shape, target)
        A, norm = self._target_weights(log_p.shape, np.asarray(target))
        return -_weighted_log_sum(A, log_p) / norm, -A / norm


class CrossEntropyLoss(_ClassLoss):
    """L = −Σ A ⊙ log softmax(z) / norm,  ∂L/∂z = ((Σ_c A) p − A) / norm.

    A: index targets: w_t (1 − ε) one_hot(t) + ε/C w, rows at ignore_index zero,
       norm = Σᵢ w_{tᵢ} over kept rows (mean);
       probability targets q: w ((1 − ε) q + ε/C), norm = N·d1·… (mean).
    """

    name = "cross_entropy"
    probability_targets = True

    def __init__(
        self,
        weight: Array | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, ignore_index, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"CrossEntropyLoss: expected label_smoothing in [0, 1], got {label_smoothing!r}"
                f" (torch silently ignores a negative one)"
            )
        self.label_smoothing = float(label_smoothing)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "label_smoothing": self.label_smoothing}

    def __call__(self, y: Array, target: Array) -> tuple[float, Array]:
        z = _input("CrossEntropyLoss", y)
        self.check(z.shape, target)
        axis = _class_axis(z.ndim)
        A, norm = self._target_weights(z.shape, np.asarray(target))
        log_p = _log_softmax(z, axis)
        p = np.exp(log_p)
        delta = (A.sum(axis=axis, keepdims=True) * p - A) / norm
        return -_weighted_log_sum(A, log_p) / norm, delta


# --- the table -----------------------------------------------------------------------

LOSSES: dict[str, type[Loss]] = {
    cls.name: cls
    for cls in (
        MSELoss,
        L1Loss,
        SmoothL1Loss,
        HuberLoss,
        CrossEntropyLoss,
        NLLLoss,
        BCELoss,
        BCEWithLogitsLoss,
        HalfSquaredError,
    )
}


#: the short names of torch_ref's command line and strategies, for torch's functional names
SHORT_LOSS_NAMES: dict[str, str] = {
    "mse": "mse_loss",
    "l1": "l1_loss",
    "smooth_l1": "smooth_l1_loss",
    "huber": "huber_loss",
    "nll": "nll_loss",
    "bce": "binary_cross_entropy",
    "bce_with_logits": "binary_cross_entropy_with_logits",
}


def get_loss(name: str, **options: Any) -> Loss:
    """The loss called `name` (torch's functional name, or its short name: `mse` for
    `mse_loss`), built with torch's keywords."""
    try:
        cls = LOSSES[SHORT_LOSS_NAMES.get(name, name)]
    except KeyError:
        short = ", ".join(f"{s} ({f})" for s, f in SHORT_LOSS_NAMES.items())
        raise ValueError(
            f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}; "
            f"short names: {short}"
        ) from None
    return cls(**options)
