"""Reductions over consecutive segments of the first axis (torch.segment_reduce), forward
beside backward. Segment k holds rows s_k … s_k + n_k − 1 (n_k its length, 0 allowed):

    sum   z_k = Σ x_i            δ_x_i = δ_k
    mean  z_k = Σ x_i / n_k      δ_x_i = δ_k / n_k              (an empty segment: NaN)
    max   z_k = max x_i          δ_x_i = δ_k [x_i = z_k]        (−inf when empty)
    min   z_k = min x_i          δ_x_i = δ_k [x_i = z_k]        (+inf when empty)
    prod  z_k = Π x_i            δ_x_i = δ_k z_k / x_i, at a lone zero δ_k Π_{j≠i} x_j

as torch's _segment_reduce_backward. A maximum or minimum held by two entries of a segment
is refused: torch divides the cotangent among them only where it is positive, which is no
subgradient of the reduction, so no reference exists there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape

REDUCTIONS = ("sum", "mean", "max", "min", "prod")


class SegmentReduce(Layer):
    """z = the reduction of each segment of x's rows (see the module docstring)."""

    def __init__(self, reduce: str, lengths: Any) -> None:
        super().__init__()
        if reduce not in REDUCTIONS:
            raise ValueError(f"segment_reduce: expected reduce in {REDUCTIONS}, got {reduce!r}")
        self.reduce = reduce
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if np.any(self.lengths < 0):
            raise ValueError(f"segment_reduce: expected lengths ≥ 0, got {self.lengths.tolist()}")
        self.seg = np.repeat(np.arange(self.lengths.size), self.lengths)

    def __repr__(self) -> str:
        return f"SegmentReduce({self.reduce!r}, lengths={self.lengths.tolist()})"

    def shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) < 1 or in_shape[0] != self.seg.size:
            raise ValueError(
                f"segment_reduce: expected {self.seg.size} rows (the sum of the lengths), got "
                f"shape {tuple(in_shape)}"
            )
        return (self.lengths.size, *in_shape[1:])

    def forward(self, x: Array) -> tuple[Array, Any]:
        out_shape = self.shape(x.shape)
        start = {"max": -np.inf, "min": np.inf, "prod": 1.0}.get(self.reduce, 0.0)
        z = np.full(out_shape, start)
        at = {"max": np.maximum, "min": np.minimum, "prod": np.multiply}.get(self.reduce, np.add)
        at.at(z, self.seg, x)
        n = self.lengths.reshape((-1,) + (1,) * (x.ndim - 1))
        if self.reduce == "mean":
            with np.errstate(invalid="ignore"):
                z = z / n
        if self.reduce in ("max", "min"):
            held = np.zeros(out_shape)
            np.add.at(held, self.seg, x == z[self.seg])
            if np.any(held > 1):
                raise ValueError(
                    f"segment_reduce: a {self.reduce} held by {int(held.max())} entries of one "
                    "segment; torch divides its cotangent among them only where it is positive, "
                    "so no reference gradient exists there"
                )
        return z, (x, z, n)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict]:
        x, z, n = cache
        g = delta[self.seg]
        if self.reduce == "sum":
            return g, {}
        if self.reduce == "mean":
            return g / n[self.seg], {}
        if self.reduce in ("max", "min"):
            return np.where(x == z[self.seg], g, 0.0), {}
        zero = x == 0  # prod: z/x off zeros; at a lone zero the product of the others
        zeros, others = np.zeros(z.shape), np.ones(z.shape)
        np.add.at(zeros, self.seg, zero)
        np.multiply.at(others, self.seg, np.where(zero, 1.0, x))
        safe = np.where(zero, 1.0, x)
        lone = zero & (zeros[self.seg] == 1)
        return np.where(zero, np.where(lone, g * others[self.seg], 0.0), g * z[self.seg] / safe), {}
