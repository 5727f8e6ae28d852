"""Max and average pooling over fixed windows (kernel, stride, padding, dilation, ceil_mode)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape
from manual_bp.ops.conv import ntuple
from manual_bp.ops.pooling.windows import (
    Size,
    along_axes,
    fixed_windows,
    indicator,
    max_pool,
    max_pool_ties,
    outer,
    pooling_output_size,
    route_to_winner,
    winner_positions,
)

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
