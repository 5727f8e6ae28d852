"""Pooling: max and average over fixed and adaptive windows, forward and backward side by side.

A pooling layer has no parameters: each output pixel p looks at a window of its own input
plane. Read as a layer with fixed weights, it says where δ goes:

    max      z[p] = x[w(p)], w(p) the window's first maximum     δ_prev[w(p)] += δ[p]
    average  z[p] = Σ_{q ∈ window(p)} x[q] / divisor(p)           δ_prev[q] += δ[p] / divisor(p)
    power    z[p] = (K · avg_p(x^P))^(1/P)    (torch's LPPool; K the kernel's size)
             δ_prev = avg_pᵀ(δ z^(1−P) / divisor) · x^(P−1)          (0 where the sum is 0)

Max routes δ to the input that won (weight 1 there, 0 elsewhere); average spreads it evenly
over the window. Where windows overlap (stride < kernel) an input collects the δ of every
window it sits in.

Windows are separable: one table per spatial axis gives the input positions of output o's
window along that axis (outside [0, L) where the window is on padding).

    fixed     s·o − p + d·j,  j = 0..k−1   (torch's max_pool / avg_pool)
    adaptive  ⌊o·L/out⌋ .. ⌈(o+1)·L/out⌉ − 1   (torch's adaptive pools; windows vary in size)

Average pooling is then a product of (out, L) window-indicator matrices, one per axis,
z = (1_H x 1_Wᵀ) / divisor, whose transpose is its backward. Max pooling visits the
window's taps one kernel offset at a time, in torch's row-major order, and keeps the first
strict maximum, as torch's kernels do.

Ties. Where two entries of a window are (nearly) equal maxima, rounding upstream decides
which one wins, and torch and NumPy may route δ to different cells. `ties(x)` marks, in
every window whose maximum and runner-up lie within TIE_RTOL · max|x| of each other, the
entries within that distance of the maximum (see manual_bp.ops.base).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from manual_bp.ops.base import TIE_RTOL, Array, Layer, Shape, near
from manual_bp.ops.conv import ntuple

Size = int | Sequence[int]

# --- windows, one table per spatial axis ---------------------------------------------


def pooling_output_size(L: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling_output_shape: ⌊ or ⌈(L + 2p − d(k − 1) − 1)/s⌉ + 1, the last window
    starting inside the input or its left padding."""
    size = (L + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (size - 1) * s >= L + p:
        size -= 1
    return size


def fixed_windows(k: int, s: int, p: int, d: int, out: int) -> Array:
    """(out, k): the input position s·o − p + d·j of tap j of window o (outside [0, L): padding)."""
    return s * np.arange(out)[:, None] - p + d * np.arange(k)


def adaptive_bounds(L: int, out: int) -> tuple[Array, Array]:
    """torch's adaptive windows: start = ⌊o·L/out⌋, end = ⌈(o+1)·L/out⌉."""
    o = np.arange(out)
    return o * L // out, -(-(o + 1) * L // out)


def adaptive_windows(L: int, out: int) -> Array:
    """(out, k_max): the input positions of each adaptive window, L (padding) past its end."""
    start, end = adaptive_bounds(L, out)
    pos = start[:, None] + np.arange((end - start).max())
    return np.where(pos < end[:, None], pos, L)


def indicator(windows: Array, L: int) -> Array:
    """(out, L): 1 where input position l is in window o (taps on padding dropped)."""
    on_input = (windows >= 0) & (windows < L)
    rows = np.broadcast_to(np.arange(windows.shape[0])[:, None], windows.shape)
    M = np.zeros((windows.shape[0], L))
    M[rows[on_input], windows[on_input]] = 1.0
    return M


def along_axes(x: Array, mats: Sequence[Array]) -> Array:
    """y = x ×₁ M₁ ×₂ M₂ …: the last len(mats) axes each contracted with its (out, in) matrix."""
    n = len(mats)
    for a, M in enumerate(mats):
        axis = x.ndim - n + a
        x = np.swapaxes(np.swapaxes(x, axis, -1) @ M.T, axis, -1)
    return x


def outer(factors: Sequence[Array]) -> Array:
    """f₁ ⊗ f₂ ⊗ …: the per-axis factors multiplied into one array over the output pixels."""
    result = np.ones(())
    for f in factors:
        result = np.multiply.outer(result, f)
    return result


def _pick(x: Array, axis: int, positions: Array) -> Array:
    """x at `positions` along `axis`: a strided view where they are evenly spaced."""
    step = int(positions[1] - positions[0]) if len(positions) > 1 else 1
    if step > 0 and np.array_equal(positions, positions[0] + step * np.arange(len(positions))):
        start, stop = int(positions[0]), int(positions[-1]) + 1
        return x[(slice(None),) * axis + (slice(start, stop, step),)]
    return np.take(x, positions, axis=axis)


def _taps(x: Array, tables: Sequence[Array]) -> Iterator[tuple[Array, Array]]:
    """For each kernel offset, in the window's row-major order: the value each window sees
    there (..., *out), −∞ on padding, and its flat position in the input plane (clipped)."""
    n, lead = len(tables), x.ndim - len(tables)
    spatial = x.shape[lead:]
    # −∞ padding wide enough for every tap outside the input
    pads = [
        (max(0, -int(t.min())), max(0, int(t.max()) - L + 1))
        for t, L in zip(tables, spatial, strict=True)
    ]
    if any(lo or hi for lo, hi in pads):
        x_pad = np.pad(x, ((0, 0),) * lead + tuple(pads), constant_values=-np.inf)
    else:  # every tap on the input: no copy
        x_pad = x
    for taps in np.ndindex(*(t.shape[1] for t in tables)):  # one kernel offset at a time
        at = [t[:, j] for t, j in zip(tables, taps, strict=True)]  # (out_a,) input positions
        value = x_pad
        for axis, (a, (lo, _)) in enumerate(zip(at, pads, strict=True)):
            value = _pick(value, lead + axis, a + lo)  # (..., *out) once every axis is picked
        grid = tuple(
            a.reshape([-1 if b == axis else 1 for b in range(n)]) for axis, a in enumerate(at)
        )
        yield value, np.ravel_multi_index(grid, spatial, mode="clip")


def max_pool(x: Array, tables: Sequence[Array]) -> tuple[Array, Array]:
    """z = max over each window, and which tap of the window won: the first maximum in the
    window's row-major order, as torch keeps it (`if val > maxval`). Returns z and the
    winning taps' flat index into the window (..., *out), as small unsigned ints.

    Taps on padding read −∞ and never win over a finite input."""
    values = [value for value, _ in _taps(x, tables)]  # one strided view per kernel offset
    z = values[0].copy()
    for value in values[1:]:
        np.maximum(z, value, out=z)
    # the first tap equal to the maximum: the later taps are written first, the earlier win
    tap = np.zeros(z.shape, dtype=np.min_scalar_type(len(values) - 1))
    for j in range(len(values) - 1, -1, -1):
        np.copyto(tap, j, where=values[j] == z)
    return z, tap


def winner_positions(tap: Array, tables: Sequence[Array], spatial: Shape, dilation: Shape) -> Array:
    """The flat position in its input plane of each window's winning tap (..., *out): the
    window's first tap's position plus the winning tap's offset from it, d·j along each
    axis (the same for every window; windows start where their tables say)."""
    n = len(tables)
    strides = [int(np.prod(spatial[a + 1 :])) for a in range(n)]  # of each axis in a plane
    first = sum(
        t[:, 0].reshape([-1 if b == a else 1 for b in range(n)]) * stride
        for a, (t, stride) in enumerate(zip(tables, strides, strict=True))
    )  # (*out): may lie on the padding; the winner never does
    kernel = [t.shape[1] for t in tables]
    offsets = sum(
        d * j * stride
        for j, d, stride in zip(np.indices(kernel).reshape(n, -1), dilation, strides, strict=True)
    )  # (K,): tap j's offset from the window's first tap
    return first + offsets[tap]


def max_pool_ties(x: Array, tables: Sequence[Array]) -> Array:
    """The entries of x tied for a window's maximum: within TIE_RTOL · max|x| of it, in a
    window where at least two taps on the input are (the max and its runner-up)."""
    n = len(tables)
    finite = np.abs(x[np.isfinite(x)])
    tol = TIE_RTOL * float(finite.max(initial=0.0))
    z, _ = max_pool(x, tables)
    # taps on the input (not on padding): a window's count of entries within tol of its max
    on_input = [(t >= 0) & (t < L) for t, L in zip(tables, x.shape[-n:], strict=True)]
    valid = [
        outer([ok[:, j] for ok, j in zip(on_input, taps, strict=True)]).astype(bool)
        for taps in np.ndindex(*(t.shape[1] for t in tables))
    ]
    count = np.zeros(z.shape, dtype=np.intp)
    for (value, _), ok in zip(_taps(x, tables), valid, strict=True):
        count += (value >= z - tol) & ok
    # mark the tied taps of every tied window, each input plane at its own offset
    planes = int(np.prod(x.shape[:-n]))
    plane = int(np.prod(x.shape[-n:]))
    offset = (np.arange(planes) * plane).reshape(*x.shape[:-n], *(1,) * n)
    mask = np.zeros(x.size, dtype=bool)
    for (value, position), ok in zip(_taps(x, tables), valid, strict=True):
        tied = (count >= 2) & (value >= z - tol) & ok
        mask[(position + offset)[tied]] = True
    return mask.reshape(x.shape)


def route_to_winner(delta: Array, winner: Array, in_shape: Shape, n: int) -> Array:
    """δ_prev[w(p)] += δ[p]: a scatter-add over flat positions, one offset per input plane."""
    plane = int(np.prod(in_shape[-n:]))
    planes = int(np.prod(in_shape[:-n]))
    offset = (np.arange(planes) * plane).reshape(*in_shape[:-n], *(1,) * n)
    dx = np.bincount((winner + offset).ravel(), weights=delta.ravel(), minlength=planes * plane)
    return dx.reshape(in_shape)


# --- the layers ------------------------------------------------------------------------


class _PoolNd(Layer):
    """Shared input check: (N, C, *spatial) or unbatched (C, *spatial), no empty dim but N."""

    n_spatial: ClassVar[int]

    def _spatial(self, in_shape: Shape) -> tuple[int, ...]:
        n = self.n_spatial
        names = {1: "L", 2: "H, W", 3: "D, H, W"}[n]
        if len(in_shape) not in (n + 1, n + 2) or 0 in in_shape[-n - 1 :]:
            raise ValueError(
                f"expected input (N, C, {names}) or unbatched (C, {names}) with C and "
                f"{names} non-zero, got shape {tuple(in_shape)}"
            )
        return tuple(in_shape[-n:])


class _FixedPoolNd(_PoolNd):
    """Windows of size k, stride s, padding p, dilation d (1 for average), with ceil_mode."""

    dilation: tuple[int, ...]

    def __init__(
        self,
        kernel_size: Size,
        stride: Size | None = None,
        padding: Size = 0,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        n = self.n_spatial
        self.kernel_size = ntuple(kernel_size, n, "kernel_size", minimum=1)
        # NOTE: stride=None (and torch's empty stride) means stride = kernel_size
        self.stride = self.kernel_size if stride is None else ntuple(stride, n, "stride", minimum=1)
        self.padding = ntuple(padding, n, "padding", minimum=0)
        self.ceil_mode = bool(ceil_mode)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, ceil_mode={self.ceil_mode})"
        )

    def _out(self, in_shape: Shape) -> tuple[int, ...]:
        spatial, out = self._spatial(in_shape), []
        for axis, L in enumerate(spatial):
            k, s, p, d = (
                self.kernel_size[axis],
                self.stride[axis],
                self.padding[axis],
                self.dilation[axis],
            )
            if p > k // 2:
                raise ValueError(
                    f"padding must be at most half the kernel size, got padding {self.padding} "
                    f"and kernel_size {self.kernel_size}"
                )
            size = pooling_output_size(L, k, s, p, d, self.ceil_mode)
            if size < 1:
                raise ValueError(
                    f"input shape {tuple(in_shape)} is too small for kernel_size "
                    f"{self.kernel_size}, dilation {self.dilation}, padding {self.padding}: "
                    f"output size would be {size} along spatial dim {axis}"
                )
            out.append(size)
        return tuple(out)

    def _tables(self, out: Shape) -> list[Array]:
        """Per spatial axis, the (out, k) input positions of every window's taps."""
        options = zip(self.kernel_size, self.stride, self.padding, self.dilation, out, strict=True)
        return [fixed_windows(k, s, p, d, o) for k, s, p, d, o in options]


