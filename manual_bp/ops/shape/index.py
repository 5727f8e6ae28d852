"""Indexing: one Index layer stands for x[...], narrow, select, index_select and
gather; its backward scatters δ back where the value came from, added where an index
repeats (see manual_bp.ops.shape).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape, _axis

# --- indexing -------------------------------------------------------------------------
#
# One Index layer stands for every op that picks entries by position: x[...], narrow,
# select, index_select and gather each build its index (a tuple as NumPy takes it) from the
# input's shape, and share one forward (a[basic][advanced]) and one backward (δ scattered
# back, added where an index repeats).

IndexItem = Any  # int | slice | None | Ellipsis | integer or bool array | FROM_INPUT


class _FromInput:
    """An index array that is one of the layer's inputs (computed in forward(), token ids)
    rather than a constant: Index(FROM_INPUT) takes (a, idx)."""

    def __repr__(self) -> str:
        return "FROM_INPUT"


FROM_INPUT = _FromInput()


def _index_item(item: Any) -> Any:
    """One entry of an index as torch accepts it, checked: ints, slices of ints with step > 0,
    None, Ellipsis, integer or bool arrays (lists become arrays; a 0-d integer array is an
    int, as torch treats it), FROM_INPUT."""
    if item is None or item is Ellipsis or item is FROM_INPUT:
        return item
    if isinstance(item, (bool, np.bool_)):
        raise ValueError(
            f"expected an int, slice, None, Ellipsis or index array, got the bool {item!r}"
        )
    if isinstance(item, (int, np.integer)):
        return int(item)
    if isinstance(item, slice):
        parts = (item.start, item.stop, item.step)
        if any(p is not None and not isinstance(p, (int, np.integer)) for p in parts):
            raise ValueError(f"expected a slice of ints, got {item!r}")
        if item.step is not None and item.step <= 0:
            raise ValueError(f"expected a slice step greater than zero (as torch), got {item!r}")
        return slice(*(None if p is None else int(p) for p in parts))
    arr = np.asarray(item)
    if arr.dtype == bool:
        if arr.ndim == 0:
            raise ValueError("expected an index array of rank >= 1, got a 0-d bool mask")
        return arr
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"expected an index array of integers or bools, got dtype {arr.dtype} "
            f"(shape {arr.shape})"
        )
    return int(arr) if arr.ndim == 0 else arr.astype(np.int64)


def _check_position(i: int, n: int, d: int, in_shape: Shape) -> int:
    if not -n <= i < n:
        raise ValueError(
            f"index {i} is out of bounds for dim {d} of size {n} (input shape {tuple(in_shape)})"
        )
    return i % n


class Index(Layer):
    """z = a[index] with torch's rules;  δ_prev = zeros with δ added back where z was read.

    index: a tuple of ints, slices (step > 0; bounds clamped as Python clamps them), None,
    one Ellipsis, and integer or bool arrays (constants: a buffer of indices, a fixed mask),
    or FROM_INPUT for an integer array that is an input of the layer, after `a` (computed in
    forward(); it gets no δ). As torch does, the ints are applied first (as `select`), then
    the arrays, by NumPy's rule for advanced indices: their broadcast dims replace them in
    place when they are adjacent, else go first. (NumPy itself counts ints among the advanced
    indices: `x[0, :, idx]` is (len idx, n1) there and (n1, len idx) in torch.)
    """

    integer_inputs = True  # moves values: token ids and indices too

    def __init__(self, index: Any) -> None:
        super().__init__()
        items = index if isinstance(index, tuple) else (index,)
        self.index = tuple(_index_item(i) for i in items)
        if sum(i is Ellipsis for i in self.index) > 1:
            raise ValueError("expected at most one Ellipsis (...) in an index")
        self.n_inputs = 1 + sum(i is FROM_INPUT for i in self.index)  # type: ignore[misc]

    def __repr__(self) -> str:
        def show(i: Any) -> str:
            if isinstance(i, slice):
                parts = ["" if p is None else str(p) for p in (i.start, i.stop)]
                return ":".join(parts) + ("" if i.step is None else f":{i.step}")
            if isinstance(i, np.ndarray):
                return f"array{i.shape}"
            return "..." if i is Ellipsis else repr(i)

        return f"{type(self).__name__}[{', '.join(show(i) for i in self.index)}]"

    def _spec(self, in_shape: Shape, arrays: Sequence[Array]) -> tuple[Any, ...]:
        """The index for an input of this shape, the index inputs in place of FROM_INPUT
        (subclasses build it from their options)."""
        given = iter(arrays)
        return tuple(next(given) if i is FROM_INPUT else i for i in self.index)

    def _plan(
        self, in_shape: Shape, arrays: Sequence[Array] = ()
    ) -> tuple[tuple[Any, ...], tuple[Any, ...] | None]:
        """(basic, advanced): a[basic] applies ints, slices and None; [advanced] then applies
        the arrays (full slices elsewhere), or is None when there are none."""
        in_shape = tuple(in_shape)
        spec = tuple(_index_item(i) for i in self._spec(in_shape, arrays))
        used = sum(
            i.ndim if isinstance(i, np.ndarray) and i.dtype == bool else 1
            for i in spec
            if i is not None and i is not Ellipsis
        )
        if used > len(in_shape):
            raise ValueError(
                f"too many indices for an input of shape {in_shape}: {used} dims indexed"
            )
        at = next((k for k, i in enumerate(spec) if i is Ellipsis), None)
        if at is not None:  # ... stands for every dim the other items leave
            spec = spec[:at] + (slice(None),) * (len(in_shape) - used) + spec[at + 1 :]
        basic: list[Any] = []
        advanced: list[Any] = []
        d = 0  # the input dim the next item indexes
        for item in spec:
            if item is None:
                basic.append(None)
                advanced.append(slice(None))
            elif isinstance(item, int):
                basic.append(_check_position(item, in_shape[d], d, in_shape))
                d += 1
            elif isinstance(item, slice):
                basic.append(item)
                advanced.append(slice(None))
                d += 1
            elif item.dtype == bool:
                k = item.ndim
                if item.shape != in_shape[d : d + k]:
                    raise ValueError(
                        f"a bool mask of shape {item.shape} does not match dims {d}..{d + k - 1} "
                        f"of the input, of sizes {in_shape[d : d + k]}"
                    )
                basic.extend([slice(None)] * k)
                advanced.extend(np.nonzero(item))
                d += k
            else:
                n = in_shape[d]
                if item.size and not (-n <= item.min() and item.max() < n):
                    bad = item[(item < -n) | (item >= n)].flat[0]
                    raise ValueError(
                        f"index {bad} is out of bounds for dim {d} of size {n} "
                        f"(input shape {in_shape})"
                    )
                basic.append(slice(None))
                advanced.append(item % n if n else item)
                d += 1
        arrays = [a for a in advanced if isinstance(a, np.ndarray)]
        if not arrays:
            return tuple(basic), None
        try:
            np.broadcast_shapes(*(a.shape for a in arrays))
        except ValueError:
            shapes = ", ".join(str(a.shape) for a in arrays)
            raise ValueError(
                f"expected index arrays that broadcast together, got {shapes}"
            ) from None
        return tuple(basic), tuple(advanced)

    def shape(self, in_shape: Shape, *index_shapes: Shape) -> Shape:
        if len(index_shapes) != self.n_inputs - 1:
            raise ValueError(f"expected {self.n_inputs - 1} index input(s), got {index_shapes}")
        # the index inputs' values are not known here: zeros of their shapes stand in
        stand_in = [np.zeros(s, dtype=np.int64) for s in index_shapes]
        basic, advanced = self._plan(in_shape, stand_in)
        probe = np.broadcast_to(np.False_, tuple(in_shape))[basic]  # a view of no memory
        return probe[advanced].shape if advanced is not None else probe.shape

    def forward(self, a: Array, *index: Array) -> tuple[Array, tuple[Shape, Any, Any, Shape]]:
        bad = [i.dtype for i in index if not np.issubdtype(i.dtype, np.integer)]
        if bad or len(index) != self.n_inputs - 1:
            raise ValueError(
                f"expected {self.n_inputs - 1} integer index input(s), got dtypes "
                f"{[i.dtype for i in index]} (a bool mask computed in forward() gives a shape "
                "that depends on its values: not supported)"
            )
        basic, advanced = self._plan(a.shape, index)
        b = a[basic]
        z = b[advanced] if advanced is not None else b
        return z, (a.shape, basic, advanced, b.shape)

    def backward(self, delta: Array, cache: tuple[Shape, Any, Any, Shape]) -> tuple[Any, dict]:
        in_shape, basic, advanced, mid_shape = cache
        if advanced is not None:
            g = np.zeros(mid_shape, dtype=delta.dtype)
            np.add.at(g, advanced, delta)  # repeated indices add up
            delta = g
        delta_prev = np.zeros(in_shape, dtype=delta.dtype)
        delta_prev[basic] = delta
        if self.n_inputs == 1:
            return delta_prev, {}
        return (delta_prev, *(None,) * (self.n_inputs - 1)), {}  # indices carry no gradient


def _at_dim(dim: int, item: Any) -> tuple[Any, ...]:
    """An index placing `item` at dim (negative: counted from the end, through Ellipsis)."""
    if dim >= 0:
        return (slice(None),) * dim + (item,)
    return (Ellipsis, item) + (slice(None),) * (-dim - 1)


class Narrow(Index):
    """z = a.narrow(dim, start, length) = a[..., start:start+length, ...];  δ_prev: δ put back.

    Unlike a slice, torch clamps nothing: start ∈ [−n, n], 0 ≤ length ≤ n − start."""

    def __init__(self, dim: int, start: int, length: int) -> None:
        self.dim, self.start, self.length = int(dim), int(start), int(length)
        super().__init__(())

    def __repr__(self) -> str:
        return f"Narrow(dim={self.dim}, start={self.start}, length={self.length})"

    def _spec(self, in_shape: Shape, arrays: Sequence[Array]) -> tuple[Any, ...]:
        d = _axis(self.dim, max(len(in_shape), 1), "dim", in_shape)
        if not in_shape:
            raise ValueError("narrow() cannot be applied to a 0-d input")
        n = in_shape[d]
        if not -n <= self.start <= n:
            raise ValueError(
                f"expected start in [{-n}, {n}] for dim {d} of size {n}, got {self.start}"
            )
        start = self.start % n if self.start < 0 else self.start
        if not 0 <= self.length <= n - start:
            raise ValueError(
                f"expected length in [0, {n - start}] (start {start} + length <= size {n}), "
                f"got {self.length}"
            )
        return _at_dim(d, slice(start, start + self.length))


class SelectDim(Index):
    """z = a.select(dim, i) = a[..., i, ...] (dim dropped);  δ_prev: δ put back at i."""

    def __init__(self, dim: int, index: int) -> None:
        self.dim, self.position = int(dim), int(index)
        super().__init__(())

    def __repr__(self) -> str:
        return f"SelectDim(dim={self.dim}, index={self.position})"

    def _spec(self, in_shape: Shape, arrays: Sequence[Array]) -> tuple[Any, ...]:
        if not in_shape:
            raise ValueError("select() cannot be applied to a 0-d input")
        d = _axis(self.dim, len(in_shape), "dim", in_shape)
        return _at_dim(d, _check_position(self.position, in_shape[d], d, in_shape))


def _constant_or_input(index: Any) -> Array | None:
    """A constant integer index as an array, or None for FROM_INPUT (the layer's 2nd input)."""
    if index is FROM_INPUT:
        return None
    idx = np.asarray(index)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"expected an integer index, got dtype {idx.dtype}")
    return idx.astype(np.int64)


