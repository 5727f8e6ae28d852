"""The small layers a traced torch model is wired with: arithmetic, cat, mean, reshape, permute.

Each is a Layer (see manual_bp.layers) with its forward and backward side by side. Layers
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

from manual_bp.layers import Array, Layer, Shape


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


def _one_or_tuple(deltas: list[Array]) -> Any:
    """The network's convention: a one-input layer returns δ_prev itself, not a 1-tuple."""
    return deltas[0] if len(deltas) == 1 else tuple(deltas)


def _axis(d: int, ndim: int, what: str, in_shape: Shape) -> int:
    """torch's dim wrapping: d in [−ndim, ndim), else ValueError."""
    if not -ndim <= d < ndim:
        raise ValueError(
            f"expected {what} in [{-ndim}, {ndim - 1}] for an input of shape {tuple(in_shape)}, "
            f"got {d}"
        )
    return d % ndim


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


# --- joining and reducing --------------------------------------------------------------


class Cat(Layer):
    """z = torch.cat(a, dim);  δ_prev_i = the slice of δ along dim where aᵢ was placed."""

    def __init__(self, dim: int = 0, n_inputs: int = 2) -> None:
        super().__init__()
        if n_inputs < 1:
            raise ValueError(f"expected n_inputs >= 1, got {n_inputs}")
        self.dim = int(dim)
        self.n_inputs = int(n_inputs)  # type: ignore[misc]  # variadic: set per instance

    def __repr__(self) -> str:
        return f"Cat(dim={self.dim}, n_inputs={self.n_inputs})"

    def shape(self, *in_shapes: Shape) -> Shape:
        shapes = [tuple(s) for s in in_shapes]
        if len(shapes) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} inputs, got {len(shapes)}")
        ndim = len(shapes[0])
        if ndim == 0 or any(len(s) != ndim for s in shapes):
            raise ValueError(
                f"expected inputs of one rank >= 1 (torch's legacy skip of 1-d empty "
                f"inputs is not supported), got shapes {shapes}"
            )
        d = _axis(self.dim, ndim, "dim", shapes[0])
        rest = {s[:d] + s[d + 1 :] for s in shapes}
        if len(rest) > 1:
            raise ValueError(f"expected shapes equal except on dim {self.dim}, got {shapes}")
        return (*shapes[0][:d], sum(s[d] for s in shapes), *shapes[0][d + 1 :])

    def forward(self, *a: Array) -> tuple[Array, tuple[int, list[int]]]:
        self.shape(*(x.shape for x in a))
        d = self.dim % a[0].ndim
        return np.concatenate(a, axis=d), (d, [x.shape[d] for x in a])

    def backward(self, delta: Array, cache: tuple[int, list[int]]) -> tuple[Any, dict[str, Array]]:
        d, sizes = cache
        return _one_or_tuple(np.split(delta, np.cumsum(sizes)[:-1], axis=d)), {}


class Sum(Layer):
    """z = Σ a over dims (all when dims is None or ());  δ_prev = δ broadcast back."""

    def __init__(self, dims: int | Sequence[int] | None = None, keepdim: bool = False) -> None:
        super().__init__()
        self.dims = (int(dims),) if isinstance(dims, (int, np.integer)) else dims
        self.dims = None if self.dims is None else tuple(int(d) for d in self.dims)
        self.keepdim = bool(keepdim)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dims={self.dims}, keepdim={self.keepdim})"

    def _axes(self, in_shape: Shape) -> tuple[int, ...]:
        ndim = len(in_shape)
        if not self.dims:  # None or (): torch reduces over every dim
            return tuple(range(ndim))
        axes = tuple(_axis(d, max(ndim, 1), "dims", in_shape) for d in self.dims)
        if len(set(axes)) != len(axes):
            raise ValueError(f"expected distinct dims, got {self.dims} for shape {in_shape}")
        return axes if ndim else ()  # NOTE: a 0-d input takes dim 0 or −1, reducing nothing

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        axes = self._axes(in_shape)
        if self.keepdim:
            return tuple(1 if i in axes else n for i, n in enumerate(in_shape))
        return tuple(n for i, n in enumerate(in_shape) if i not in axes)

    def _count(self, in_shape: Shape, axes: tuple[int, ...]) -> int:
        return 1

    def forward(self, a: Array) -> tuple[Array, tuple[Shape, tuple[int, ...]]]:
        self.shape(a.shape)
        axes = self._axes(a.shape)
        z = a.sum(axis=axes, keepdims=self.keepdim) / self._count(a.shape, axes)
        return z, (a.shape, axes)

    def backward(
        self, delta: Array, cache: tuple[Shape, tuple[int, ...]]
    ) -> tuple[Array, dict[str, Array]]:
        in_shape, axes = cache
        if not self.keepdim:
            delta = np.expand_dims(delta, axes)  # put the reduced axes back, as size 1
        return np.broadcast_to(delta / self._count(in_shape, axes), in_shape).copy(), {}


