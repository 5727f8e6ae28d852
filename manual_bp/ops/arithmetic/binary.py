"""Two- and three-operand elementwise functions, with broadcasting: atan2, hypot,
remainder and fmod, xlogy, lerp, addcmul, logaddexp, fmax/fmin, copysign.

Each is a Layer (see manual_bp.ops.base) with its forward and backward side by side; the
partials are torch's (tools/autograd/derivatives.yaml). Where an input was broadcast, its
gradient is δ summed back (manual_bp.ops.arithmetic.unbroadcast).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.arithmetic.core import _broadcast_shape, _Extremum, _ties_per_input, unbroadcast
from manual_bp.ops.base import TIE_RTOL, Array, Layer, Shape, near

# --- two- and three-operand elementwise functions -----------------------------------------


class _Binary(Layer):
    """z = f(a, b) elementwise (broadcast);  δ_a = unbroadcast(δ ∂f/∂a),  δ_b = unbroadcast(δ
    ∂f/∂b). Subclasses give f and its two partials; a number operand is a 0-d constant."""

    n_inputs = 2

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        return _broadcast_shape((a_shape, b_shape))

    def f(self, a: Array, b: Array) -> Array:
        raise NotImplementedError

    def partials(self, a: Array, b: Array, z: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    def forward(self, a: Array, b: Array) -> tuple[Array, tuple[Array, Array, Array]]:
        self.shape(a.shape, b.shape)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            z = self.f(a, b)
        return z, (a, b, z)

    def backward(
        self, delta: Array, cache: tuple[Array, Array, Array]
    ) -> tuple[tuple[Array, Array], dict[str, Array]]:
        a, b, z = cache
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            da, db = self.partials(a, b, z)
            da, db = delta * da, delta * db
        return (unbroadcast(da, a.shape), unbroadcast(db, b.shape)), {}


class Atan2(_Binary):
    """z = atan2(a, b);  δ_a = δ b / (a² + b²),  δ_b = −δ a / (a² + b²) (atan2_backward)."""

    def f(self, a: Array, b: Array) -> Array:
        return np.arctan2(a, b)

    def partials(self, a: Array, b: Array, z: Array) -> tuple[Array, Array]:
        r = 1.0 / (a * a + b * b)
        return b * r, -a * r


class Hypot(_Binary):
    """z = √(a² + b²);  δ_a = δ a / z,  δ_b = δ b / z (NaN at a = b = 0, as torch's)."""

    def f(self, a: Array, b: Array) -> Array:
        return np.hypot(a, b)

    def partials(self, a: Array, b: Array, z: Array) -> tuple[Array, Array]:
        return a / z, b / z


class Remainder(_Binary):
    """z = a − b ⌊a / b⌋ (the sign of b, Python's %);  δ_a = δ,  δ_b = −δ ⌊a / b⌋.
    z jumps where a / b is an integer: those entries are ties."""

    rounding = staticmethod(np.floor)

    def f(self, a: Array, b: Array) -> Array:
        return np.remainder(a, b)

    def partials(self, a: Array, b: Array, z: Array) -> tuple[Array, Array]:
        q = np.floor_divide(a, b) if self.rounding is np.floor else np.trunc(a / b)
        return np.ones_like(q), -q

    def ties(self, a: Array, b: Array) -> tuple[Array, Array]:
        with np.errstate(divide="ignore", invalid="ignore"):
            q = a / b
        finite = np.isfinite(q)
        tol = TIE_RTOL * max(float(np.max(np.abs(q[finite]), initial=0.0)), 1.0)
        on_jump = finite & (np.abs(q - np.rint(q)) <= tol)
        if self.rounding is np.trunc:
            on_jump &= np.rint(q) != 0  # fmod is continuous across a / b = 0
        return _ties_per_input(on_jump, (a.shape, b.shape))  # type: ignore[return-value]


class Fmod(Remainder):
    """z = a − b trunc(a / b) (the sign of a, C's fmod);  δ_a = δ,  δ_b = −δ trunc(a / b)."""

    rounding = staticmethod(np.trunc)

    def f(self, a: Array, b: Array) -> Array:
        return np.fmod(a, b)


class XLogY(_Binary):
    """z = a log b, 0 where a = 0 (b not NaN);  δ_a = δ log b (0 where a = 0 and b ≤ 0; not
    where a = 0 alone, as torch's),
    δ_b = δ a / b (derivatives.yaml's xlogy). With log1p: z = a log(1 + b), δ_b = δ a/(1 + b)."""

    def __init__(self, log1p: bool = False) -> None:
        super().__init__()
        self.log1p = bool(log1p)

    def __repr__(self) -> str:
        return "XLog1pY" if self.log1p else "XLogY"

    def f(self, a: Array, b: Array) -> Array:
        c = 1.0 + b if self.log1p else b
        logc = np.log1p(b) if self.log1p else np.log(b)
        return np.where((a == 0) & ~np.isnan(c), 0.0, a * logc)

    def partials(self, a: Array, b: Array, z: Array) -> tuple[Array, Array]:
        c = 1.0 + b if self.log1p else b
        logc = np.log1p(b) if self.log1p else np.log(b)
        da = np.where((a == 0) & (c <= 0), 0.0, np.broadcast_to(logc, z.shape))
        return da, a / c


class Lerp(Layer):
    """z = s + w (e − s), formed as torch's kernel (w < ½: s + w(e − s), else e − (e − s)(1 − w));
    δ_s = δ (1 − w),  δ_e = δ w,  δ_w = δ (e − s). Inputs s, e, and w when it is a tensor."""

    def __init__(self, weight: float | None = None) -> None:
        super().__init__()
        self.weight = None if weight is None else float(weight)
        self.n_inputs = 2 if self.weight is not None else 3  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"Lerp(weight={'input' if self.weight is None else self.weight})"

    def shape(self, *in_shapes: Shape) -> Shape:
        return _broadcast_shape(in_shapes)

    def forward(self, s: Array, e: Array, *w: Array) -> tuple[Array, Any]:
        self.shape(s.shape, e.shape, *(x.shape for x in w))
        weight = w[0] if w else np.asarray(self.weight)
        diff = e - s
        z = np.where(np.abs(weight) < 0.5, s + weight * diff, e - diff * (1.0 - weight))
        return z, (s.shape, e.shape, weight, diff)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, ...], dict[str, Array]]:
        s_shape, e_shape, w, diff = cache
        grads = [unbroadcast(delta * (1.0 - w), s_shape), unbroadcast(delta * w, e_shape)]
        if self.weight is None:
            grads.append(unbroadcast(delta * diff, w.shape))
        return tuple(grads), {}


