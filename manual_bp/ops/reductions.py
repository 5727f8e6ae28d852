"""Reductions over dims, each forward beside its backward:

    Sum, Mean                 δ broadcast back (÷ m for the mean)
    Amax, Amin                δ shared evenly by the tied extrema (torch's scale_grad_by_count)
    MaxDim, MinDim            (values, indices); δ to the index torch returns (its first)
    LogSumExp                 δ ⊙ e^{x − z}
    Var, Std                  δ · 2(x − x̄)/(N − correction) (÷ 2σ for std; 0 where σ = 0)
    Norm                      vector p-norms: p = 2, 1, ±inf, any p ≠ 0 (torch's norm_backward)

`dims` None or () reduces over every dim, as torch's; negative dims wrap. The max-like ones
and the kinks of std and the norms name their ties (see manual_bp.ops.base).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from manual_bp.ops.base import TIE_RTOL, Array, Layer, Shape, _axis, near


def _scale(x: Array) -> float:
    """The magnitude ties are measured against: max |x| over the whole tensor."""
    return float(np.max(np.abs(x), initial=0.0))


class _OverDims(Layer):
    """A reduction over `dims` (all when None or ()), keeping them as size 1 if keepdim."""

    #: what torch calls it, for messages
    op = "reduction"
    #: refuse a reduction over an empty slice (torch errors, or returns −inf / NaN)
    needs_nonempty = False

    def __init__(self, dims: int | Sequence[int] | None = None, keepdim: bool = False) -> None:
        super().__init__()
        if isinstance(dims, (int, np.integer)):
            dims = (int(dims),)
        self.dims = None if dims is None else tuple(int(d) for d in dims)
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

    def _count(self, in_shape: Shape, axes: tuple[int, ...]) -> int:
        """How many entries each output reduces."""
        return math.prod([in_shape[i] for i in axes])

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        axes = self._axes(in_shape)
        if self.needs_nonempty and self._count(in_shape, axes) == 0:
            raise ValueError(
                f"{self.op}: expected nonempty slices to reduce, got dims {self.dims} of shape "
                f"{in_shape} ({self._empty_reason})"
            )
        if self.keepdim:
            return tuple(1 if i in axes else n for i, n in enumerate(in_shape))
        return tuple(n for i, n in enumerate(in_shape) if i not in axes)

    _empty_reason = "torch refuses it"

    def _back(self, t: Array, axes: tuple[int, ...]) -> Array:
        """An output-shaped t with the reduced axes put back as size 1 (broadcasts on x)."""
        return t if self.keepdim else np.expand_dims(t, axes)


class Sum(_OverDims):
    """z = Σ a over dims (all when dims is None or ());  δ_prev = δ broadcast back."""

    op = "sum"

    def _divisor(self, in_shape: Shape, axes: tuple[int, ...]) -> int:
        return 1

    def forward(self, a: Array) -> tuple[Array, tuple[Shape, tuple[int, ...]]]:
        self.shape(a.shape)
        axes = self._axes(a.shape)
        z = a.sum(axis=axes, keepdims=self.keepdim) / self._divisor(a.shape, axes)
        return z, (a.shape, axes)

    def backward(
        self, delta: Array, cache: tuple[Shape, tuple[int, ...]]
    ) -> tuple[Array, dict[str, Array]]:
        in_shape, axes = cache
        delta = self._back(delta, axes)
        return np.broadcast_to(delta / self._divisor(in_shape, axes), in_shape).copy(), {}


class Mean(Sum):
    """z = mean of a over dims (all when dims is None or ());  δ_prev = δ / m broadcast back."""

    op = "mean"
    needs_nonempty = True
    _empty_reason = "torch would return nan"

    def _divisor(self, in_shape: Shape, axes: tuple[int, ...]) -> int:
        return self._count(in_shape, axes)


# --- maxima and minima ------------------------------------------------------------------


def _tied_extrema(x: Array, extreme: Array, axes: tuple[int, ...]) -> Array:
    """Entries within TIE_RTOL·max|x| of their slice's extreme, in slices where two or more
    are: where rounding decides which ones torch counts as the maximum."""
    close = np.abs(x - extreme) <= TIE_RTOL * _scale(x)
    return close & (close.sum(axis=axes, keepdims=True) >= 2)


class Amax(_OverDims):
    """z = max of a over dims;  δ_prev = δ · [a = z] / #{a = z} (ties share δ evenly)."""

    op = "amax"
    needs_nonempty = True
    pick: Any = staticmethod(np.max)

    def forward(self, a: Array) -> tuple[Array, tuple[Array, Array, tuple[int, ...]]]:
        self.shape(a.shape)
        axes = self._axes(a.shape)
        z = type(self).pick(a, axis=axes, keepdims=True)
        out = z if self.keepdim else np.squeeze(z, axis=axes)
        return out, (a, z, axes)

    def backward(
        self, delta: Array, cache: tuple[Array, Array, tuple[int, ...]]
    ) -> tuple[Array, dict[str, Array]]:
        a, z, axes = cache
        is_max = a == z  # (shape of a)
        # NOTE: tied extrema share δ evenly (scale_grad_by_count), unlike max(dim)'s index.
        return is_max * (self._back(delta, axes) / is_max.sum(axis=axes, keepdims=True)), {}

    def ties(self, a: Array) -> tuple[Array]:
        axes = self._axes(a.shape)
        return (_tied_extrema(a, type(self).pick(a, axis=axes, keepdims=True), axes),)


