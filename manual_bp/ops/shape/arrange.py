"""Layers that move, repeat or pick entries by a rule: expand, repeat, tile, roll,
flip, movedim, unflatten, the triangles and diagonals; δ_prev is δ moved back (summed
where an entry was used more than once; see manual_bp.ops.shape).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from manual_bp.ops.arithmetic import unbroadcast
from manual_bp.ops.base import Array, Layer, Shape, _axis
from manual_bp.ops.shape.core import Permute, Reshape

# --- broadcasting and tiling ----------------------------------------------------------


class Expand(Layer):
    """z = a.expand(sizes): size-1 dims stretched, new dims in front (−1 keeps a dim);
    δ_prev = unbroadcast(δ), the sum over what was stretched. Also expand_as, broadcast_to."""

    integer_inputs = True  # moves values: token ids and indices too

    def __init__(self, sizes: Sequence[int]) -> None:
        super().__init__()
        self.sizes = tuple(int(n) for n in sizes)

    def __repr__(self) -> str:
        return f"Expand({self.sizes})"

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        lead = len(self.sizes) - len(in_shape)
        if lead < 0:
            raise ValueError(
                f"expected at least {len(in_shape)} sizes to expand an input of shape "
                f"{in_shape}, got {self.sizes}"
            )
        out = list(self.sizes[:lead])
        if any(n < 0 for n in out):
            raise ValueError(f"expected sizes >= 0 for the new leading dims, got {self.sizes}")
        for n, m in zip(self.sizes[lead:], in_shape, strict=True):
            if n == -1 or n == m:
                out.append(m)
            elif m == 1 and n >= 0:
                out.append(n)
            else:
                raise ValueError(
                    f"cannot expand shape {in_shape} to {self.sizes}: a dim of size {m} can "
                    "only keep its size (or -1); only size-1 dims stretch"
                )
        return tuple(out)

    def forward(self, a: Array) -> tuple[Array, Shape]:
        return np.broadcast_to(a, self.shape(a.shape)), a.shape  # a read-only view, as torch's

    def backward(self, delta: Array, in_shape: Shape) -> tuple[Array, dict[str, Array]]:
        return unbroadcast(delta, in_shape), {}


class Repeat(Layer):
    """z = a.repeat(reps): a tiled reps[i] times along dim i (reps may add leading dims);
    δ_prev = Σ over the copies: δ viewed as (r₀, n₀, r₁, n₁, …) summed over the r axes."""

    integer_inputs = True  # moves values: token ids and indices too

    def __init__(self, reps: Sequence[int]) -> None:
        super().__init__()
        self.reps = tuple(int(r) for r in reps)
        if any(r < 0 for r in self.reps):
            raise ValueError(f"expected repeats >= 0, got {self.reps}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reps})"

    def _reps(self, in_shape: Shape) -> tuple[int, ...]:
        if len(self.reps) < len(in_shape):
            raise ValueError(
                f"expected at least {len(in_shape)} repeats for an input of shape "
                f"{tuple(in_shape)} (one per dim), got {self.reps}"
            )
        return self.reps

    def _padded(self, in_shape: Shape) -> tuple[tuple[int, ...], Shape]:
        reps = self._reps(tuple(in_shape))
        return reps, (1,) * (len(reps) - len(in_shape)) + tuple(in_shape)

    def shape(self, in_shape: Shape) -> Shape:
        reps, padded = self._padded(in_shape)
        return tuple(r * n for r, n in zip(reps, padded, strict=True))

    def forward(self, a: Array) -> tuple[Array, Shape]:
        reps, padded = self._padded(a.shape)
        return np.tile(a.reshape(padded), reps), a.shape

    def backward(self, delta: Array, in_shape: Shape) -> tuple[Array, dict[str, Array]]:
        reps, padded = self._padded(in_shape)
        pairs = [s for r, n in zip(reps, padded, strict=True) for s in (r, n)]  # (r₀, n₀, …)
        copies = tuple(range(0, len(pairs), 2))
        return delta.reshape(pairs).sum(axis=copies).reshape(in_shape), {}


class Tile(Repeat):
    """z = torch.tile(a, reps): repeat, with reps padded by leading 1s to a's rank;
    δ_prev as for repeat."""

    def _reps(self, in_shape: Shape) -> tuple[int, ...]:
        return (1,) * (len(in_shape) - len(self.reps)) + self.reps


# --- moving entries around -------------------------------------------------------------


def _dims(dims: int | Sequence[int]) -> tuple[int, ...]:
    return (int(dims),) if isinstance(dims, (int, np.integer)) else tuple(int(d) for d in dims)


class Roll(Layer):
    """z = torch.roll(a, shifts, dims) (dims None or (): roll the flattened a);
    δ_prev = δ rolled back by −shifts."""

    integer_inputs = True  # moves values: token ids and indices too

    def __init__(
        self, shifts: int | Sequence[int], dims: int | Sequence[int] | None = None
    ) -> None:
        super().__init__()
        self.shifts = _dims(shifts)
        self.dims = _dims(dims) if dims is not None else ()
        if len(self.shifts) != (len(self.dims) if self.dims else 1):
            raise ValueError(
                f"expected one shift per dim (or one shift without dims), got shifts "
                f"{self.shifts}, dims {self.dims or None}"
            )

    def __repr__(self) -> str:
        return f"Roll(shifts={self.shifts}, dims={self.dims or None})"

    def _axes(self, in_shape: Shape) -> tuple[int, ...] | None:
        if not self.dims:
            return None
        return tuple(_axis(d, max(len(in_shape), 1), "dims", in_shape) for d in self.dims)

    def shape(self, in_shape: Shape) -> Shape:
        self._axes(tuple(in_shape))
        return tuple(in_shape)

    def forward(self, a: Array) -> tuple[Array, tuple[int, ...] | None]:
        axes = self._axes(a.shape)
        shifts = self.shifts if axes is not None else self.shifts[0]
        return np.roll(a, shifts, axes), axes

    def backward(self, delta: Array, axes: tuple[int, ...] | None) -> tuple[Array, dict]:
        back = tuple(-s for s in self.shifts) if axes is not None else -self.shifts[0]
        return np.roll(delta, back, axes), {}


class Flip(Layer):
    """z = torch.flip(a, dims);  δ_prev = δ flipped along the same dims."""

    integer_inputs = True  # moves values: token ids and indices too

    def __init__(self, dims: int | Sequence[int]) -> None:
        super().__init__()
        self.dims = _dims(dims)

    def __repr__(self) -> str:
        return f"Flip({self.dims})"

    def _axes(self, in_shape: Shape) -> tuple[int, ...]:
        axes = tuple(_axis(d, max(len(in_shape), 1), "dims", in_shape) for d in self.dims)
        if len(set(axes)) != len(axes):
            raise ValueError(f"expected distinct dims to flip, got {self.dims}")
        return axes if in_shape else ()

    def shape(self, in_shape: Shape) -> Shape:
        self._axes(tuple(in_shape))
        return tuple(in_shape)

    def forward(self, a: Array) -> tuple[Array, tuple[int, ...]]:
        axes = self._axes(a.shape)
        return np.flip(a, axes), axes

    def backward(self, delta: Array, axes: tuple[int, ...]) -> tuple[Array, dict[str, Array]]:
        return np.flip(delta, axes), {}


class MoveDim(Permute):
    """z = torch.movedim(a, source, destination) (also moveaxis): a permutation;
    δ_prev = δ permuted back."""

    def __init__(self, source: int | Sequence[int], destination: int | Sequence[int]) -> None:
        Layer.__init__(self)
        self.source, self.destination = _dims(source), _dims(destination)
        if len(self.source) != len(self.destination):
            raise ValueError(
                f"expected as many source dims as destination dims, got {self.source} and "
                f"{self.destination}"
            )

    def __repr__(self) -> str:
        return f"MoveDim({self.source} → {self.destination})"

    def _perm(self, in_shape: Shape) -> tuple[int, ...]:
        ndim = len(in_shape)
        src = [_axis(d, max(ndim, 1), "source dims", in_shape) for d in self.source]
        dst = [_axis(d, max(ndim, 1), "destination dims", in_shape) for d in self.destination]
        for what, dims in (("source", src), ("destination", dst)):
            if len(set(dims)) != len(dims):
                raise ValueError(f"expected distinct {what} dims, got {dims}")
        if not ndim:
            return ()
        order = [-1] * ndim
        for s, d in zip(src, dst, strict=True):
            order[d] = s
        rest_src = [i for i in range(ndim) if i not in src]
        rest_dst = [i for i in range(ndim) if i not in dst]
        for s, d in zip(rest_src, rest_dst, strict=True):  # the others keep their order
            order[d] = s
        return tuple(order)


class Unflatten(Layer):
    """z = a.unflatten(dim, sizes): dim split into sizes (one −1 at most);
    δ_prev = δ reshaped back."""

    integer_inputs = True  # moves values: token ids and indices too

    def __init__(self, dim: int, sizes: Sequence[int]) -> None:
        super().__init__()
        self.dim, self.sizes = int(dim), tuple(int(n) for n in sizes)
        if not self.sizes:
            raise ValueError("expected non-empty sizes to unflatten into, got ()")

    def __repr__(self) -> str:
        return f"Unflatten(dim={self.dim}, sizes={self.sizes})"

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        if not in_shape:
            raise ValueError("unflatten() cannot be applied to a 0-d input")
        d = _axis(self.dim, len(in_shape), "dim", in_shape)
        try:
            sizes = Reshape(self.sizes).shape((in_shape[d],))
        except ValueError as err:
            raise ValueError(f"cannot unflatten dim {d} of shape {in_shape}: {err}") from None
        return (*in_shape[:d], *sizes, *in_shape[d + 1 :])

    def forward(self, a: Array) -> tuple[Array, Shape]:
        return a.reshape(self.shape(a.shape)), a.shape

    def backward(self, delta: Array, in_shape: Shape) -> tuple[Array, dict[str, Array]]:
        return delta.reshape(in_shape), {}


class Triangle(Layer):
    """z = tril(a, diagonal) (or triu) over the last two dims: entries off the triangle set to
    0;  δ_prev = δ with the same entries set to 0."""

    integer_inputs = True  # moves values: token ids and indices too

    def __init__(self, upper: bool, diagonal: int = 0) -> None:
        super().__init__()
        self.upper, self.diagonal = bool(upper), int(diagonal)

    def __repr__(self) -> str:
        return f"{'Triu' if self.upper else 'Tril'}(diagonal={self.diagonal})"

    def shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) < 2:
            raise ValueError(
                f"expected an input of at least 2 dims (tril/triu act on the last two), got "
                f"shape {tuple(in_shape)}"
            )
        return tuple(in_shape)

    def _keep(self, in_shape: Shape) -> Array:
        rows, cols = np.indices(in_shape[-2:], sparse=True)
        return cols - rows >= self.diagonal if self.upper else cols - rows <= self.diagonal

    def forward(self, a: Array) -> tuple[Array, Array]:
        self.shape(a.shape)
        keep = self._keep(a.shape)  # (n, m): where the triangle is
        return np.where(keep, a, np.zeros((), a.dtype)), keep  # keeps integer ids integer

    def backward(self, delta: Array, keep: Array) -> tuple[Array, dict[str, Array]]:
        return np.where(keep, delta, 0.0), {}


def _diagonal_positions(n1: int, n2: int, offset: int) -> tuple[Array, Array]:
    """The (row, column) pairs of the diagonal `offset` of an n1 × n2 matrix."""
    rows0, cols0 = max(-offset, 0), max(offset, 0)
    length = max(min(n1 - rows0, n2 - cols0), 0)
    k = np.arange(length)
    return rows0 + k, cols0 + k


class Diagonal(Layer):
    """z = torch.diagonal(a, offset, dim1, dim2): the diagonal of dims (dim1, dim2), moved to
    the last dim;  δ_prev = zeros with δ written back on that diagonal."""

    integer_inputs = True

    def __init__(self, offset: int = 0, dim1: int = 0, dim2: int = 1) -> None:
        super().__init__()
        self.offset, self.dim1, self.dim2 = int(offset), int(dim1), int(dim2)

    def __repr__(self) -> str:
        return f"Diagonal(offset={self.offset}, dim1={self.dim1}, dim2={self.dim2})"

    def _dims(self, in_shape: Shape) -> tuple[int, int]:
        n = len(in_shape)
        if n < 2:
            raise ValueError(
                f"diagonal: expected an input of at least 2 dims, got shape {tuple(in_shape)}"
            )
        d1, d2 = _axis(self.dim1, n, "dim1", in_shape), _axis(self.dim2, n, "dim2", in_shape)
        if d1 == d2:
            raise ValueError(
                f"diagonal: expected two different dims, got {self.dim1} and {self.dim2}"
            )
        return d1, d2

    def shape(self, in_shape: Shape) -> Shape:
        d1, d2 = self._dims(in_shape)
        rows, _ = _diagonal_positions(in_shape[d1], in_shape[d2], self.offset)
        rest = tuple(n for k, n in enumerate(in_shape) if k not in (d1, d2))
        return (*rest, rows.size)

    def forward(self, a: Array) -> tuple[Array, tuple[Shape, int, int]]:
        d1, d2 = self._dims(a.shape)
        rows, cols = _diagonal_positions(a.shape[d1], a.shape[d2], self.offset)
        return np.moveaxis(a, (d1, d2), (-2, -1))[..., rows, cols], (a.shape, d1, d2)

    def backward(self, delta: Array, cache: tuple[Shape, int, int]) -> tuple[Array, dict]:
        in_shape, d1, d2 = cache
        out = np.zeros(in_shape)
        rows, cols = _diagonal_positions(in_shape[d1], in_shape[d2], self.offset)
        np.moveaxis(out, (d1, d2), (-2, -1))[..., rows, cols] = delta
        return out, {}


class DiagEmbed(Layer):
    """z = torch.diag_embed(a, offset, dim1, dim2): the last dim of a laid on the diagonal
    `offset` of two new dims (dim1, dim2), zeros elsewhere;  δ_prev = that diagonal of δ."""

    integer_inputs = True

    def __init__(self, offset: int = 0, dim1: int = -2, dim2: int = -1) -> None:
        super().__init__()
        self.offset, self.dim1, self.dim2 = int(offset), int(dim1), int(dim2)

    def __repr__(self) -> str:
        return f"DiagEmbed(offset={self.offset}, dim1={self.dim1}, dim2={self.dim2})"

    def _plan(self, in_shape: Shape) -> tuple[Shape, int, int, int]:
        if not in_shape:
            raise ValueError("diag_embed: expected an input of at least 1 dim, got a 0-d one")
        n_out = len(in_shape) + 1
        d1, d2 = (
            _axis(self.dim1, n_out, "dim1", in_shape),
            _axis(self.dim2, n_out, "dim2", in_shape),
        )
        if d1 == d2:
            raise ValueError(
                f"diag_embed: expected two different dims, got {self.dim1} and {self.dim2}"
            )
        m = in_shape[-1] + abs(self.offset)
        return tuple(in_shape[:-1]), d1, d2, m

    def shape(self, in_shape: Shape) -> Shape:
        rest, d1, d2, m = self._plan(in_shape)
        out = list(rest)
        for d in sorted((d1, d2)):
            out.insert(d, m)
        return tuple(out)

    def forward(self, a: Array) -> tuple[Array, tuple[int, int, int]]:
        rest, d1, d2, m = self._plan(a.shape)
        z = np.zeros((*rest, m, m), dtype=a.dtype)
        rows, cols = _diagonal_positions(m, m, self.offset)
        z[..., rows, cols] = a
        return np.moveaxis(z, (-2, -1), (d1, d2)), (d1, d2, m)

    def backward(self, delta: Array, cache: tuple[int, int, int]) -> tuple[Array, dict]:
        d1, d2, m = cache
        rows, cols = _diagonal_positions(m, m, self.offset)
        return np.moveaxis(delta, (d1, d2), (-2, -1))[..., rows, cols], {}
