"""Elementwise arithmetic of tensors and constants, with broadcasting.

    Add, Sub, Mul            a + b, a − b, a ⊙ b
    Scale, Div, AddConstant  c·a, a / c, a + c           (c a number)
    DivTensor, RDiv          a / b (rounding modes too), c / b
    Pow, RPow                a^b, c^b                    (a^c is the activation "pow")
    Maximum, Minimum         max(a, b), min(a, b)        (δ split in halves at a tie)
    Where, MaskedFill        cond ? x : y, mask ? value : x   (a constant condition)

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

from manual_bp.ops.base import TIE_RTOL, Array, Layer, Shape, _one_or_tuple, near


def unbroadcast(g: Array, shape: Shape) -> Array:
    """Σ of g over the axes along which an array of `shape` was broadcast to g.shape."""
    if g.shape == shape:  # not broadcast
        return g
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead))) if lead else g  # axes the input lacked
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=stretched, keepdims=True) if stretched else g


def _broadcast_shape(in_shapes: Sequence[Shape]) -> Shape:
    """NumPy's (and torch's) broadcast of the shapes, right-aligned."""
    shapes = [tuple(s) for s in in_shapes]
    if len(set(shapes)) == 1:  # one shape: nothing to broadcast
        return shapes[0]
    n = max(map(len, shapes), default=0)
    out = [1] * n
    for s in shapes:  # right-aligned: s's dims are out's last len(s)
        for i, size in enumerate(s, n - len(s)):
            if size != 1 and size != out[i]:
                if out[i] != 1:  # two sizes other than 1 on one axis
                    listed = ", ".join(str(s) for s in shapes)
                    raise ValueError(f"expected shapes that broadcast together, got {listed}")
                out[i] = size
    return tuple(out)


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
        shapes = [x.shape for x in a]
        self.shape(*shapes)
        z = a[0]
        for x in a[1:]:
            z = z + x
        return z, shapes

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


# --- division, powers, maxima of tensors -----------------------------------------------


def _ties_per_input(mask: Array, shapes: Sequence[Shape]) -> tuple[Array, ...]:
    """A tie mask over the broadcast output, as a mask of each input: an input entry is tied
    if any output entry it reaches is (unbroadcast of the mask, then > 0)."""
    return tuple(unbroadcast(mask.astype(np.float64), s) > 0 for s in shapes)


_ROUNDING_MODES = (None, "trunc", "floor")


class DivTensor(Layer):
    """z = a / b (broadcast);  δ_a = unbroadcast(δ / b),  δ_b = −unbroadcast(δ (a / b) / b).

    With rounding_mode 'trunc' or 'floor' z is piecewise constant and both δ are 0, as in
    torch (div_tensor_self_backward). b = 0 gives torch's inf/NaN; the oracle refuses them.
    """

    n_inputs = 2

    def __init__(self, rounding_mode: str | None = None) -> None:
        super().__init__()
        if rounding_mode not in _ROUNDING_MODES:
            raise ValueError(
                f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}"
            )
        self.rounding_mode = rounding_mode

    def __repr__(self) -> str:
        return f"DivTensor(rounding_mode={self.rounding_mode!r})"

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        return _broadcast_shape((a_shape, b_shape))

    def _quotient(self, a: Array, b: Array) -> Array:
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.rounding_mode == "floor":
                return np.floor_divide(a, b)  # Python's //, as torch's div_floor
            q = a / b
            return np.trunc(q) if self.rounding_mode == "trunc" else q

    def forward(self, a: Array, b: Array) -> tuple[Array, tuple[Array, Array]]:
        self.shape(a.shape, b.shape)
        return self._quotient(a, b), (a, b)

    def backward(
        self, delta: Array, cache: tuple[Array, Array]
    ) -> tuple[tuple[Array, Array], dict[str, Array]]:
        a, b = cache
        if self.rounding_mode is not None:  # NOTE: piecewise constant: torch's zeros
            return (np.zeros(a.shape), np.zeros(b.shape)), {}
        with np.errstate(divide="ignore", invalid="ignore"):
            da = delta / b
            db = -delta * ((a / b) / b)
        return (unbroadcast(da, a.shape), unbroadcast(db, b.shape)), {}

    def ties(self, a: Array, b: Array) -> tuple[Array, Array] | None:
        """With a rounding mode, z jumps where a / b is an integer."""
        if self.rounding_mode is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            q = a / b
        finite = np.isfinite(q)
        tol = TIE_RTOL * float(np.max(np.abs(q[finite]), initial=0.0))
        on_jump = finite & (np.abs(q - np.rint(q)) <= tol)
        if self.rounding_mode == "trunc":
            on_jump &= np.rint(q) != 0  # trunc is continuous across 0
        return _ties_per_input(on_jump, (a.shape, b.shape))  # type: ignore[return-value]


class RDiv(_Constant):
    """z = c / b, formed as torch does (c · (1/b));  δ_prev = −(c δ) ⊙ (1/b)²."""

    def forward(self, b: Array) -> tuple[Array, Array]:
        with np.errstate(divide="ignore"):
            r = 1.0 / b
        return r * self.c, r

    def backward(self, delta: Array, r: Array) -> tuple[Array, dict[str, Array]]:
        with np.errstate(invalid="ignore"):
            return -(delta * self.c) * (r * r), {}


class Pow(Layer):
    """z = a^b (broadcast);  δ_a = δ b a^{b−1} (0 where b = 0),
    δ_b = δ z log a (0 where a = 0 and b ≥ 0): pow_backward_self / pow_backward_exponent."""

    n_inputs = 2

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        return _broadcast_shape((a_shape, b_shape))

    def forward(self, a: Array, b: Array) -> tuple[Array, tuple[Array, Array, Array]]:
        self.shape(a.shape, b.shape)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            z = np.power(a, b)
        return z, (a, b, z)

    def backward(
        self, delta: Array, cache: tuple[Array, Array, Array]
    ) -> tuple[tuple[Array, Array], dict[str, Array]]:
        a, b, z = cache
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            da = np.where(b == 0.0, 0.0, delta * (b * np.power(a, b - 1.0)))
            db = delta * np.where((a == 0.0) & (b >= 0.0), 0.0, z * np.log(a))
        return (unbroadcast(da, a.shape), unbroadcast(db, b.shape)), {}

    def ties(self, a: Array, b: Array) -> tuple[Array, Array]:
        """The branches at a = 0 (z log a → 0, a^{b−1} → inf) and at b = 0."""
        return near(a, (0.0,)), near(b, (0.0,))


class RPow(_Constant):
    """z = c^b;  δ_prev = δ z log c (0 where c = 0 and b ≥ 0: pow_backward_exponent)."""

    def forward(self, b: Array) -> tuple[Array, tuple[Array, Array]]:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            z = np.power(self.c, b)
        return z, (b, z)

    def backward(self, delta: Array, cache: tuple[Array, Array]) -> tuple[Array, dict[str, Array]]:
        b, z = cache
        with np.errstate(divide="ignore", invalid="ignore"):
            dz_db = z * np.log(self.c)  # c = 0: log c = −inf
        if self.c == 0.0:
            dz_db = np.where(b >= 0.0, 0.0, dz_db)
        return delta * dz_db, {}

    def ties(self, b: Array) -> tuple[Array] | None:
        """0^b jumps at b = 0 (0, 1, inf); any other base is smooth."""
        return (near(b, (0.0,)),) if self.c == 0.0 else None


class _Extremum(Layer):
    """maximum / minimum of two tensors; torch halves δ between the two at a tie."""

    n_inputs = 2
    pick: Any = None  # np.maximum or np.minimum

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        return _broadcast_shape((a_shape, b_shape))

    def forward(self, a: Array, b: Array) -> tuple[Array, tuple[Array, Array]]:
        self.shape(a.shape, b.shape)
        return type(self).pick(a, b), (a, b)

    def backward(
        self, delta: Array, cache: tuple[Array, Array]
    ) -> tuple[tuple[Array, Array], dict[str, Array]]:
        a, b = cache
        a_wins = a > b if type(self).pick is np.maximum else a < b
        b_wins = b > a if type(self).pick is np.maximum else b < a
        half = np.where(a == b, 0.5 * delta, delta)  # NOTE: a tie splits δ in two halves
        da, db = np.where(b_wins, 0.0, half), np.where(a_wins, 0.0, half)
        return (unbroadcast(da, a.shape), unbroadcast(db, b.shape)), {}

    def ties(self, a: Array, b: Array) -> tuple[Array, Array]:
        scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
        tied = np.abs(a - b) <= TIE_RTOL * scale
        return _ties_per_input(tied, (a.shape, b.shape))  # type: ignore[return-value]


class Maximum(_Extremum):
    """z = max(a, b) (broadcast);  δ_a = δ ([a > b] + ½[a = b]),  δ_b = δ ([b > a] + ½[a = b])."""

    pick = staticmethod(np.maximum)


class Minimum(_Extremum):
    """z = min(a, b) (broadcast);  δ_a = δ ([a < b] + ½[a = b]),  δ_b = δ ([b < a] + ½[a = b])."""

    pick = staticmethod(np.minimum)


# --- selection by a constant condition --------------------------------------------------


def _condition(cond: Array, what: str) -> Array:
    if cond.dtype != np.bool_:
        raise ValueError(f"{what}: expected a boolean condition, got dtype {cond.dtype}")
    return cond


class Where(Layer):
    """z = cond ? x : y (broadcast; x or y may be a number);  δ_x = unbroadcast(δ ⊙ cond),
    δ_y = unbroadcast(δ ⊙ ¬cond). The condition is an input that carries no gradient (a
    buffer, a fixed mask): its δ is None.

    Inputs, in order: the condition, then x and y where they are tensors (a number given
    here as x or y takes that place)."""

    integer_inputs = True  # the condition is bool

    def __init__(self, x: float | None = None, y: float | None = None) -> None:
        super().__init__()
        self.x = None if x is None else float(x)
        self.y = None if y is None else float(y)
        for name, c in (("x", self.x), ("y", self.y)):
            if c is not None and np.isnan(c):  # (±inf is a fill: torch.where(m, x, -inf))
                raise ValueError(f"where: expected a number other than NaN as {name}, got {c}")
        self.n_inputs = 1 + (self.x is None) + (self.y is None)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"Where(x={self.x}, y={self.y})"

    def shape(self, *in_shapes: Shape) -> Shape:
        if len(in_shapes) != self.n_inputs:
            raise ValueError(f"where: expected {self.n_inputs} inputs, got {len(in_shapes)}")
        return _broadcast_shape(in_shapes)

    def _operands(self, tensors: Sequence[Array]) -> tuple[Array, Array]:
        rest = list(tensors)
        x = np.asarray(self.x) if self.x is not None else rest.pop(0)
        y = np.asarray(self.y) if self.y is not None else rest.pop(0)
        return x, y

    def forward(self, cond: Array, *tensors: Array) -> tuple[Array, tuple[Array, list[Shape]]]:
        self.shape(cond.shape, *(t.shape for t in tensors))
        _condition(cond, "where")
        x, y = self._operands(tensors)
        return np.where(cond, x, y), (cond, [t.shape for t in tensors])

    def backward(
        self, delta: Array, cache: tuple[Array, list[Shape]]
    ) -> tuple[Any, dict[str, Array]]:
        cond, shapes = cache
        grads: list[Any] = [None]  # the condition: no gradient
        it = iter(shapes)
        if self.x is None:
            grads.append(unbroadcast(np.where(cond, delta, 0.0), next(it)))
        if self.y is None:
            grads.append(unbroadcast(np.where(cond, 0.0, delta), next(it)))
        return _one_or_tuple(grads), {}


class MaskedFill(Layer):
    """z = mask ? value : x (mask and x broadcast);  δ_x = unbroadcast(δ ⊙ ¬mask).
    Inputs: x, then the mask (a constant: its δ is None). The value may be ±inf (a causal
    mask before softmax, as GPT code writes it) or NaN (a mark of what was not computed):
    δ_x does not depend on it."""

    n_inputs = 2
    integer_inputs = True  # the mask is bool

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = float(value)

    def __repr__(self) -> str:
        return f"MaskedFill({self.value})"

    def shape(self, x_shape: Shape, mask_shape: Shape) -> Shape:
        return _broadcast_shape((x_shape, mask_shape))

    def forward(self, x: Array, mask: Array) -> tuple[Array, tuple[Array, Shape]]:
        self.shape(x.shape, mask.shape)
        _condition(mask, "masked_fill")
        return np.where(mask, self.value, x), (mask, x.shape)

    def backward(
        self, delta: Array, cache: tuple[Array, Shape]
    ) -> tuple[tuple[Array, None], dict[str, Array]]:
        mask, x_shape = cache
        return (unbroadcast(np.where(mask, 0.0, delta), x_shape), None), {}
