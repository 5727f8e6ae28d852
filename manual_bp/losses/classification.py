"""Cross-entropy and NLL along the class axis: L = −Σ A ⊙ log p / norm,
∂L/∂z = ((Σ_c A) p − A) / norm, p = softmax(z) (A the effective target weights)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from manual_bp.losses.base import (
    Array,
    Loss,
    Shape,
    _finite,
    _float_param,
    _input,
    _numeric,
)

# --- classification: log-softmax along the class axis -------------------------------


def _class_axis(ndim: int) -> int:
    """torch's rule: the class axis is 0 for an unbatched (C,) input, else 1."""
    return 0 if ndim == 1 else 1


def _class_axis_to(a: Array, axis: int) -> Array:
    """np.moveaxis(a, -1, axis): the same view, without its per-call argument checks (~3 µs,
    a tenth of a small pass's loss)."""
    order = list(range(a.ndim - 1))
    order.insert(axis, a.ndim - 1)
    return a.transpose(order)


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
        if len(y_shape) >= 2 and t.ndim >= 1 and t.shape[0] != y_shape[0]:
            raise ValueError(
                f"{loss}: expected target batch size {y_shape[0]} (input shape {y_shape}), "
                f"got target batch size {t.shape[0]} (target shape {t.shape})"
            )
        # NOTE: torch's forward takes a (1,) target for a (C,) input, its backward does not
        if t.shape != expected:
            also = f" or probabilities of shape {y_shape}" if self.probability_targets else ""
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
        if self.weight is None and t.size:  # the common case, in two reductions
            lo, hi = int(np.minimum.reduce(t, axis=None)), int(np.maximum.reduce(t, axis=None))
            if 0 <= lo and hi < C and not lo <= self.ignore_index <= hi:
                return  # every index in [0, C), none ignored: nothing below can fail
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
        if self.weight is None:  # w_t = 1 · kept
            return kept, kept.astype(np.float64)
        safe = np.where(kept, t, 0)
        return kept, self._class_weight(C)[safe] * kept

    def _target_weights(self, y_shape: Shape, target: Array) -> tuple[Array, float]:
        """A (in y's layout) and the normaliser of L = −Σ A ⊙ log p / norm."""
        axis = _class_axis(len(y_shape))
        C = y_shape[axis]
        eps = self.label_smoothing
        if self._is_probability_target(y_shape, target):
            w = self._class_weight(C)
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
                A = (1.0 - eps) * A + (eps / C) * self._class_weight(C) * kept[..., None]
            norm = float(w_t.sum())
        if self.reduction == "sum":
            norm = 1.0
        return _class_axis_to(A, axis), norm  # back to (N, C, d1, …)


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
