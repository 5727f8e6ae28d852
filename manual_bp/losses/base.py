"""The loss protocol (`Loss`: check, then the value and ∂L/∂y) and the checks every loss
runs on its arguments before any arithmetic."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from manual_bp.ops.activations import sigmoid as _sigmoid_activation

Array = np.ndarray
Shape = tuple[int, ...]

_REDUCTIONS = ("mean", "sum")

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

    #: the loss also gives its terms unreduced (reduction='none'): one per element for the
    #: elementwise losses, one per sample for the per-sample ones (`output_shape`, `chain`)
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

    def output_shape(self, y_shape: Shape) -> Shape:
        """The loss's shape: a scalar, or with reduction='none' one term per element of y."""
        return tuple(y_shape) if self.reduction == "none" else ()

    def chain(self, delta: Array, dL_dy: Array) -> Array:
        """δ_y = δ · ∂ℓ/∂y (δ a scalar), or δ ⊙ ∂ℓ/∂y for one term per element."""
        return delta * dL_dy

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