class Mean(Sum):
    """z = mean of a over dims (all when dims is None or ());  δ_prev = δ / m broadcast back."""

    def shape(self, in_shape: Shape) -> Shape:
        out = super().shape(in_shape)
        if self._count(tuple(in_shape), self._axes(tuple(in_shape))) == 0:
            raise ValueError(
                f"expected nonempty dims to average over, got dims {self.dims} of shape "
                f"{tuple(in_shape)} (torch would return nan)"
            )
        return out

    def _count(self, in_shape: Shape, axes: tuple[int, ...]) -> int:
        return int(np.prod([in_shape[i] for i in axes], dtype=np.int64))


# --- shape ----------------------------------------------------------------------------


class Reshape(Layer):
    """z = a reshaped to `shape` (one −1 at most, inferred);  δ_prev = δ reshaped back.

    Also view(); torch's view can refuse a non-contiguous input, which values cannot be.
    """

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.target = tuple(int(n) for n in shape)

    def __repr__(self) -> str:
        return f"Reshape({self.target})"

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        numel = int(np.prod(in_shape, dtype=np.int64))
        bad = [(i, n) for i, n in enumerate(self.target) if n < -1]
        if bad or self.target.count(-1) > 1:
            raise ValueError(
                f"expected a shape of sizes >= 0 with at most one -1, got {self.target}"
            )
        known = int(np.prod([n for n in self.target if n != -1], dtype=np.int64))
        if -1 in self.target:
            if known == 0:
                raise ValueError(
                    f"cannot reshape {in_shape} into {self.target}: with another size 0 the "
                    "size of -1 is ambiguous"
                )
            if numel % known:
                raise ValueError(f"cannot reshape {in_shape} ({numel} elements) into {self.target}")
            return tuple(numel // known if n == -1 else n for n in self.target)
        if known != numel:
            raise ValueError(f"cannot reshape {in_shape} ({numel} elements) into {self.target}")
        return self.target

    def forward(self, a: Array) -> tuple[Array, Shape]:
        return a.reshape(self.shape(a.shape)), a.shape

    def backward(self, delta: Array, in_shape: Shape) -> tuple[Array, dict[str, Array]]:
        return delta.reshape(in_shape), {}


class Permute(Layer):
    """z = a.permute(dims);  δ_prev = δ.permute(dims⁻¹)."""

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.dims = tuple(int(d) for d in dims)

    def __repr__(self) -> str:
        return f"Permute({self.dims})"

    def _perm(self, in_shape: Shape) -> tuple[int, ...]:
        ndim = len(in_shape)
        if len(self.dims) != ndim:
            raise ValueError(
                f"expected {len(self.dims)}-d input for permute {self.dims}, got shape {in_shape}"
            )
        perm = tuple(_axis(d, max(ndim, 1), "dims", in_shape) for d in self.dims)
        if sorted(perm) != list(range(ndim)):
            raise ValueError(f"expected a permutation of 0..{ndim - 1}, got {self.dims}")
        return perm

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        return tuple(in_shape[i] for i in self._perm(in_shape))

    def forward(self, a: Array) -> tuple[Array, tuple[int, ...]]:
        perm = self._perm(a.shape)
        return a.transpose(perm), perm

    def backward(self, delta: Array, perm: tuple[int, ...]) -> tuple[Array, dict[str, Array]]:
        return delta.transpose(np.argsort(perm)), {}


class Transpose(Layer):
    """z = a.transpose(dim0, dim1);  δ_prev = δ.transpose(dim0, dim1)."""

    def __init__(self, dim0: int, dim1: int) -> None:
        super().__init__()
        self.dim0, self.dim1 = int(dim0), int(dim1)

    def __repr__(self) -> str:
        return f"Transpose({self.dim0}, {self.dim1})"

    def _axes(self, in_shape: Shape) -> tuple[int, int]:
        ndim = max(len(in_shape), 1)  # torch lets a 0-d tensor transpose dims 0 and −1
        return (_axis(self.dim0, ndim, "dim0", in_shape), _axis(self.dim1, ndim, "dim1", in_shape))

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        i, j = self._axes(in_shape)
        if not in_shape:
            return ()
        out = list(in_shape)
        out[i], out[j] = out[j], out[i]
        return tuple(out)

    def forward(self, a: Array) -> tuple[Array, tuple[int, int]]:
        i, j = self._axes(a.shape)
        return (np.swapaxes(a, i, j) if a.ndim else a), (i, j)

    def backward(self, delta: Array, axes: tuple[int, int]) -> tuple[Array, dict[str, Array]]:
        return (np.swapaxes(delta, *axes) if delta.ndim else delta), {}
