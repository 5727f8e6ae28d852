"""Ops that pick entries by their order (sort, topk, kthvalue, median), forward beside backward.

Each returns the picked values and their indices along dim; δ of the values goes back to the
indices (the indices carry none):  δ_prev = Σ_k δ_k [index_k = i]. Which of two equal entries
an index names is the sort's choice: entries within rounding distance of another entry of
their slice are ties (see manual_bp.ops.base), torch's choice replayed there.

    Sort        (values, indices) of the whole dim, ascending or descending (stable)
    TopK        the k largest (or smallest), sorted
    KthValue    the k-th smallest, one per slice
    Median      the lower median, one per slice (dim given) — or of all entries, δ shared by
                the entries equal to it (torch's evenly_distribute_backward)
    Mode        the most frequent value, one per slice, at the last index holding it
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.base import TIE_RTOL, Array, Layer, Shape, _axis


def _tied_in_slice(x: Array, d: int) -> Array:
    """Entries within TIE_RTOL·max|x| of another entry of their slice along d."""
    tol = TIE_RTOL * float(np.max(np.abs(x), initial=0.0))
    xs = np.moveaxis(x, d, -1)
    order = np.sort(xs, axis=-1)
    gaps = np.diff(order, axis=-1) <= tol  # neighbours in sorted order that (nearly) tie
    close = np.zeros(order.shape, dtype=bool)
    close[..., 1:] |= gaps
    close[..., :-1] |= gaps
    # an entry is tied if its value is one of the tied sorted values
    tied_values = np.where(close, order, np.nan)
    hit = np.any(np.abs(xs[..., :, None] - tied_values[..., None, :]) <= tol, axis=-1)
    return np.moveaxis(hit, -1, d)


class _Picks(Layer):
    """(values, indices) taken along `dim` at positions chosen from the order of the slice."""

    n_outputs = 2
    output_dtypes = ("float", "int")

    def __init__(self, dim: int = -1, keepdim: bool = False) -> None:
        super().__init__()
        self.dim, self.keepdim = int(dim), bool(keepdim)

    def _count(self, n: int) -> int | None:
        """How many picks along dim: None drops the dim (one pick, keepdim False)."""
        raise NotImplementedError

    def _positions(self, x: Array, d: int) -> Array:
        """The indices picked along d (a's rank, the dim of size _count)."""
        raise NotImplementedError

    def shape(self, in_shape: Shape) -> tuple[Shape, Shape]:  # type: ignore[override]
        in_shape = tuple(in_shape)
        if not in_shape:
            return (), ()
        d = _axis(self.dim, len(in_shape), "dim", in_shape)
        k = self._count(in_shape[d])
        out = in_shape[:d] + ((k,) if k is not None else ()) + in_shape[d + 1 :]
        return out, out

    def forward(self, a: Array) -> tuple[tuple[Array, Array], tuple[Shape, Array, int]]:
        out, _ = self.shape(a.shape)
        x = a.reshape(1) if a.ndim == 0 else a
        d = _axis(self.dim, x.ndim, "dim", a.shape)
        i = self._positions(x, d)
        z = np.take_along_axis(x, i, axis=d)
        return (z.reshape(out), i.reshape(out).astype(np.int64)), (a.shape, i, d)

    def backward(self, delta: tuple[Array | None, Array | None], cache: Any) -> tuple[Array, dict]:
        shape, i, d = cache
        full = list(i.shape)
        full[d] = int(np.prod(shape[d : d + 1] or (1,)))
        out = np.zeros(full)
        if delta[0] is not None:
            grid = np.indices(i.shape, sparse=True)
            at = tuple(i if k == d else grid[k] for k in range(i.ndim))
            np.add.at(out, at, delta[0].reshape(i.shape))
        return out.reshape(shape), {}

    def ties(self, a: Array) -> tuple[Array]:
        x = a.reshape(1) if a.ndim == 0 else a
        return (_tied_in_slice(x, _axis(self.dim, x.ndim, "dim", a.shape)).reshape(a.shape),)


class Sort(_Picks):
    """(z, i) = a sorted along dim (descending if asked; equal entries keep their order, as
    torch's stable sort);  δ_prev_{i_k} = δ_k."""

    def __init__(self, dim: int = -1, descending: bool = False) -> None:
        super().__init__(dim, True)
        self.descending = bool(descending)

    def __repr__(self) -> str:
        return f"Sort(dim={self.dim}, descending={self.descending})"

    def _count(self, n: int) -> int:
        return n

    def _positions(self, x: Array, d: int) -> Array:
        return np.argsort(-x if self.descending else x, axis=d, kind="stable")


class TopK(_Picks):
    """(z, i) = the k largest (or smallest) entries along dim, largest first (smallest first);
    δ_prev_{i_j} = δ_j."""

    def __init__(self, k: int, dim: int = -1, largest: bool = True) -> None:
        super().__init__(dim, True)
        self.k, self.largest = int(k), bool(largest)

    def __repr__(self) -> str:
        return f"TopK(k={self.k}, dim={self.dim}, largest={self.largest})"

    def _count(self, n: int) -> int:
        if not 0 <= self.k <= n:
            raise ValueError(
                f"topk: expected k in [0, {n}] (the size of dim {self.dim}), got {self.k}"
            )
        return self.k

    def _positions(self, x: Array, d: int) -> Array:
        order = Sort(d, descending=self.largest)._positions(x, d)
        return np.take(order, np.arange(self.k), axis=d)


class KthValue(_Picks):
    """(z, i) = the k-th smallest entry along dim (k from 1);  δ_prev_i = δ."""

    def __init__(self, k: int, dim: int = -1, keepdim: bool = False) -> None:
        super().__init__(dim, keepdim)
        self.k = int(k)

    def __repr__(self) -> str:
        return f"KthValue(k={self.k}, dim={self.dim}, keepdim={self.keepdim})"

    def _count(self, n: int) -> int | None:
        if not 1 <= self.k <= max(n, 1):
            raise ValueError(
                f"kthvalue: expected k in [1, {n}] (the size of dim {self.dim}), got {self.k}"
            )
        return 1 if self.keepdim else None

    def _rank(self, n: int) -> int:
        return self.k - 1

    def _positions(self, x: Array, d: int) -> Array:
        order = np.argsort(x, axis=d, kind="stable")
        return np.take(order, [self._rank(x.shape[d])], axis=d)


class MedianDim(KthValue):
    """(z, i) = the lower median along dim, the ((n − 1) // 2)-th smallest (from 0);
    δ_prev_i = δ."""

    def __init__(self, dim: int = -1, keepdim: bool = False) -> None:
        super().__init__(1, dim, keepdim)

    def __repr__(self) -> str:
        return f"MedianDim(dim={self.dim}, keepdim={self.keepdim})"

    def _count(self, n: int) -> int | None:
        if n == 0:
            raise ValueError(f"median: expected a nonempty dim {self.dim}, got size 0")
        return 1 if self.keepdim else None

    def _rank(self, n: int) -> int:
        return (n - 1) // 2


class NanMedianDim(MedianDim):
    """(z, i) = the lower median of the non-NaN entries along dim, the ((m − 1) // 2)-th
    smallest of the m that are not NaN (an all-NaN slice: NaN at its first entry, as torch);
    δ_prev_i = δ."""

    def __repr__(self) -> str:
        return f"NanMedianDim(dim={self.dim}, keepdim={self.keepdim})"

    def _positions(self, x: Array, d: int) -> Array:
        order = np.argsort(x, axis=d, kind="stable")  # NaN last
        m = np.sum(~np.isnan(x), axis=d, keepdims=True)
        return np.take_along_axis(order, np.maximum(m - 1, 0) // 2, axis=d)


class Mode(_Picks):
    """(z, i) = the most frequent value along dim (the smallest of equally frequent ones) and
    the last index holding it, as torch's CPU mode;  δ_prev_i = δ."""

    def __repr__(self) -> str:
        return f"Mode(dim={self.dim}, keepdim={self.keepdim})"

    def _count(self, n: int) -> int | None:
        if n == 0:
            raise ValueError(f"mode: expected a nonempty dim {self.dim}, got size 0")
        return 1 if self.keepdim else None

    def _positions(self, x: Array, d: int) -> Array:
        xs = np.moveaxis(x, d, -1)  # (…, n)
        same = xs[..., :, None] == xs[..., None, :]
        count = same.sum(-1)
        top = count == count.max(-1, keepdims=True)
        value = np.where(top, xs, np.inf).min(-1, keepdims=True)
        n = xs.shape[-1]
        last = np.where(xs == value, np.arange(n), -1).max(-1, keepdims=True)
        return np.moveaxis(last, -1, d)


class Median(Layer):
    """z = the lower median of all entries;  δ_prev = δ · [a = z] / #{a = z} (shared evenly by
    the entries equal to it: evenly_distribute_backward). `ignore_nan`: nanmedian, the
    lower median of the entries that are not NaN."""

    def __init__(self, ignore_nan: bool = False) -> None:
        super().__init__()
        self.ignore_nan = bool(ignore_nan)

    def __repr__(self) -> str:
        return "NanMedian()" if self.ignore_nan else "Median()"

    def shape(self, in_shape: Shape) -> Shape:
        if int(np.prod(in_shape, dtype=np.int64)) == 0:
            raise ValueError(f"median: expected a nonempty input, got shape {tuple(in_shape)}")
        return ()

    def forward(self, a: Array) -> tuple[Array, tuple[Array, Array]]:
        self.shape(a.shape)
        flat = np.sort(a.reshape(-1))  # NaN last
        m = flat.size if not self.ignore_nan else int(np.sum(~np.isnan(flat)))
        z = flat[max(m - 1, 0) // 2]
        return np.asarray(z), (a, z)

    def backward(self, delta: Array, cache: tuple[Array, Array]) -> tuple[Array, dict]:
        a, z = cache
        mask = a == z
        return mask * (delta / mask.sum()), {}

    def ties(self, a: Array) -> tuple[Array]:
        return (_tied_in_slice(a.reshape(-1), 0).reshape(a.shape),)


QUANTILE_MODES = ("linear", "lower", "higher", "nearest", "midpoint")


class Quantile(Layer):
    """z = the q-quantiles of a along dim (all entries when dim is None), q a number or a 1-d
    list in [0, 1] (a leading dim of the output): with the slice sorted, s, and p = q (n − 1),
    linear: lerp(s_⌊p⌋, s_⌈p⌉, p − ⌊p⌋) (torch's two-branch lerp), lower / higher: s_⌊p⌋ /
    s_⌈p⌉, nearest: s at p rounded half to even, midpoint: (s_⌊p⌋ + s_⌈p⌉)/2;
    δ_prev: each of the two sorted entries' weight times δ, sent to where it came from. Equal
    entries are ties (which one the sort puts first is rounding's choice)."""

    def __init__(
        self, q: Any, dim: int | None = None, keepdim: bool = False, interpolation: str = "linear"
    ) -> None:
        super().__init__()
        self.q = np.asarray(q, dtype=np.float64)
        if self.q.ndim > 1 or np.any((self.q < 0) | (self.q > 1)):
            raise ValueError(f"quantile: expected q a number or a 1-d list in [0, 1], got {q!r}")
        if interpolation not in QUANTILE_MODES:
            raise ValueError(
                f"quantile: expected interpolation in {QUANTILE_MODES}, got {interpolation!r}"
            )
        self.dim, self.keepdim, self.interpolation = dim, bool(keepdim), interpolation

    def __repr__(self) -> str:
        return (
            f"Quantile(q={self.q.tolist()}, dim={self.dim}, keepdim={self.keepdim}, "
            f"interpolation={self.interpolation!r})"
        )

    def _moved(self, shape: Shape) -> tuple[int, Shape]:
        """The axis reduced (of a flattened input when dim is None) and the kept shape."""
        if self.dim is None:
            return 0, ((1,) * len(shape) if self.keepdim else ())
        d = _axis(self.dim, max(len(shape), 1), "dim", shape)
        kept = (
            tuple(1 if k == d else n for k, n in enumerate(shape))
            if self.keepdim
            else tuple(n for k, n in enumerate(shape) if k != d)
        )
        return d, kept

    def shape(self, in_shape: Shape) -> Shape:
        n = (
            int(np.prod(in_shape, dtype=np.int64))
            if self.dim is None
            else (in_shape[self._moved(in_shape)[0]] if in_shape else 1)
        )
        if n == 0:
            raise ValueError(f"quantile: expected a nonempty input, got shape {tuple(in_shape)}")
        _, kept = self._moved(in_shape)
        return (*self.q.shape, *kept)

    def _weights(self, n: int) -> tuple[Array, Array, Array]:
        """Per q: the lower and upper sorted positions and the upper one's weight."""
        p = np.atleast_1d(self.q) * (n - 1)
        lo, hi = np.floor(p).astype(np.int64), np.ceil(p).astype(np.int64)
        w = p - lo
        mode = self.interpolation
        if mode == "lower":
            hi, w = lo, np.zeros_like(w)
        elif mode == "higher":
            lo, w = hi, np.zeros_like(w)
        elif mode == "nearest":
            lo = hi = np.rint(p).astype(np.int64)
            w = np.zeros_like(w)
        elif mode == "midpoint":
            w = np.where(hi > lo, 0.5, 0.0)
        return lo, hi, w

    def forward(self, a: Array) -> tuple[Array, Any]:
        out_shape = self.shape(a.shape)
        x = a.reshape(-1) if self.dim is None else (a.reshape(1) if a.ndim == 0 else a)
        d = 0 if self.dim is None else _axis(self.dim, x.ndim, "dim", a.shape)
        xs = np.moveaxis(x, d, -1)
        order = np.argsort(xs, axis=-1, kind="stable")
        s = np.take_along_axis(xs, order, -1)
        lo, hi, w = self._weights(xs.shape[-1])
        v_lo, v_hi = s[..., lo], s[..., hi]  # (..., len q)
        diff = v_hi - v_lo
        if self.interpolation == "linear":  # torch's lerp: two branches by the weight
            z = np.where(w < 0.5, v_lo + w * diff, v_hi - diff * (1 - w))
        else:
            z = v_lo + w * diff if self.interpolation == "midpoint" else v_lo
        z = np.moveaxis(z, -1, 0)  # (len q, ...)
        if self.keepdim and self.dim is not None:
            z = np.expand_dims(z, d + 1)
        return z.reshape(out_shape), (a.shape, x.shape, d, order, lo, hi, w)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict]:
        a_shape, x_shape, d, order, lo, hi, w = cache
        k = len(np.atleast_1d(self.q))
        g = delta.reshape(k, *order.shape[:-1])  # (len q, ...)
        g = np.moveaxis(g, 0, -1)  # (..., len q)
        gs = np.zeros(order.shape)
        np.add.at(np.moveaxis(gs, -1, 0), lo, np.moveaxis(g * (1 - w), -1, 0))
        np.add.at(np.moveaxis(gs, -1, 0), hi, np.moveaxis(g * w, -1, 0))
        gx = np.zeros(order.shape)
        np.put_along_axis(gx, order, gs, axis=-1)
        return np.moveaxis(gx, -1, d).reshape(a_shape), {}

    def ties(self, a: Array) -> tuple[Array]:
        x = a.reshape(-1) if self.dim is None else (a.reshape(1) if a.ndim == 0 else a)
        d = 0 if self.dim is None else _axis(self.dim, x.ndim, "dim", a.shape)
        return (_tied_in_slice(x, d).reshape(a.shape),)