class IndexSelect(Index):
    """z = torch.index_select(a, dim, idx): the entries idx along dim (idx 1-d or 0-d, a
    constant or, as FROM_INPUT, the layer's second input);  δ_prev = δ added back at idx
    along dim (repeats add up)."""

    def __init__(self, dim: int, index: Any) -> None:
        self.dim, self.idx = int(dim), _constant_or_input(index)
        if self.idx is not None and self.idx.ndim > 1:
            raise ValueError(f"expected a 1-d or 0-d integer index, got shape {self.idx.shape}")
        super().__init__(FROM_INPUT if self.idx is None else ())

    def __repr__(self) -> str:
        where = "input" if self.idx is None else self.idx.tolist()
        return f"IndexSelect(dim={self.dim}, index={where})"

    def _spec(self, in_shape: Shape, arrays: Sequence[Array]) -> tuple[Any, ...]:
        d = _axis(self.dim, max(len(in_shape), 1), "dim", in_shape)
        if not in_shape:  # torch treats a 0-d input as 1 entry along dim 0
            raise ValueError("index_select() of a 0-d input is not supported")
        idx = arrays[0] if self.idx is None else self.idx
        if idx.ndim > 1:
            raise ValueError(f"expected a 1-d or 0-d integer index, got shape {idx.shape}")
        return _at_dim(d, idx.reshape(-1))


