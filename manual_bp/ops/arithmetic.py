"""Elementwise arithmetic of tensors and constants, with broadcasting.

Each is a Layer (see manual_bp.ops.base) with its forward and backward side by side. Layers
with several inputs have `n_inputs` > 1 and return a tuple of δ_prev, one per input, in
the order the inputs were given. Constructors take plain numbers and tuples, as a torch.fx
graph's node arguments are.

Broadcasting follows NumPy's rules, which are torch's. Where an input was broadcast
along an axis, its gradient is δ summed over that axis: `unbroadcast` below.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape, _one_or_tuple


def unbroadcast(g: Array, shape: Shape) -> Array:
    """Σ of g over the axes along which an array of `shape` was broadcast to g.shape."""
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead))) if lead else g  # axes the input lacked
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=stretched, keepdims=True) if stretched else g


def _broadcast_shape(in_shapes: Sequence[Shape]) -> Shape:
    try:
        return tuple(np.broadcast_shapes(*(tuple(s) for s in in_shapes)))
    except ValueError:
        shapes = ", ".join(str(tuple(s)) for s in in_shapes)
        raise ValueError(f"expected shapes that broadcast together, got {shapes}") from None


# --- elementwise arithmetic of tensors -------------------------------------------------


class Add(Layer):
    """z = Σᵢ aᵢ (broadcast);  δ_prev_i = unbroadcast(δ, shape of aᵢ)."""

    def __init__(self, n_inputs: int = 2) -> None:
        super().__init__()
        if n_inputs < 1:
            raise ValueError(f"expected n_inputs >= 1, got {n_inputs}")
        self.n_inputs = int(n_inputs)  # type: ignore[misc]  # variadic: set per instance

    def __repr__(self) -> str:
        return f"Add(n_inputs={self.n_inputs})"

    def shape(self, *in_shapes: Shape) -> Shape:
        if len(in_shapes) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} inputs, got {len(in_shapes)}")
        return _broadcast_shape(in_shapes)

    def forward(self, *a: Array) -> tuple[Array, list[Shape]]:
        self.shape(*(x.shape for x in a))
        z = a[0]
        for x in a[1:]:
            z = z + x
        return z, [x.shape for x in a]

    def backward(self, delta: Array, in_shapes: list[Shape]) -> tuple[Any, dict[str, Array]]:
        return _one_or_tuple([unbroadcast(delta, s) for s in in_shapes]), {}


class Sub(Layer):
    """z = a − b (broadcast);  δ_a = unbroadcast(δ),  δ_b = −unbroadcast(δ)."""

    n_inputs = 2

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        return _broadcast_shape((a_shape, b_shape))

    def forward(self, a: Array, b: Array) -> tuple[Array, tuple[Shape, Shape]]:
        self.shape(a.shape, b.shape)
        return a - b, (a.shape, b.shape)

    def backward(
        self, delta: Array, shapes: tuple[Shape, Shape]
    ) -> tuple[tuple[Array, Array], dict[str, Array]]:
        a_shape, b_shape = shapes
        return (unbroadcast(delta, a_shape), -unbroadcast(delta, b_shape)), {}


class Mul(Layer):
    """z = a ⊙ b (broadcast);  δ_a = unbroadcast(δ ⊙ b),  δ_b = unbroadcast(δ ⊙ a)."""

    n_inputs = 2

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        return _broadcast_shape((a_shape, b_shape))

    def forward(self, a: Array, b: Array) -> tuple[Array, tuple[Array, Array]]:
        self.shape(a.shape, b.shape)
        return a * b, (a, b)

    def backward(
        self, delta: Array, cache: tuple[Array, Array]
    ) -> tuple[tuple[Array, Array], dict[str, Array]]:
        a, b = cache
        return (unbroadcast(delta * b, a.shape), unbroadcast(delta * a, b.shape)), {}


# --- arithmetic with a constant --------------------------------------------------------


class _Constant(Layer):
    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = float(c)
        if not np.isfinite(self.c):
            raise ValueError(f"expected a finite constant, got {c}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.c})"

    def shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)


class Scale(_Constant):
    """z = c·a;  δ_prev = c·δ.  (x * c, c * x, and −x as Scale(−1).)"""

    def forward(self, a: Array) -> tuple[Array, None]:
        return self.c * a, None

    def backward(self, delta: Array, cache: None) -> tuple[Array, dict[str, Array]]:
        return self.c * delta, {}


class Div(_Constant):
    """z = a / c;  δ_prev = δ / c.  Divides (as torch does), rather than scaling by 1/c."""

    def __init__(self, c: float) -> None:
        super().__init__(c)
        if self.c == 0:
            raise ValueError("expected a nonzero divisor, got 0 (torch would return inf/nan)")

    def forward(self, a: Array) -> tuple[Array, None]:
        return a / self.c, None

    def backward(self, delta: Array, cache: None) -> tuple[Array, dict[str, Array]]:
        return delta / self.c, {}


class AddConstant(_Constant):
    """z = a + c;  δ_prev = δ.  (x + c, x − c as AddConstant(−c).)"""

    def forward(self, a: Array) -> tuple[Array, None]:
        return a + self.c, None

    def backward(self, delta: Array, cache: None) -> tuple[Array, dict[str, Array]]:
        return delta, {}
