"""Writes into a copy of a tensor: x[idx] = v, index_put, scatter and scatter_reduce,
index_add/index_copy/index_reduce, masked writes, and repeat_interleave; forward beside
backward. Each returns a new array (the in-place forms are their out-of-place twins).

    IndexPut       z = x with z[idx] = v (or += v)     δ_x = δ, 0 where overwritten;  δ_v = Σ δ[idx]
    MaskedWrite    z = mask ? v : x                     δ_x = δ ⊙ ¬mask;  δ_v = Σ δ ⊙ mask
    Scatter        z = x with src reduced into z at (idx along dim) by none/sum/prod/mean/
                   amax/amin, with or without x itself (torch's scatter_reduce_backward)
    MaskedScatter  z = x with the masked entries taken from src in order
    RepeatInterleave  each entry repeated r times along dim;  δ_prev = the sum of its copies

Index arrays are constants (a buffer of the model) or, as FROM_INPUT, inputs of the layer
(integer tensors computed in forward(): they carry no δ).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from manual_bp.ops.arithmetic import _broadcast_shape, unbroadcast
from manual_bp.ops.base import TIE_RTOL, Array, Layer, Shape, _axis
from manual_bp.ops.shape import FROM_INPUT, Index

# --- x[idx] = v ---------------------------------------------------------------------------


def _unit_free(shape: Shape) -> Shape:
    """The shape without its leading dims of size 1 (torch's slicePrefix1sSize)."""
    shape = tuple(shape)
    k = 0
    while k < len(shape) and shape[k] == 1:
        k += 1
    return shape[k:]


class IndexPut(Layer):
    """z = x with x[index] = v (accumulate: x[index] += v, repeats adding up), v broadcast to
    the indexed shape;  δ_x = δ with the written entries 0 (accumulate: δ itself),
    δ_v = unbroadcast(δ[index]) (every v gets the δ of where it was written, as torch's
    index_put backward, even where a repeated index lets another write win).

    `index` as for manual_bp.ops.shape.Index (ints, slices, None, ..., integer or bool arrays,
    FROM_INPUT). Inputs: x, v (unless `value`, a number, is given), then the FROM_INPUT arrays.
    v's leading dims of size 1 are dropped first, as torch's `x[index] = v` drops them (a
    (1, C, h, w) slice written into x[i] of shape (C, h, w)).
    """

    integer_inputs = True

    def __init__(self, index: Any, value: float | None = None, accumulate: bool = False) -> None:
        super().__init__()
        self.index = Index(index)
        self.value = None if value is None else float(value)
        self.accumulate = bool(accumulate)
        n_index = self.index.n_inputs - 1
        self.n_inputs = 1 + (self.value is None) + n_index  # type: ignore[misc]

    def __repr__(self) -> str:
        what = "input" if self.value is None else self.value
        return f"IndexPut({self.index!r}, value={what}, accumulate={self.accumulate})"

    def _split(self, inputs: Sequence[Any]) -> tuple[Any, Any, list[Any]]:
        x, rest = inputs[0], list(inputs[1:])
        v = rest.pop(0) if self.value is None else None
        return x, v, rest

    def shape(self, *in_shapes: Shape) -> Shape:
        x_shape, v_shape, index_shapes = self._split(in_shapes)
        target = self.index.shape(x_shape, *index_shapes)
        if v_shape is not None and _broadcast_shape((_unit_free(v_shape), tuple(target))) != tuple(
            target
        ):
            raise ValueError(
                f"shape mismatch: value of shape {tuple(v_shape)} cannot be broadcast to the "
                f"indexed shape {tuple(target)}"
            )
        return tuple(x_shape)

    def forward(self, *inputs: Array) -> tuple[Array, Any]:
        x, v, index = self._split(inputs)
        self.shape(x.shape, *((v.shape,) if v is not None else ()), *(i.shape for i in index))
        basic, advanced = self.index._plan(x.shape, index)
        z = np.array(x, dtype=np.result_type(x, np.float64 if v is None else v), copy=True)
        value = np.asarray(self.value) if v is None else v.reshape(_unit_free(v.shape))
        view = z[(*basic, ...)]  # (a view even where basic picks one entry: x[0] = ...)
        if advanced is None:
            view[...] = view + value if self.accumulate else value
        elif self.accumulate:
            np.add.at(view, advanced, np.broadcast_to(value, view[advanced].shape))
        else:
            view[advanced] = value
        return z, (basic, advanced, None if v is None else v.shape, len(index))

    def backward(self, delta: Array, cache: Any) -> tuple[Any, dict[str, Array]]:
        basic, advanced, v_shape, n_index = cache
        written = delta[basic] if advanced is None else delta[basic][advanced]
        grads: list[Any] = []
        if self.accumulate:
            grads.append(delta)
        else:
            dx = delta.copy()
            view = dx[(*basic, ...)]
            if advanced is None:
                view[...] = 0.0
            else:
                view[advanced] = 0.0
            grads.append(dx)
        if v_shape is not None:
            grads.append(unbroadcast(np.asarray(written), _unit_free(v_shape)).reshape(v_shape))
        grads += [None] * n_index
        return (grads[0] if len(grads) == 1 else tuple(grads)), {}


class MaskedWrite(Layer):
    """x[mask] = v with a bool mask over x's leading dims that is computed in forward():
    z = mask ? v : x, v a number or a tensor broadcast over the selected entries (right-
    aligned, as x[mask] = v broadcasts it);  δ_x = δ ⊙ ¬mask,  δ_v = unbroadcast(δ ⊙ mask).
    Inputs: x, v (unless `value` is given), mask."""

    integer_inputs = True

    def __init__(self, value: float | None = None) -> None:
        super().__init__()
        self.value = None if value is None else float(value)
        self.n_inputs = 3 if self.value is None else 2  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"MaskedWrite(value={'input' if self.value is None else self.value})"

    def shape(self, *in_shapes: Shape) -> Shape:
        x_shape, m_shape = tuple(in_shapes[0]), tuple(in_shapes[-1])
        k = len(m_shape)
        if x_shape[:k] != m_shape:
            raise ValueError(
                f"a bool mask of shape {m_shape} does not match the leading dims of the input, "
                f"of shape {x_shape}"
            )
        if self.value is None:
            v_shape = tuple(in_shapes[1])
            rest = x_shape[k:]
            if len(v_shape) > len(rest) + 1 or (
                _broadcast_shape((v_shape[-len(rest) :] if rest else (), rest)) != rest
                if len(v_shape) <= len(rest)
                else v_shape[0] != 1
            ):
                raise ValueError(
                    f"x[mask] = v with v of shape {v_shape} is not supported for an input of "
                    f"shape {x_shape} and a mask computed in forward() of shape {m_shape}: v must "
                    f"broadcast to {rest} (the shape of one selected entry)"
                )
        return x_shape

    def _mask(self, x: Array, mask: Array) -> Array:
        if mask.dtype != np.bool_:
            raise ValueError(f"expected a bool mask, got dtype {mask.dtype}")
        return mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))

    def forward(self, *inputs: Array) -> tuple[Array, Any]:
        x, mask = inputs[0], inputs[-1]
        self.shape(*(a.shape for a in inputs))
        m = self._mask(x, mask)
        v = inputs[1] if self.value is None else np.asarray(self.value)
        v_shape = v.shape if self.value is None else None
        if v.ndim > x.ndim - mask.ndim:  # a leading 1 of v: the selected entries' count
            v = v.reshape(v.shape[1:])
        return np.where(m, v, x), (m, v_shape, v.shape)

    def backward(self, delta: Array, cache: Any) -> tuple[Any, dict[str, Array]]:
        m, v_shape, v_used = cache
        dx = np.where(m, 0.0, delta)
        if v_shape is None:
            return (dx, None), {}
        dv = unbroadcast(np.where(m, delta, 0.0), v_used).reshape(v_shape)
        return (dx, dv, None), {}


