"""Comparisons: elementwise <, ≤, >, ≥, ==, ≠ of tensors (or a tensor and a number), giving
bool masks. A mask carries no gradient: backward sends none to either operand."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from manual_bp.ops.base import TIE_RTOL, Array, Layer, Shape, near

COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
}


class Compare(Layer):
    """z = a ∘ b (broadcast), a bool mask;  no gradient to a or b."""

    integer_inputs = True

    def __init__(
        self, op: str, n_inputs: int = 2, constant: float | None = None, reflected: bool = False
    ) -> None:
        super().__init__()
        if op not in COMPARISONS:
            raise ValueError(f"unknown comparison {op!r}; known: {', '.join(COMPARISONS)}")
        self.op, self.constant, self.reflected = op, constant, reflected
        self.n_inputs = int(n_inputs)  # type: ignore[misc]  # 1 with a constant, else 2

    def __repr__(self) -> str:
        return f"Compare({self.op!r})"

    def shape(self, *in_shapes: Shape) -> Shape:
        try:
            return tuple(np.broadcast_shapes(*(tuple(s) for s in in_shapes)))
        except ValueError:
            raise ValueError(f"expected shapes that broadcast together, got {in_shapes}") from None

    def forward(self, *a: Array) -> tuple[Array, int]:
        fn = COMPARISONS[self.op]
        if self.n_inputs == 1:
            x, c = a[0], self.constant
            return np.asarray(fn(c, x) if self.reflected else fn(x, c)), 1
        return np.asarray(fn(a[0], a[1])), 2

    def ties(self, *a: Array) -> tuple[Array | None, ...]:
        """Where a and b (or a and the constant) are within rounding distance of each other,
        the mask's value, and every branch taken on it downstream, is rounding's choice."""
        if self.n_inputs == 1:
            return (near(a[0], (self.constant,)),)
        x, y = np.broadcast_arrays(a[0], a[1])
        scale = max(float(np.max(np.abs(x), initial=0.0)), float(np.max(np.abs(y), initial=0.0)))
        close = np.abs(x - y) <= TIE_RTOL * scale
        return tuple(_reduce_to(close, np.shape(v)) for v in a)

    def backward(self, delta: Array, n: int) -> tuple[Any, dict[str, Array]]:
        return (None if n == 1 else (None, None)), {}


def _reduce_to(mask: Array, shape: Shape) -> Array:
    """A broadcast mask brought back to an operand's shape: an entry is marked when any of
    its broadcast copies is."""
    lead = mask.ndim - len(shape)
    if lead:
        mask = mask.any(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and mask.shape[i] != 1)
    return mask.any(axis=axes, keepdims=True) if axes else mask


class LogicalNot(Layer):
    """z = ¬a (a nonzero is true), a bool mask;  no gradient to a."""

    integer_inputs = True
    output_dtype = "bool"

    def shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def forward(self, a: Array) -> tuple[Array, None]:
        return np.logical_not(a), None

    def backward(self, delta: Array, cache: None) -> tuple[None, dict[str, Array]]:
        return None, {}
