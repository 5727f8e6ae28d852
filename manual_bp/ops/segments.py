"""Reductions over consecutive segments along an axis (torch.segment_reduce), forward beside
backward. Segment k holds entries s_k … s_k + n_k − 1 (n_k its length, 0 allowed):

    sum   z_k = c + Σ x_i            δ_x_i = δ_k
    mean  z_k = (c + Σ x_i) / n_k    δ_x_i = δ_k / n_k          (empty: c, or NaN without it)
    max   z_k = max(c, x_i …)        δ_x_i = δ_k [x_i = z_k]    (empty: c, or −inf)
    min   z_k = min(c, x_i …)        δ_x_i = δ_k [x_i = z_k]    (empty: c, or +inf)
    prod  z_k = c · Π x_i            δ_x_i = δ_k z_k / x_i, at a lone zero δ_k c Π_{j≠i} x_j

c the initial value (0, 1 or ∓inf without one), as torch's _segment_reduce_backward;
entries past the last segment are read by none. A maximum or minimum held by two entries
of a segment is refused: torch divides the cotangent among them only where it is positive,
which is no subgradient of the reduction, so no reference exists there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape

REDUCTIONS = ("sum", "mean", "max", "min", "prod")


class SegmentReduce(Layer):
    """z = the reduction of each segment of x along `axis` (see the module docstring);
    `lengths` (*lead, K) gives each of the lead indices its own K segments (lead = the dims
    of x before axis); `initial` joins every segment (and is the value of an empty one)."""

    def __init__(
        self, reduce: str, lengths: Any, axis: int = 0, initial: float | None = None
    ) -> None:
        super().__init__()
        if reduce not in REDUCTIONS:
            raise ValueError(f"segment_reduce: expected reduce in {REDUCTIONS}, got {reduce!r}")
        self.reduce, self.initial = reduce, initial
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != int(axis) + 1 or np.any(self.lengths < 0):
            raise ValueError(
                f"segment_reduce: expected lengths ≥ 0 of rank axis + 1 = {int(axis) + 1}, got "
                f"{self.lengths.tolist()}"
            )
        self.axis = int(axis)

    def __repr__(self) -> str:
        return f"SegmentReduce({self.reduce!r}, lengths={self.lengths.tolist()}, axis={self.axis})"

    def shape(self, in_shape: Shape) -> Shape:
        lead, n = self.lengths.shape[:-1], self.lengths.sum(-1)
        if (
            len(in_shape) <= self.axis
            or tuple(in_shape[: self.axis]) != lead
            or np.any(n > in_shape[self.axis])
        ):
            raise ValueError(
                f"segment_reduce: expected x of shape {(*lead, 'N')} + (*) along axis "
                f"{self.axis}, N at least each row's sum of lengths {self.lengths.tolist()}, "
                f"got shape {tuple(in_shape)}"
            )
        return (*lead, self.lengths.shape[-1], *in_shape[self.axis + 1 :])

    def _flat(self, shape: Shape) -> tuple[Array, Array, int, int]:
        """The segment of each row of x flattened to (B·N, R), an index into (B·K, R), and
        which rows a segment holds."""
        K = self.lengths.shape[-1]
        ends = np.cumsum(self.lengths.reshape(-1, K), axis=-1)  # (B, K)
        N = shape[self.axis]
        seg = (np.arange(N)[None, :, None] >= ends[:, None, :]).sum(-1)  # (B, N)
        held = (seg < K).reshape(-1)
        seg = seg + K * np.arange(ends.shape[0])[:, None]
        R = int(np.prod(shape[self.axis + 1 :], dtype=np.int64))
        return seg.reshape(-1)[held], held, ends.shape[0] * K, R

    def forward(self, x: Array) -> tuple[Array, Any]:
        out_shape = self.shape(x.shape)
        seg, rows, BK, R = self._flat(x.shape)
        xs = x.reshape(-1, R)[rows]
        empty = {"max": -np.inf, "min": np.inf, "prod": 1.0}.get(self.reduce, 0.0)
        z = np.full((BK, R), empty if self.initial is None else float(self.initial))
        at = {"max": np.maximum, "min": np.minimum, "prod": np.multiply}.get(self.reduce, np.add)
        at.at(z, seg, xs)
        n = self.lengths.reshape(-1, 1).astype(np.float64)
        if self.reduce == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                z = np.where(n > 0, z / n, np.nan if self.initial is None else z)
        if self.reduce in ("max", "min"):
            held = np.zeros((BK, R))
            np.add.at(held, seg, xs == z[seg])
            if np.any(held > 1):
                raise ValueError(
                    f"segment_reduce: a {self.reduce} held by {int(held.max())} entries of one "
                    "segment; torch divides its cotangent among them only where it is positive, "
                    "so no reference gradient exists there"
                )
        return z.reshape(out_shape), (xs, z, n, seg, rows, x.shape)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict]:
        xs, z, n, seg, rows, shape = cache
        g = delta.reshape(z.shape)[seg]
        if self.reduce == "mean":
            g = g / n[seg]
        elif self.reduce in ("max", "min"):
            g = np.where(xs == z[seg], g, 0.0)
        elif self.reduce == "prod":  # z/x off zeros; at a lone zero the product of the rest
            zero = xs == 0
            zeros = np.zeros(z.shape)
            others = np.full(z.shape, 1.0 if self.initial is None else float(self.initial))
            np.add.at(zeros, seg, zero)
            np.multiply.at(others, seg, np.where(zero, 1.0, xs))
            lone = zero & (zeros[seg] == 1)
            g = np.where(
                zero, np.where(lone, g * others[seg], 0.0), g * z[seg] / np.where(zero, 1.0, xs)
            )
        out = np.zeros((rows.size, z.shape[-1]))
        out[rows] = g
        return out.reshape(shape), {}