class Amin(Amax):
    """z = min of a over dims;  δ_prev = δ · [a = z] / #{a = z} (ties share δ evenly)."""

    op = "amin"
    pick = staticmethod(np.min)


class MaxDim(Layer):
    """(z, i) = (max, argmax) of a along dim;  δ_prev = δ scattered to index i (torch returns
    the first of tied maxima; the indices carry no gradient)."""

    n_outputs = 2
    op = "max"
    arg: Any = staticmethod(np.argmax)

    def __init__(self, dim: int, keepdim: bool = False) -> None:
        super().__init__()
        self.dim, self.keepdim = int(dim), bool(keepdim)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, keepdim={self.keepdim})"

    def shape(self, in_shape: Shape) -> tuple[Shape, Shape]:  # type: ignore[override]
        in_shape = tuple(in_shape)
        d = _axis(self.dim, max(len(in_shape), 1), "dim", in_shape)
        if not in_shape:  # a 0-d input: the value itself and index 0
            return (), ()
        if in_shape[d] == 0:
            raise ValueError(
                f"{self.op}: expected a nonempty dim {self.dim} to reduce, got shape {in_shape} "
                "(torch refuses it)"
            )
        out = in_shape[:d] + ((1,) if self.keepdim else ()) + in_shape[d + 1 :]
        return out, out

    def forward(self, a: Array) -> tuple[tuple[Array, Array], tuple[Shape, Shape, Array, int]]:
        out_shape, _ = self.shape(a.shape)
        x = a.reshape(1) if a.ndim == 0 else a
        d = self.dim % x.ndim
        i = np.expand_dims(self.arg(x, axis=d), d)  # first of tied extrema, as torch's
        z = np.take_along_axis(x, i, axis=d)
        return (z.reshape(out_shape), i.reshape(out_shape).astype(np.int64)), (
            x.shape,
            a.shape,
            i,
            d,
        )

    def backward(
        self, delta: tuple[Array | None, Array | None], cache: tuple[Shape, Shape, Array, int]
    ) -> tuple[Array, dict[str, Array]]:
        x_shape, in_shape, i, d = cache
        out = np.zeros(x_shape)
        if delta[0] is not None:  # the values' δ; the indices carry none
            np.put_along_axis(out, i, delta[0].reshape(i.shape), axis=d)
        return out.reshape(in_shape), {}

    def ties(self, a: Array) -> tuple[Array]:
        if a.ndim == 0:
            return (np.zeros((), dtype=bool),)
        d = self.dim % a.ndim
        extreme = (np.max if self.arg is np.argmax else np.min)(a, axis=d, keepdims=True)
        return (_tied_extrema(a, extreme, (d,)),)


class MinDim(MaxDim):
    """(z, i) = (min, argmin) of a along dim;  δ_prev = δ scattered to index i."""

    op = "min"
    arg = staticmethod(np.argmin)


# --- logsumexp, variance, norms ---------------------------------------------------------


class LogSumExp(_OverDims):
    """z = log Σ eˣ over dims (as m + log Σ e^{x − m}, m the max);  δ_prev = δ e^{x − z}."""

    op = "logsumexp"
    needs_nonempty = True
    _empty_reason = "torch would return -inf"

    def shape(self, in_shape: Shape) -> Shape:
        if not self.dims:
            raise ValueError(
                f"logsumexp: expected at least one dim, got {self.dims!r} (torch requires dim "
                "and fails on dim=())"
            )
        return super().shape(in_shape)

    def forward(self, x: Array) -> tuple[Array, tuple[Array, Array, tuple[int, ...]]]:
        self.shape(x.shape)
        axes = self._axes(x.shape)
        m = np.max(x, axis=axes, keepdims=True)
        z = m + np.log(np.exp(x - m).sum(axis=axes, keepdims=True))
        out = z if self.keepdim else np.squeeze(z, axis=axes)
        return out, (x, z, axes)

    def backward(
        self, delta: Array, cache: tuple[Array, Array, tuple[int, ...]]
    ) -> tuple[Array, dict[str, Array]]:
        x, z, axes = cache
        return self._back(delta, axes) * np.exp(x - z), {}