# --- scatter, scatter_reduce, index_add / index_copy / index_reduce ---------------------------

REDUCTIONS = (None, "sum", "prod", "mean", "amax", "amin")


class Scatter(Layer):
    """z = x with src written at (index along dim): z[…, idx[j…], …] ⊕= src[j…], ⊕ one of
    None (replace: scatter), "sum" (scatter_add, index_add with alpha), "prod", "mean",
    "amax", "amin" (scatter_reduce / index_reduce), include_self deciding whether x's own
    entry at a written position takes part. src may be a number (`value`: scatter's fill).

    `along`: index is 1-d, the positions along dim of src's slices (index_add, index_copy,
    index_reduce); otherwise index has src's rank (scatter). Backward (torch's
    scatter_reduce_backward): replace: δ_x = δ, 0 where written; δ_src = δ gathered.
    sum: δ_x = δ, δ_src = α δ gathered. prod: each δ times the product of the other
    contributors at its position. mean: δ / N at each position, N its contributors.
    amax / amin: δ shared evenly by the contributors equal to the result (ties reported).
    Positions written without include_self get δ_x = 0.

    Inputs: x, src (unless `value`), then the index if FROM_INPUT."""

    integer_inputs = True

    def __init__(
        self,
        dim: int,
        index: Any,
        reduce: str | None = None,
        include_self: bool = True,
        value: float | None = None,
        alpha: float = 1.0,
        along: bool = False,
    ) -> None:
        super().__init__()
        if reduce not in REDUCTIONS:
            raise ValueError(f"scatter: expected reduce in {REDUCTIONS}, got {reduce!r}")
        self.dim, self.reduce, self.include_self = int(dim), reduce, bool(include_self)
        self.value, self.alpha, self.along = (
            None if value is None else float(value),
            float(alpha),
            bool(along),
        )
        self.idx = None if index is FROM_INPUT else np.asarray(index).astype(np.int64)
        self.n_inputs = 1 + (self.value is None) + (self.idx is None)  # type: ignore[misc]

    def __repr__(self) -> str:
        op = "index" if self.along else "scatter"
        return (
            f"Scatter({op}, dim={self.dim}, reduce={self.reduce}, include_self="
            f"{self.include_self}, value={self.value}, alpha={self.alpha})"
        )

    def _split(self, inputs: Sequence[Any]) -> tuple[Any, Any, Any]:
        rest = list(inputs[1:])
        src = rest.pop(0) if self.value is None else None
        idx = rest.pop(0) if self.idx is None else self.idx
        return inputs[0], src, idx

    def _positions(self, x_shape: Shape, src_shape: Shape | None, idx: Array) -> tuple[Any, Shape]:
        """The full index into x (a tuple of arrays of the contributions' shape) and that
        shape."""
        x_shape = tuple(x_shape)
        if not x_shape:
            raise ValueError("scatter into a 0-d tensor is not supported")
        d = _axis(self.dim, len(x_shape), "dim", x_shape)
        if self.along:
            if idx.ndim > 1:
                raise ValueError(f"expected a 1-d index, got shape {idx.shape}")
            idx = idx.reshape(-1)
            shape = list(x_shape)
            shape[d] = idx.size
            if src_shape is not None and tuple(src_shape) != tuple(shape):
                if not (len(src_shape) == 0 and idx.size == 1 and len(x_shape) == 1):
                    raise ValueError(
                        f"expected a source of shape {tuple(shape)} (the input's with dim {d} "
                        f"of the index's length), got {tuple(src_shape)}"
                    )
            idx = np.broadcast_to(
                idx.reshape([-1 if k == d else 1 for k in range(len(x_shape))]), shape
            )
        else:
            if (
                idx.ndim != len(x_shape)
                or (
                    src_shape is not None
                    and (
                        len(src_shape) != idx.ndim
                        or any(i > s for i, s in zip(idx.shape, src_shape, strict=True))
                    )
                )
                or any(idx.shape[k] > x_shape[k] for k in range(len(x_shape)) if k != d)
            ):
                raise ValueError(
                    f"expected an index of rank {len(x_shape)}, no larger than the source "
                    f"{None if src_shape is None else tuple(src_shape)} and, off dim {d}, than the "
                    f"input {x_shape}; got shape {idx.shape}"
                )
        n = x_shape[d]
        if idx.size and not (idx.min() >= -n and idx.max() < n):
            raise ValueError(f"index out of bounds for dim {d} of size {n} (input shape {x_shape})")
        grid = np.indices(idx.shape, sparse=True)
        at = tuple(idx % n if k == d else grid[k] for k in range(len(x_shape)))
        return at, tuple(idx.shape)

    def shape(self, *in_shapes: Shape) -> Shape:
        x_shape, src_shape, idx_shape = self._split(in_shapes)
        idx = self.idx if self.idx is not None else np.zeros(idx_shape, dtype=np.int64)
        self._positions(x_shape, src_shape, idx)
        return tuple(x_shape)

    def forward(self, *inputs: Array) -> tuple[Array, Any]:
        x, src, idx = self._split(inputs)
        at, shape = self._positions(x.shape, None if src is None else src.shape, idx)
        if src is None:
            c = np.full(shape, self.value)
        elif self.along and src.ndim == 0:
            c = np.broadcast_to(src, shape)
        else:
            c = src[tuple(slice(0, n) for n in shape)]  # the part of src the index covers
        c = self.alpha * c if self.alpha != 1.0 else c
        written = np.zeros(x.shape, dtype=bool)
        written[at] = True
        count = np.zeros(x.shape)
        np.add.at(count, at, 1.0)
        z = np.array(x, dtype=np.float64, copy=True)
        r = self.reduce
        if r is None:
            z[at] = c
        else:
            if not self.include_self:
                start = {"sum": 0.0, "mean": 0.0, "prod": 1.0, "amax": -np.inf, "amin": np.inf}[r]
                z[written] = start
            ufunc = {
                "sum": np.add,
                "mean": np.add,
                "prod": np.multiply,
                "amax": np.maximum,
                "amin": np.minimum,
            }[r]
            ufunc.at(z, at, c)
            if r == "mean":
                n = count + (1.0 if self.include_self else 0.0)
                z = z / np.where(n == 0, 1.0, n)
        return z, (x, c, at, written, count, z, None if src is None else src.shape, idx)

    def backward(self, delta: Array, cache: Any) -> tuple[Any, dict[str, Array]]:
        x, c, at, written, count, z, src_shape, _ = cache
        r = self.reduce
        if r is None:
            dx, dc = np.where(written, 0.0, delta), delta[at]
        elif r == "sum":
            dx, dc = delta, delta[at]
        elif r == "mean":
            n = count + (1.0 if self.include_self else 0.0)
            g = delta / np.where(n == 0, 1.0, n)
            dx, dc = g, g[at]
        elif r == "prod":
            dx, dc = self._prod_backward(delta, x, c, at, written)
        else:
            on_x = x == z  # NOTE: counted even without include_self, as torch's N
            on_c = c == z[at]
            n = on_x.astype(np.float64)
            np.add.at(n, at, on_c.astype(np.float64))
            g = delta / np.where(n == 0, 1.0, n)
            dx = np.where(on_x, g, 0.0)
            dc = np.where(on_c, g[at], 0.0)
        if not self.include_self and r is not None:
            dx = np.where(written, 0.0, dx)
        dc = self.alpha * dc if self.alpha != 1.0 else dc
        grads: list[Any] = [dx]
        if src_shape is not None:
            ds = np.zeros(src_shape)
            if self.along and len(src_shape) == 0:
                ds = np.asarray(dc.sum())
            else:
                ds[tuple(slice(0, n) for n in dc.shape)] = dc
            grads.append(ds)
        if self.idx is None:
            grads.append(None)
        return (grads[0] if len(grads) == 1 else tuple(grads)), {}

    def _prod_backward(
        self, delta: Array, x: Array, c: Array, at: Any, written: Array
    ) -> tuple[Array, Array]:
        """Each contributor's δ times the product of the others at its position: from the
        product of the nonzero contributors P and their count of zeros k,
        ∂z/∂u = P/u (u ≠ 0, k = 0), P (u = 0, k = 1), 0 otherwise."""
        own = np.ones(x.shape, dtype=bool) if self.include_self else ~written
        xs = np.where(own, x, 1.0)  # x's entry as a contributor (1: not taking part)
        P = np.where(xs != 0, xs, 1.0)
        k = np.where(own & (x == 0), 1.0, 0.0)
        np.multiply.at(P, at, np.where(c != 0, c, 1.0))
        np.add.at(k, at, (c == 0).astype(np.float64))

        def others(u: Array, P: Array, k: Array) -> Array:
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(
                    u != 0,
                    np.where(k == 0, P / np.where(u != 0, u, 1.0), 0.0),
                    np.where(k == 1, P, 0.0),
                )

        dx = np.where(own, delta * others(x, P, k), 0.0)
        dx = np.where(written, dx, delta)
        dc = delta[at] * others(c, P[at], k[at])
        return dx, dc

    def ties(self, *inputs: Array) -> tuple[Array | None, ...] | None:
        """amax / amin: the contributors within TIE_RTOL of their position's result, where two
        or more are; δ is shared among the exactly equal ones."""
        if self.reduce not in ("amax", "amin"):
            return None
        x, src, idx = self._split(inputs)
        z, cache = self.forward(*inputs)
        _, c, at, written, _, _, _, _ = cache
        tol = TIE_RTOL * max(
            float(np.max(np.abs(x), initial=0.0)), float(np.max(np.abs(c), initial=0.0))
        )
        near_x = (np.abs(x - z) <= tol) & written & self.include_self
        near_c = np.abs(c - z[at]) <= tol
        n = near_x.astype(np.float64)
        np.add.at(n, at, near_c.astype(np.float64))
        tied = n >= 2
        mask_x = near_x & tied
        mask_c = near_c & tied[at]
        out: list[Array | None] = [mask_x]
        if src is not None:
            m = np.zeros(src.shape, dtype=bool)
            if not (self.along and src.ndim == 0):
                m[tuple(slice(0, n) for n in mask_c.shape)] = mask_c
            out.append(m)
        if self.idx is None:
            out.append(None)
        return tuple(out)


