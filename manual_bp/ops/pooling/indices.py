"""Max pooling with its indices (return_indices=True), and its inverse MaxUnpool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape
from manual_bp.ops.pooling.fixed import _MaxPoolNd
from manual_bp.ops.pooling.windows import (
    winner_positions,
)

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