class Var(_OverDims):
    """z = Σ (x − x̄)² / (N − correction) over dims;  δ_prev = δ · 2(x − x̄)/(N − correction)."""

    op = "var"

    def __init__(
        self,
        dims: int | Sequence[int] | None = None,
        correction: float = 1.0,
        keepdim: bool = False,
    ) -> None:
        super().__init__(dims, keepdim)
        if isinstance(correction, bool) or not isinstance(
            correction, (int, float, np.integer, np.floating)
        ):
            raise ValueError(f"{self.op}: expected a number as correction, got {correction!r}")
        if not math.isfinite(correction):
            raise ValueError(f"{self.op}: expected a finite correction, got {correction}")
        self.correction = float(correction)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dims={self.dims}, correction={self.correction}, "
            f"keepdim={self.keepdim})"
        )

    def shape(self, in_shape: Shape) -> Shape:
        out = super().shape(in_shape)
        n = self._count(tuple(in_shape), self._axes(tuple(in_shape)))
        if n - self.correction <= 0:
            raise ValueError(
                f"{self.op}: expected more entries per slice than the correction, got {n} "
                f"entries and correction {self.correction} (torch would return nan or inf)"
            )
        return out

    def _moments(self, x: Array) -> tuple[Array, Array, float, tuple[int, ...]]:
        """(x − x̄, Σ(x − x̄)²/(N − c) kept as size-1 dims, N − c, axes)."""
        axes = self._axes(x.shape)
        dof = self._count(x.shape, axes) - self.correction
        centred = x - x.mean(axis=axes, keepdims=True)
        return centred, (centred * centred).sum(axis=axes, keepdims=True) / dof, dof, axes

    def _out(self, t: Array, axes: tuple[int, ...]) -> Array:
        return t if self.keepdim else np.squeeze(t, axis=axes)

    def forward(self, x: Array) -> tuple[Array, tuple[Array, float, tuple[int, ...]]]:
        self.shape(x.shape)
        centred, var, dof, axes = self._moments(x)
        return self._out(var, axes), (centred, dof, axes)

    def backward(
        self, delta: Array, cache: tuple[Array, float, tuple[int, ...]]
    ) -> tuple[Array, dict[str, Array]]:
        centred, dof, axes = cache
        return (2.0 / dof) * self._back(delta, axes) * centred, {}


class Std(Var):
    """z = √var;  δ_prev = var's δ_prev for δ/(2z), 0 in slices where z = 0 (std_backward)."""

    op = "std"

    def forward(self, x: Array) -> tuple[Array, tuple[Array, float, tuple[int, ...], Array]]:
        self.shape(x.shape)
        centred, var, dof, axes = self._moments(x)
        std = np.sqrt(var)
        return self._out(std, axes), (centred, dof, axes, std)

    def backward(
        self, delta: Array, cache: tuple[Array, float, tuple[int, ...], Array]
    ) -> tuple[Array, dict[str, Array]]:
        centred, dof, axes, std = cache
        with np.errstate(divide="ignore", invalid="ignore"):
            d_var = np.where(std == 0.0, 0.0, self._back(delta, axes) / (2.0 * std))
        return (2.0 / dof) * d_var * centred, {}

    def ties(self, x: Array) -> tuple[Array]:
        """Slices whose σ is within TIE_RTOL·max|x| of 0: a constant slice in one library
        can hold rounding noise in the other, and δ/σ then jumps from 0 to O(1)."""
        _, var, _, _ = self._moments(x)
        flat = np.sqrt(var) <= TIE_RTOL * _scale(x)
        return (np.broadcast_to(flat, x.shape).copy(),)