class AddCMul(Layer):
    """z = c + v·a⊙b (addcmul) or c + v·a/b (addcdiv), broadcast;  δ_c = δ,
    addcmul: δ_a = v δ b,  δ_b = v δ a;   addcdiv: δ_a = v δ / b,  δ_b = −δ (v a / b) / b."""

    n_inputs = 3

    def __init__(self, value: float = 1.0, divide: bool = False) -> None:
        super().__init__()
        self.value, self.divide = float(value), bool(divide)

    def __repr__(self) -> str:
        return f"{'AddCDiv' if self.divide else 'AddCMul'}(value={self.value})"

    def shape(self, *in_shapes: Shape) -> Shape:
        return _broadcast_shape(in_shapes)

    def forward(self, c: Array, a: Array, b: Array) -> tuple[Array, Any]:
        self.shape(c.shape, a.shape, b.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            ab = a / b if self.divide else a * b
        return c + self.value * ab, (c.shape, a, b)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, ...], dict[str, Array]]:
        c_shape, a, b = cache
        v = self.value
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.divide:
                da, db = delta * (v / b), -delta * (v * a / b) / b
            else:
                da, db = delta * (b * v), delta * (a * v)
        return (unbroadcast(delta, c_shape), unbroadcast(da, a.shape), unbroadcast(db, b.shape)), {}


class LogAddExp(_Binary):
    """z = log(eᵃ + eᵇ) (base 2: log₂(2ᵃ + 2ᵇ));  δ_a = δ / (1 + base^(b − a)),
    δ_b = δ / (1 + base^(a − b)) (torch's logaddexp backward)."""

    def __init__(self, base2: bool = False) -> None:
        super().__init__()
        self.base2 = bool(base2)

    def __repr__(self) -> str:
        return "LogAddExp2" if self.base2 else "LogAddExp"

    def f(self, a: Array, b: Array) -> Array:
        return np.logaddexp2(a, b) if self.base2 else np.logaddexp(a, b)

    def partials(self, a: Array, b: Array, z: Array) -> tuple[Array, Array]:
        power = np.exp2 if self.base2 else np.exp
        return 1.0 / (1.0 + power(b - a)), 1.0 / (1.0 + power(a - b))


