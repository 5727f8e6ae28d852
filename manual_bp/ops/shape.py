"""Shape layers: identity, flatten, reshape, permute, transpose and cat; δ_prev is δ moved back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from manual_bp.ops.arithmetic import unbroadcast
from manual_bp.ops.base import Array, Layer, Shape, _axis, _dim, _one_or_tuple

# --- shape-only layers ---------------------------------------------------------------


class Identity(Layer):
    """z = a, δ_prev = δ. Also Dropout in eval mode, and the layer under a lone activation."""

    integer_inputs = True

    def shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def forward(self, a: Array) -> tuple[Array, None]:
        return a, None

    def backward(self, delta: Array, cache: None) -> tuple[Array, dict[str, Array]]:
        return delta, {}


class Flatten(Layer):
    """z = a reshaped with dims start..end merged, δ_prev = δ reshaped back."""

    integer_inputs = True

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def __repr__(self) -> str:
        return f"Flatten({self.start_dim}, {self.end_dim})"

    def shape(self, in_shape: Shape) -> Shape:
        ndim = max(len(in_shape), 1)
        start, end = _dim(self.start_dim, ndim), _dim(self.end_dim, ndim)
        if not (0 <= start < ndim and 0 <= end < ndim) or start > end:
            raise ValueError(
                f"cannot flatten dims {self.start_dim}..{self.end_dim} of an input of "
                f"shape {tuple(in_shape)}"
            )
        if len(in_shape) == 0:
            return (1,)
        merged = int(np.prod(in_shape[start : end + 1], dtype=np.int64))
        return (*in_shape[:start], merged, *in_shape[end + 1 :])

    def forward(self, a: Array) -> tuple[Array, Shape]:
        return a.reshape(self.shape(a.shape)), a.shape

    def backward(self, delta: Array, in_shape: Shape) -> tuple[Array, dict[str, Array]]:
        return delta.reshape(in_shape), {}


# --- joining --------------------------------------------------------------


class Cat(Layer):
    """z = torch.cat(a, dim);  δ_prev_i = the slice of δ along dim where aᵢ was placed."""

    integer_inputs = True

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


# --- shape ----------------------------------------------------------------------------


class Reshape(Layer):
    """z = a reshaped to `shape` (one −1 at most, inferred);  δ_prev = δ reshaped back.

    Also view(); torch's view can refuse a non-contiguous input, which values cannot be.
    """

    integer_inputs = True

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

    integer_inputs = True

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

    integer_inputs = True

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
        if idx.ndim != len(in_shape) or any(
            idx.shape[k] > in_shape[k] for k in range(len(in_shape)) if k != d
        ):
            raise ValueError(
                f"expected an index of rank {len(in_shape)} no larger than the input {in_shape} "
                f"off dim {d}, got shape {idx.shape}"
            )
        grid = np.indices(idx.shape, sparse=True)  # the other coordinates, as they are
        return tuple(idx if k == d else grid[k] for k in range(len(in_shape)))


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


# --- several tensors in, several out ------------------------------------------------------


class Stack(Layer):
    """z = torch.stack(a, dim), inputs of one shape;  δ_prev_i = δ at position i along dim."""

    integer_inputs = True  # moves values: token ids and indices too

    def __init__(self, dim: int = 0, n_inputs: int = 2) -> None:
        super().__init__()
        if n_inputs < 1:
            raise ValueError(f"expected n_inputs >= 1, got {n_inputs}")
        self.dim = int(dim)
        self.n_inputs = int(n_inputs)  # type: ignore[misc]  # variadic: set per instance

    def __repr__(self) -> str:
        return f"Stack(dim={self.dim}, n_inputs={self.n_inputs})"

    def _axis(self, shapes: list[Shape]) -> int:
        if len(shapes) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} inputs, got {len(shapes)}")
        if len(set(shapes)) > 1:
            raise ValueError(f"expected inputs of one shape to stack, got {shapes}")
        return _axis(self.dim, len(shapes[0]) + 1, "dim", shapes[0])

    def shape(self, *in_shapes: Shape) -> Shape:
        shapes = [tuple(s) for s in in_shapes]
        d = self._axis(shapes)
        return (*shapes[0][:d], len(shapes), *shapes[0][d:])

    def forward(self, *a: Array) -> tuple[Array, int]:
        d = self._axis([x.shape for x in a])
        return np.stack(a, axis=d), d

    def backward(self, delta: Array, d: int) -> tuple[Any, dict[str, Array]]:
        return _one_or_tuple(list(np.moveaxis(delta, d, 0))), {}


def _pieces(delta: Any, shapes: Sequence[Shape]) -> list[Array]:
    """The δ of each output of a multi-output layer: the array itself for one output, a zero
    for an output the loss does not depend on (None)."""
    deltas = [delta] if len(shapes) == 1 else list(delta)
    return [np.zeros(s) if g is None else g for g, s in zip(deltas, shapes, strict=True)]


class Split(Layer):
    """(z₁, …, z_k) = torch.split(a, sizes, dim): consecutive pieces of the given sizes along
    dim;  δ_prev = the pieces' δ concatenated back (zeros for an unused piece).

    One layer with k outputs (n_outputs = k; for k = 1 the piece itself, as the protocol
    has it). split with one size and chunk become sizes through split_sizes / chunk_sizes."""

    integer_inputs = True  # moves values: token ids and indices too

    def __init__(self, sizes: Sequence[int], dim: int = 0) -> None:
        super().__init__()
        self.sizes, self.dim = tuple(int(n) for n in sizes), int(dim)
        if not self.sizes or any(n < 0 for n in self.sizes):
            raise ValueError(f"expected one or more piece sizes >= 0, got {self.sizes}")
        self.n_outputs = len(self.sizes)  # type: ignore[misc]  # set per instance

    def __repr__(self) -> str:
        return f"Split({self.sizes}, dim={self.dim})"

    def _shapes(self, in_shape: Shape) -> list[Shape]:
        in_shape = tuple(in_shape)
        if not in_shape:
            raise ValueError("split() cannot be applied to a 0-d input")
        d = _axis(self.dim, len(in_shape), "dim", in_shape)
        if sum(self.sizes) != in_shape[d]:
            raise ValueError(
                f"expected piece sizes summing to the size {in_shape[d]} of dim {d} (shape "
                f"{in_shape}), got {self.sizes}"
            )
        return [(*in_shape[:d], n, *in_shape[d + 1 :]) for n in self.sizes]

    def shape(self, in_shape: Shape) -> Any:
        shapes = self._shapes(in_shape)
        return shapes[0] if len(shapes) == 1 else tuple(shapes)

    def forward(self, a: Array) -> tuple[Any, tuple[int, list[Shape]]]:
        shapes = self._shapes(a.shape)
        d = self.dim % a.ndim
        pieces = np.split(a, np.cumsum(self.sizes)[:-1], axis=d)
        return _one_or_tuple(pieces), (d, shapes)

    def backward(self, delta: Any, cache: tuple[int, list[Shape]]) -> tuple[Array, dict]:
        d, shapes = cache
        return np.concatenate(_pieces(delta, shapes), axis=d), {}


def split_sizes(n: int, split_size_or_sections: int | Sequence[int]) -> tuple[int, ...]:
    """torch.split's pieces of a dim of size n: pieces of split_size, the last one smaller
    (one empty piece for n = 0), or the given sections, which must sum to n."""
    if isinstance(split_size_or_sections, (int, np.integer)):
        s = int(split_size_or_sections)
        if s < 0 or s == 0 and n > 0:
            raise ValueError(
                f"expected a split size > 0 (0 only for an empty dim), got {s} for a dim of "
                f"size {n}"
            )
        if n == 0:
            return (0,)
        k = -(-n // s)
        return (s,) * (k - 1) + (n - s * (k - 1),)
    sections = tuple(int(m) for m in split_size_or_sections)
    if sum(sections) != n or any(m < 0 for m in sections):
        raise ValueError(f"expected split sizes >= 0 summing to {n}, got {sections}")
    return sections


def chunk_sizes(n: int, chunks: int) -> tuple[int, ...]:
    """torch.chunk's pieces of a dim of size n: split by ⌈n / chunks⌉, so possibly fewer than
    `chunks` pieces (6 into 4 gives 2, 2, 2); `chunks` empty pieces for n = 0."""
    if chunks <= 0:
        raise ValueError(f"expected chunks > 0, got {chunks}")
    if n == 0:
        return (0,) * chunks
    return split_sizes(n, -(-n // chunks))


class Unbind(Layer):
    """(z₁, …, z_n) = torch.unbind(a, dim): the n slices along dim, dim removed;
    δ_prev = the slices' δ stacked back along dim (zeros for an unused slice).

    n (the size of dim) is given up front: it is the layer's n_outputs."""

    integer_inputs = True  # moves values: token ids and indices too

    def __init__(self, dim: int, n: int) -> None:
        super().__init__()
        self.dim = int(dim)
        if n < 1:
            raise ValueError(f"expected a dim of size >= 1 to unbind (n outputs), got {n}")
        self.n_outputs = int(n)  # type: ignore[misc]  # set per instance

    def __repr__(self) -> str:
        return f"Unbind(dim={self.dim}, n={self.n_outputs})"

    def _slice_shape(self, in_shape: Shape) -> tuple[int, Shape]:
        in_shape = tuple(in_shape)
        if not in_shape:
            raise ValueError("unbind() cannot be applied to a 0-d input")
        d = _axis(self.dim, len(in_shape), "dim", in_shape)
        if in_shape[d] != self.n_outputs:
            raise ValueError(
                f"expected dim {d} of size {self.n_outputs} (the number of outputs), got shape "
                f"{in_shape}"
            )
        return d, in_shape[:d] + in_shape[d + 1 :]

    def shape(self, in_shape: Shape) -> Any:
        _, s = self._slice_shape(in_shape)
        return s if self.n_outputs == 1 else (s,) * self.n_outputs

    def forward(self, a: Array) -> tuple[Any, tuple[int, Shape]]:
        d, s = self._slice_shape(a.shape)
        return _one_or_tuple(list(np.moveaxis(a, d, 0))), (d, s)

    def backward(self, delta: Any, cache: tuple[int, Shape]) -> tuple[Array, dict]:
        d, s = cache
        return np.stack(_pieces(delta, [s] * self.n_outputs), axis=d), {}