class MaskedScatter(Layer):
    """z = x with the entries where mask holds (mask broadcast with x) taken from src, in
    order;  δ_x = δ ⊙ ¬mask,  δ_src = δ at the masked entries, in order, zeros after them
    (masked_scatter_backward). Inputs: x, mask, src."""

    n_inputs = 3
    integer_inputs = True

    def shape(self, x_shape: Shape, m_shape: Shape, src_shape: Shape) -> Shape:
        return _broadcast_shape((x_shape, m_shape))

    def forward(self, x: Array, mask: Array, src: Array) -> tuple[Array, Any]:
        shape = self.shape(x.shape, mask.shape, src.shape)
        if mask.dtype != np.bool_:
            raise ValueError(f"masked_scatter: expected a bool mask, got dtype {mask.dtype}")
        m = np.broadcast_to(mask, shape)
        k = int(m.sum())
        if k > src.size:
            raise ValueError(
                f"masked_scatter: the mask selects {k} entries, the source holds {src.size}"
            )
        z = np.array(np.broadcast_to(x, shape), dtype=np.float64, copy=True)
        z[m] = src.reshape(-1)[:k]
        return z, (m, x.shape, src.shape, k)

    def backward(self, delta: Array, cache: Any) -> tuple[Any, dict[str, Array]]:
        m, x_shape, src_shape, k = cache
        ds = np.zeros(int(np.prod(src_shape, dtype=np.int64)))
        ds[:k] = delta[m]
        return (unbroadcast(np.where(m, 0.0, delta), x_shape), None, ds.reshape(src_shape)), {}