class Gather(Index):
    """z = torch.gather(a, dim, idx): z[i…] = a[i…] with the dim-th coordinate replaced by
    idx[i…];  δ_prev = δ added back at those places (repeats add up).

    idx (a constant or, as FROM_INPUT, the layer's second input) has a's rank and, off dim,
    sizes no larger than a's."""

    def __init__(self, dim: int, index: Any) -> None:
        self.dim, self.idx = int(dim), _constant_or_input(index)
        super().__init__(FROM_INPUT if self.idx is None else ())

    def __repr__(self) -> str:
        where = "input" if self.idx is None else f"shape {self.idx.shape}"
        return f"Gather(dim={self.dim}, index {where})"

    def _spec(self, in_shape: Shape, arrays: Sequence[Array]) -> tuple[Any, ...]:
        in_shape = tuple(in_shape)
        if not in_shape:
            raise ValueError("gather() of a 0-d input is not supported")
        d = _axis(self.dim, len(in_shape), "dim", in_shape)
        idx = arrays[0] if self.idx is None else self.idx
        if idx.size and (  # (an empty index of any shape gathers nothing, as torch)
            idx.ndim != len(in_shape)
            or any(idx.shape[k] > in_shape[k] for k in range(len(in_shape)) if k != d)
        ):
            raise ValueError(
                f"expected an index of rank {len(in_shape)} no larger than the input {in_shape} "
                f"off dim {d}, got shape {idx.shape}"
            )
        grid = np.indices(idx.shape, sparse=True)  # the other coordinates, as they are
        return tuple(idx if k == d else grid[k] for k in range(len(in_shape)))