# --- max pooling -----------------------------------------------------------------------


class _MaxPoolNd(_FixedPoolNd):
    """z[p] = max_{q ∈ window(p)} x[q];  δ_prev[w(p)] += δ[p] at the window's first maximum."""

    def __init__(
        self,
        kernel_size: Size,
        stride: Size | None = None,
        padding: Size = 0,
        dilation: Size = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.dilation = ntuple(dilation, self.n_spatial, "dilation", minimum=1)

    def shape(self, in_shape: Shape) -> Shape:
        out = self._out(in_shape)
        # NOTE: torch returns −∞ for a window that sees only padding and its backward
        # writes δ outside the input; we refuse it.
        spatial = self._spatial(in_shape)
        for axis, (t, L) in enumerate(zip(self._tables(out), spatial, strict=True)):
            empty = np.flatnonzero(((t < 0) | (t >= L)).all(axis=1))
            if empty.size:
                raise ValueError(
                    f"window {empty[0]} along spatial dim {axis} covers only padding "
                    f"(kernel_size {self.kernel_size}, stride {self.stride}, padding "
                    f"{self.padding}, dilation {self.dilation}) on input shape {tuple(in_shape)}"
                )
        return (*in_shape[: -self.n_spatial], *out)

    def forward(self, x: Array) -> tuple[Array, Any]:
        tables = self._tables(self._out(x.shape))
        z, tap = max_pool(x, tables)
        return z, (tap, tables, x.shape)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        tap, tables, in_shape = cache
        winner = winner_positions(tap, tables, in_shape[-self.n_spatial :], self.dilation)
        return route_to_winner(delta, winner, in_shape, self.n_spatial), {}

    def ties(self, x: Array) -> tuple[Array]:
        return (max_pool_ties(x, self._tables(self._out(x.shape))),)


class MaxPool1d(_MaxPoolNd):
    """torch.nn.MaxPool1d on (N, C, L) or (C, L)."""

    n_spatial = 1


class MaxPool2d(_MaxPoolNd):
    """torch.nn.MaxPool2d on (N, C, H, W) or (C, H, W)."""

    n_spatial = 2


class MaxPool3d(_MaxPoolNd):
    """torch.nn.MaxPool3d on (N, C, D, H, W) or (C, D, H, W)."""

    n_spatial = 3


# --- average pooling -------------------------------------------------------------------


class _AvgPoolNd(_FixedPoolNd):
    """z = (1_H x 1_Wᵀ) / divisor;  δ_prev = 1_Hᵀ (δ / divisor) 1_W: δ spread evenly."""

    def __init__(
        self,
        kernel_size: Size,
        stride: Size | None = None,
        padding: Size = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.dilation = (1,) * self.n_spatial
        self.count_include_pad = bool(count_include_pad)
        if divisor_override is not None and (
            not isinstance(divisor_override, (int, np.integer)) or divisor_override == 0
        ):
            raise ValueError(f"divisor_override must be a non-zero int, got {divisor_override!r}")
        self.divisor_override = divisor_override

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, ceil_mode={self.ceil_mode}, "
            f"count_include_pad={self.count_include_pad}, "
            f"divisor_override={self.divisor_override})"
        )

    def shape(self, in_shape: Shape) -> Shape:
        return (*in_shape[: -self.n_spatial], *self._out(in_shape))

    def _divisor(self, spatial: Shape, out: Shape) -> Array:
        """torch's divisor: the window clipped to the padded input (count_include_pad),
        or to the input itself, or divisor_override."""
        if self.divisor_override is not None:
            return np.full(out, float(self.divisor_override))
        counts = []
        for L, k, s, p, o in zip(
            spatial, self.kernel_size, self.stride, self.padding, out, strict=True
        ):
            start = s * np.arange(o) - p
            end = np.minimum(start + k, L + p)  # NOTE: the ceil_mode overhang is not counted
            if not self.count_include_pad:
                start, end = np.maximum(start, 0), np.minimum(end, L)
            counts.append((end - start).astype(np.float64))
        divisor = outer(counts)
        assert (divisor > 0).all(), "every window holds an input pixel once padding ≤ k/2"
        return divisor

    def forward(self, x: Array) -> tuple[Array, Any]:
        n = self.n_spatial
        spatial = x.shape[-n:]
        out = self._out(x.shape)
        mats = [indicator(t, L) for t, L in zip(self._tables(out), spatial, strict=True)]
        divisor = self._divisor(spatial, out)
        return along_axes(x, mats) / divisor, (mats, divisor)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        mats, divisor = cache
        return along_axes(delta / divisor, [M.T for M in mats]), {}


class AvgPool1d(_AvgPoolNd):
    """torch.nn.AvgPool1d on (N, C, L) or (C, L); torch gives it no divisor_override."""

    n_spatial = 1

    def __init__(
        self,
        kernel_size: Size,
        stride: Size | None = None,
        padding: Size = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)


class AvgPool2d(_AvgPoolNd):
    """torch.nn.AvgPool2d on (N, C, H, W) or (C, H, W)."""

    n_spatial = 2


class AvgPool3d(_AvgPoolNd):
    """torch.nn.AvgPool3d on (N, C, D, H, W) or (C, D, H, W)."""

    n_spatial = 3

    def shape(self, in_shape: Shape) -> Shape:
        spatial = self._spatial(in_shape)
        # NOTE: unlike 1-d and 2-d, torch's avg_pool3d wants the unpadded input ≥ the kernel
        if any(L < k for L, k in zip(spatial, self.kernel_size, strict=True)):
            raise ValueError(
                f"input shape {tuple(in_shape)} is smaller than kernel_size {self.kernel_size} "
                "(AvgPool3d does not count its padding here, as torch)"
            )
        return super().shape(in_shape)


# --- adaptive pooling ------------------------------------------------------------------


class _AdaptivePoolNd(_PoolNd):
    """Windows ⌊o·L/out⌋ .. ⌈(o+1)·L/out⌉ − 1 along each axis; None keeps the input size."""

    def __init__(self, output_size: int | Sequence[int | None]) -> None:
        super().__init__()
        n = self.n_spatial
        sizes = (
            (output_size,) * n
            if isinstance(output_size, (int, np.integer))
            else tuple(output_size)
            if isinstance(output_size, (tuple, list))
            else ()
        )
        # NOTE: as torch, None keeps an input size only inside a tuple, and not in 1-d
        if len(sizes) != n or not all(
            (s is None and n > 1)
            or (isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0)
            for s in sizes
        ):
            raise ValueError(
                f"output_size must be a positive int or {n} of them"
                + (" (None keeps that input size)" if n > 1 else "")
                + f", got {output_size!r}"
            )
        self.output_size = sizes

    def __repr__(self) -> str:
        return f"{type(self).__name__}(output_size={self.output_size})"

    def _out(self, in_shape: Shape) -> tuple[int, ...]:
        spatial = self._spatial(in_shape)
        return tuple(
            L if o is None else int(o) for L, o in zip(spatial, self.output_size, strict=True)
        )

    def shape(self, in_shape: Shape) -> Shape:
        return (*in_shape[: -self.n_spatial], *self._out(in_shape))


class _AdaptiveAvgPoolNd(_AdaptivePoolNd):
    """z = (1_H x 1_Wᵀ) / (h_o · w_o);  δ_prev = 1_Hᵀ (δ / (h_o · w_o)) 1_W."""

    def forward(self, x: Array) -> tuple[Array, Any]:
        n = self.n_spatial
        spatial, out = x.shape[-n:], self._out(x.shape)
        mats = [indicator(adaptive_windows(L, o), L) for L, o in zip(spatial, out, strict=True)]
        divisor = outer([M.sum(axis=1) for M in mats])  # window sizes, multiplied
        return along_axes(x, mats) / divisor, (mats, divisor)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        mats, divisor = cache
        return along_axes(delta / divisor, [M.T for M in mats]), {}


class _AdaptiveMaxPoolNd(_AdaptivePoolNd):
    """z[p] = max over adaptive window p;  δ_prev[w(p)] += δ[p] at its first maximum."""

    def _tables(self, in_shape: Shape) -> list[Array]:
        spatial, out = in_shape[-self.n_spatial :], self._out(in_shape)
        return [adaptive_windows(L, o) for L, o in zip(spatial, out, strict=True)]

    def forward(self, x: Array) -> tuple[Array, Any]:
        tables = self._tables(x.shape)
        z, tap = max_pool(x, tables)
        return z, (tap, tables, x.shape)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        tap, tables, in_shape = cache
        winner = winner_positions(tap, tables, in_shape[-self.n_spatial :], (1,) * self.n_spatial)
        return route_to_winner(delta, winner, in_shape, self.n_spatial), {}

    def ties(self, x: Array) -> tuple[Array]:
        return (max_pool_ties(x, self._tables(x.shape)),)


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """torch.nn.AdaptiveAvgPool1d on (N, C, L) or (C, L)."""

    n_spatial = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """torch.nn.AdaptiveAvgPool2d on (N, C, H, W) or (C, H, W)."""

    n_spatial = 2


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """torch.nn.AdaptiveMaxPool1d on (N, C, L) or (C, L)."""

    n_spatial = 1


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """torch.nn.AdaptiveMaxPool2d on (N, C, H, W) or (C, H, W)."""

    n_spatial = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    """torch.nn.AdaptiveAvgPool3d on (N, C, D, H, W) or (C, D, H, W)."""

    n_spatial = 3


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """torch.nn.AdaptiveMaxPool3d on (N, C, D, H, W) or (C, D, H, W)."""

    n_spatial = 3


# --- power-average pooling -------------------------------------------------------------

_AVG = {1: AvgPool1d, 2: AvgPool2d, 3: AvgPool3d}
_MAX = {1: MaxPool1d, 2: MaxPool2d, 3: MaxPool3d}


class _LPPoolNd(_PoolNd):
    """z = (K · avg(x^P))^(1/P);  δ_prev = avgᵀ(K δ s^(1/P − 1)/P) · P x^(P−1), s = K · avg(x^P).

    As torch's lp_pool: an average pool without padding of x^P times the kernel's size K
    (so a ceil_mode window hanging over the edge is scaled by K over the cells it holds),
    to the power 1/P; where s = 0 the gradient is 0. P = ∞ is max_pool(|x|), δ routed to
    the winner times sign(x).
    """

    def __init__(
        self,
        norm_type: float,
        kernel_size: Size,
        stride: Size | None = None,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(norm_type, bool) or not isinstance(
            norm_type, (int, float, np.integer, np.floating)
        ):
            raise ValueError(f"norm_type must be a number, got {norm_type!r}")
        if not norm_type >= 1:
            # NOTE: below 1, P x^(P−1) is infinite at x = 0 and torch's gradient with it
            raise ValueError(f"norm_type must be ≥ 1 (or inf), got {norm_type!r}")
        self.norm_type = float(norm_type)
        self.avg = _AVG[self.n_spatial](kernel_size, stride, 0, ceil_mode)
        self.max = _MAX[self.n_spatial](kernel_size, stride, 0, 1, ceil_mode)
        self.K = float(np.prod(self.avg.kernel_size))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(norm_type={self.norm_type}, kernel_size="
            f"{self.avg.kernel_size}, stride={self.avg.stride}, ceil_mode={self.avg.ceil_mode})"
        )

    def shape(self, in_shape: Shape) -> Shape:
        return self.avg.shape(in_shape)

    def _power_sum(self, x: Array) -> tuple[Array, Any]:
        """s = K · avg(x^P), refusing where torch's value or gradient is NaN."""
        P = self.norm_type
        if P != int(P) and (x < 0).any():
            raise ValueError(
                f"{type(self).__name__} with norm_type {P:g} on a negative input: x^{P:g} is "
                "NaN in torch"
            )
        u, cache = self.avg.forward(x**P)
        s = self.K * u
        if P != 1 and (s < 0).any():
            raise ValueError(
                f"{type(self).__name__} with norm_type {P:g}: a window's sum of x^{P:g} is "
                f"negative ({float(s.min()):.6g}); its 1/{P:g}-th power is NaN in torch"
            )
        return s, cache

    def forward(self, x: Array) -> tuple[Array, Any]:
        P = self.norm_type
        if P == np.inf:
            z, cache = self.max.forward(np.abs(x))
            return z, (x, cache)
        s, cache = self._power_sum(x)
        z = s if P == 1 else np.where(s > 0, np.abs(s) ** (1 / P), 0.0)
        return z, (x, s, cache)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        P = self.norm_type
        if P == np.inf:
            x, max_cache = cache
            return self.max.backward(delta, max_cache)[0] * np.sign(x), {}
        x, s, avg_cache = cache
        # NOTE: torch's gradient is 0 where s = 0 (sign(s)·relu(|s|) has slope 0 there)
        nonzero = s != 0
        safe = np.where(nonzero, np.abs(s), 1.0)
        delta_s = np.where(nonzero, delta * safe ** (1 / P - 1) / P, 0.0)  # ∂L/∂s
        delta_xP, _ = self.avg.backward(self.K * delta_s, avg_cache)  # ∂L/∂(x^P)
        return delta_xP * P * x ** (P - 1), {}

    def ties(self, x: Array) -> tuple[Array]:
        """Entries of the windows whose s sits within rounding of the kink s = 0: every entry
        near 0 (relative to max|x|), or x^P cancelling (|s| ≤ TIE_RTOL · Σ|x|^P)."""
        P = self.norm_type
        if P == np.inf:
            return (
                max_pool_ties(np.abs(x), self.max._tables(self.max._out(x.shape)))
                | near(x, (0.0,)),
            )
        small = near(x, (0.0,), float(np.max(np.abs(x), initial=0.0)))
        all_small, cache = self.avg.forward(small.astype(np.float64))
        s, _ = self.avg.forward(x**P)
        S, _ = self.avg.forward(np.abs(x) ** P)
        tied = (all_small >= 1.0) | (np.abs(s) <= TIE_RTOL * S)
        members, _ = self.avg.backward(tied.astype(np.float64), cache)
        return (members > 0,)


class LPPool1d(_LPPoolNd):
    """torch.nn.LPPool1d on (N, C, L) or (C, L)."""

    n_spatial = 1


class LPPool2d(_LPPoolNd):
    """torch.nn.LPPool2d on (N, C, H, W) or (C, H, W)."""

    n_spatial = 2


class LPPool3d(_LPPoolNd):
    """torch.nn.LPPool3d on (N, C, D, H, W) or (C, D, H, W)."""

    n_spatial = 3


# --- max pooling with its indices, and its inverse ----------------------------------------------


class MaxPoolWithIndices(Layer):
    """(z, i) = max pooling and, for each window, the flat position of its winner in its input
    plane (torch's return_indices=True);  δ_prev as the max pool's (the indices carry none)."""

    n_outputs = 2
    output_dtypes = ("float", "int")

    def __init__(self, pool: _MaxPoolNd) -> None:
        super().__init__()
        self.pool = pool

    def __repr__(self) -> str:
        return f"WithIndices({self.pool!r})"

    def shape(self, in_shape: Shape) -> tuple[Shape, Shape]:  # type: ignore[override]
        out = self.pool.shape(in_shape)
        return out, out

    def forward(self, x: Array) -> tuple[tuple[Array, Array], Any]:
        z, cache = self.pool.forward(x)
        tap, tables, in_shape = cache
        p = self.pool
        winner = winner_positions(tap, tables, in_shape[-p.n_spatial :], p.dilation)
        return (z, winner.astype(np.int64)), cache

    def backward(self, delta: tuple[Array | None, Array | None], cache: Any) -> tuple[Array, dict]:
        tap, tables, in_shape = cache
        if delta[0] is None:
            return np.zeros(in_shape), {}
        return self.pool.backward(delta[0], cache)

    def ties(self, x: Array) -> tuple[Array]:
        return self.pool.ties(x)


class MaxUnpool(Layer):
    """z = F.max_unpool{n}d(a, i, output_size): zeros of the output plane with a[p] written at
    the flat position i[p] of its plane (the max pool's indices);  δ_prev[p] = δ at i[p].
    Inputs: a, then the indices (no δ)."""

    n_inputs = 2
    integer_inputs = True

    def __init__(self, output_spatial: Sequence[int]) -> None:
        super().__init__()
        self.output_spatial = tuple(int(n) for n in output_spatial)

    def __repr__(self) -> str:
        return f"MaxUnpool(output={self.output_spatial})"

    def shape(self, a_shape: Shape, i_shape: Shape) -> Shape:
        n = len(self.output_spatial)
        if tuple(a_shape) != tuple(i_shape) or len(a_shape) not in (n + 1, n + 2):
            raise ValueError(
                f"max_unpool: expected values and indices of one shape (N, C, ...) or (C, ...) "
                f"with {n} spatial dims, got {tuple(a_shape)} and {tuple(i_shape)}"
            )
        return (*a_shape[:-n], *self.output_spatial)

    def forward(self, a: Array, i: Array) -> tuple[Array, Any]:
        out_shape = self.shape(a.shape, i.shape)
        n = len(self.output_spatial)
        plane = int(np.prod(self.output_spatial))
        if i.size and (i.min() < 0 or i.max() >= plane):
            raise ValueError(
                f"max_unpool: an index is out of the output plane of {plane} entries "
                f"({self.output_spatial})"
            )
        lead = a.shape[:-n]
        A = a.reshape(int(np.prod(lead, dtype=np.int64)), -1)
        I = i.reshape(A.shape).astype(np.int64)
        z = np.zeros((A.shape[0], plane))
        rows = np.arange(A.shape[0])[:, None]
        z[rows, I] = A  # NOTE: a repeated index keeps one of its values, as torch's
        return z.reshape(out_shape), (rows, I, a.shape)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, None], dict]:
        rows, I, a_shape = cache
        D = delta.reshape(rows.shape[0], -1)
        return (D[rows, I].reshape(a_shape), None), {}