class RepeatInterleave(Layer):
    """z = each entry of a repeated r times along dim (dim None: of a flattened), r a number
    or one count per entry (a constant);  δ_prev = the sum of δ over each entry's copies."""

    def __init__(self, repeats: Any, dim: int | None = None) -> None:
        super().__init__()
        self.repeats = np.asarray(repeats).astype(np.int64)
        if self.repeats.ndim > 1 or np.any(self.repeats < 0):
            raise ValueError(
                f"repeat_interleave: expected an int or a 1-d tensor of counts >= 0, got "
                f"{self.repeats.tolist()}"
            )
        self.dim = None if dim is None else int(dim)

    def __repr__(self) -> str:
        return f"RepeatInterleave(repeats={self.repeats.tolist()}, dim={self.dim})"

    def _axis(self, in_shape: Shape) -> tuple[Shape, int]:
        shape = (int(np.prod(in_shape, dtype=np.int64)),) if self.dim is None else tuple(in_shape)
        if not shape:
            shape = (1,)
        d = 0 if self.dim is None else _axis(self.dim, len(shape), "dim", in_shape)
        if self.repeats.ndim == 1 and self.repeats.size not in (1, shape[d]):
            raise ValueError(
                f"repeat_interleave: expected {shape[d]} repeats (the size of dim {d}), got "
                f"{self.repeats.size}"
            )
        return shape, d

    def shape(self, in_shape: Shape) -> Shape:
        shape, d = self._axis(in_shape)
        r = np.broadcast_to(self.repeats, (shape[d],))
        return (*shape[:d], int(r.sum()), *shape[d + 1 :])

    def forward(self, a: Array) -> tuple[Array, Any]:
        shape, d = self._axis(a.shape)
        r = np.broadcast_to(self.repeats, (shape[d],))
        return np.repeat(a.reshape(shape), r, axis=d), (a.shape, shape, d, r)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        in_shape, shape, d, r = cache
        owner = np.repeat(np.arange(shape[d]), r)  # which entry each copy came from
        out = np.zeros(shape)
        moved = np.moveaxis(out, d, 0)
        np.add.at(moved, owner, np.moveaxis(delta, d, 0))
        return out.reshape(in_shape), {}
