"""Adaptive max and average pooling: windows ⌊o·L/out⌋ .. ⌈(o+1)·L/out⌉ − 1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Shape
from manual_bp.ops.pooling.fixed import _PoolNd
from manual_bp.ops.pooling.windows import (
    adaptive_windows,
    along_axes,
    indicator,
    max_pool,
    max_pool_ties,
    outer,
    route_to_winner,
    winner_positions,
)

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