class FMax(_Extremum):
    """z = fmax(a, b) (max ignoring NaN; NaN inputs are refused before);  at a tie δ goes to a
    whole (derivatives.yaml's fmax: δ_a = δ [a ≥ b], δ_b = δ [a < b]), unlike maximum."""

    pick = staticmethod(np.fmax)

    def backward(
        self, delta: Array, cache: tuple[Array, Array]
    ) -> tuple[tuple[Array, Array], dict[str, Array]]:
        a, b = cache
        a_wins = a >= b if type(self).pick is np.fmax else a <= b
        da, db = np.where(a_wins, delta, 0.0), np.where(a_wins, 0.0, delta)
        return (unbroadcast(da, a.shape), unbroadcast(db, b.shape)), {}


class FMin(FMax):
    """z = fmin(a, b);  δ_a = δ [a ≤ b],  δ_b = δ [a > b] (a tie goes to a)."""

    pick = staticmethod(np.fmin)


class CopySign(_Binary):
    """z = |a| with the sign of b;  δ_a = δ z / a (0 where a = 0: copysign_tensor_self_backward),
    δ_b = 0. Ties: a near 0 (its derivative jumps) and b near 0 (z jumps)."""

    def f(self, a: Array, b: Array) -> Array:
        return np.copysign(a, b)

    def partials(self, a: Array, b: Array, z: Array) -> tuple[Array, Array]:
        return np.where(a == 0, 0.0, z / np.where(a == 0, 1.0, a)), np.zeros(np.shape(b))

    def ties(self, a: Array, b: Array) -> tuple[Array, Array]:
        return near(a, (0.0,)), near(b, (0.0,))


class NextAfter(_Binary):
    """z = the next float after a toward b;  δ_a = δ, δ_b = 0 (torch's nextafter derivative:
    z is a up to one unit in the last place)."""

    def f(self, a: Array, b: Array) -> Array:
        return np.nextafter(a, b)

    def partials(self, a: Array, b: Array, z: Array) -> tuple[Array, Array]:
        return np.ones(np.shape(a)), np.zeros(np.shape(b))


class Frexp(Layer):
    """(m, e) = frexp(a), a = m · 2^e with ½ ≤ |m| < 1 (0 for 0);  δ_a = δ_m / 2^e (the
    exponent, an integer, carries none)."""

    n_outputs = 2
    output_dtypes = ("float", "int")

    def shape(self, in_shape: Shape) -> tuple[Shape, Shape]:  # type: ignore[override]
        return tuple(in_shape), tuple(in_shape)

    def forward(self, a: Array) -> tuple[tuple[Array, Array], Array]:
        m, e = np.frexp(a)
        return (m, e.astype(np.int64)), e

    def backward(self, delta: tuple[Array | None, Any], e: Array) -> tuple[Array, dict]:
        if delta[0] is None:
            return np.zeros(e.shape), {}
        return delta[0] / np.exp2(e), {}


class Fill(Layer):
    """z = a filled with a value (torch.fill, fill_, zero_): a number, or a 0-d tensor as a
    second input;  δ_a = 0,  δ_value = Σ δ."""

    def __init__(self, value: float | None = None) -> None:
        super().__init__()
        self.value = value  # (None: the value is the second input)
        self.n_inputs = 1 if value is not None else 2  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"Fill({'input' if self.value is None else self.value})"

    def shape(self, a_shape: Shape, v_shape: Shape = ()) -> Shape:
        if tuple(v_shape) != ():
            raise ValueError(f"fill: expected a 0-d value, got shape {tuple(v_shape)}")
        return tuple(a_shape)

    def forward(self, a: Array, v: Array | None = None) -> tuple[Array, Shape]:
        value = self.value if v is None else v
        return np.full(a.shape, value, dtype=np.float64), a.shape

    def backward(self, delta: Array, shape: Shape) -> tuple[Any, dict]:
        if self.value is not None:
            return np.zeros(shape), {}
        return (np.zeros(shape), np.asarray(delta.sum())), {}