class Norm(_OverDims):
    """z = (Σ |x|^p)^{1/p} over dims (p = ±inf: max/min |x|);  δ_prev as torch's norm_backward:
    p = 1: sgn x · δ;  p = 2: x δ / z;  p = ±inf: sgn x · δ over the tied extrema, shared;
    otherwise sgn x · |x|^{p−1} · δ / z^{p−1};  0 where z = 0 (and where x = 0 for p < 1)."""

    op = "norm"

    def __init__(
        self,
        p: float = 2.0,
        dims: int | Sequence[int] | None = None,
        keepdim: bool = False,
    ) -> None:
        super().__init__(dims, keepdim)
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise ValueError(f"norm: expected a number as ord/p, got {p!r}")
        if p == 0 or math.isnan(p):
            raise ValueError(
                f"norm: p = {p} is not supported (p = 0 counts nonzeros; torch gives no gradient)"
            )
        self.p = float(p)

    def __repr__(self) -> str:
        return f"Norm(p={self.p}, dims={self.dims}, keepdim={self.keepdim})"

    def shape(self, in_shape: Shape) -> Shape:
        out = super().shape(in_shape)
        if math.isinf(self.p) and self._count(tuple(in_shape), self._axes(tuple(in_shape))) == 0:
            raise ValueError(
                f"norm: expected nonempty slices for the inf norm, got dims {self.dims} of "
                f"shape {tuple(in_shape)} (torch refuses it)"
            )
        return out

    def _norm(self, x: Array, axes: tuple[int, ...]) -> Array:
        """z with the reduced dims kept as size 1."""
        p, ax = self.p, np.abs(x)
        if p == math.inf:
            return np.max(ax, axis=axes, keepdims=True)
        if p == -math.inf:
            return np.min(ax, axis=axes, keepdims=True)
        if p == 1.0:
            return ax.sum(axis=axes, keepdims=True)
        if p == 2.0:
            return np.sqrt((x * x).sum(axis=axes, keepdims=True))
        with np.errstate(divide="ignore", over="ignore"):  # p < 0 at x = 0: Σ = inf, z = 0
            return np.power(np.power(ax, p).sum(axis=axes, keepdims=True), 1.0 / p)

    def forward(self, x: Array) -> tuple[Array, tuple[Array, Array, tuple[int, ...]]]:
        self.shape(x.shape)
        axes = self._axes(x.shape)
        z = self._norm(x, axes)
        return (z if self.keepdim else np.squeeze(z, axis=axes)), (x, z, axes)

    def backward(
        self, delta: Array, cache: tuple[Array, Array, tuple[int, ...]]
    ) -> tuple[Array, dict[str, Array]]:
        x, z, axes = cache
        p, g = self.p, self._back(delta, axes)
        if p == 1.0:
            return np.sign(x) * g, {}
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if math.isinf(p):  # the tied extrema of |x| share δ evenly
                is_ext = np.abs(x) == z
                return np.sign(x) * is_ext * (g / is_ext.sum(axis=axes, keepdims=True)), {}
            if p == 2.0:
                x_scaled, scale = x, g / z
            elif p < 1.0:  # |x|^{p−1} is inf at x = 0: torch takes 0 there
                x_scaled = np.where(x == 0.0, 0.0, np.sign(x) * np.power(np.abs(x), p - 1.0))
                return x_scaled * g * np.power(z, 1.0 - p), {}
            elif p < 2.0:
                x_scaled, scale = (
                    np.sign(x) * np.power(np.abs(x), p - 1.0),
                    g / np.power(z, p - 1.0),
                )
            else:
                x_scaled, scale = x * np.power(np.abs(x), p - 2.0), g / np.power(z, p - 1.0)
            # NOTE: the subgradient 0 where the norm is 0, as torch's norm_backward.
            return x_scaled * np.where(z == 0.0, 0.0, scale), {}

    def ties(self, x: Array) -> tuple[Array]:
        """p ≤ 1: entries near 0 (sgn x jumps there); p > 1: slices whose norm is near 0
        (x/‖x‖ jumps from 0); p = ±inf: also the tied extrema of |x|."""
        axes = self._axes(x.shape)
        if self.p <= 1.0:
            return (near(x, (0.0,)),)
        z = self._norm(x, axes)
        mask = np.broadcast_to(z <= TIE_RTOL * _scale(x), x.shape).copy()
        if math.isinf(self.p):
            mask |= _tied_extrema(np.abs(x), z, axes)
        return (mask,)


class Prod(_OverDims):
    """z = Π a over one dim (or all);  δ_prev = δ · Π_{others} a: δ z / a where the slice has
    no zero; at a slice's only zero, δ times the product of the rest; 0 elsewhere in a slice
    with a zero (torch's prod_backward)."""

    op = "prod"

    def __init__(self, dim: int | None = None, keepdim: bool = False) -> None:
        super().__init__(None if dim is None else (int(dim),), keepdim)

    def forward(self, a: Array) -> tuple[Array, Any]:
        self.shape(a.shape)
        axes = self._axes(a.shape)
        z = np.prod(a, axis=axes, keepdims=True)
        return (z if self.keepdim else np.squeeze(z, axis=axes)), (a, axes)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        a, axes = cache
        g = self._back(delta, axes)
        zero = a == 0
        k = zero.sum(axis=axes, keepdims=True)
        rest = np.prod(np.where(zero, 1.0, a), axis=axes, keepdims=True)  # Π of the nonzero
        with np.errstate(divide="ignore", invalid="ignore"):
            others = np.where(
                k == 0, rest / np.where(zero, 1.0, a), np.where(zero & (k == 1), rest, 0.0)
            )
        return g * others, {}
