"""Views by storage position: as_strided, on the storage the input fills.

A strided view reads a tensor's storage, not its entries: entry i of a view of geometry
(size, stride, offset) is storage[offset + Σ_k i_k stride_k]. The input a fills the storage
at the positions of its own geometry (its strides and storage offset, read off the torch
tensor), and the view reads the positions of the output geometry:

    z = S[pos_z],  S[pos_a] = a
    δ_a = (G / count_a)[pos_a],  G = Σ δ scattered into storage at pos_z (added where the
          view reads a position twice), count_a = how often a's geometry holds each position

which is torch's as_strided_backward (FunctionsManual.cpp: scatter the cotangent into a
storage-shaped buffer, divide by the input geometry's multiplicity where the input overlaps
itself, read it back with the input geometry). A position the input does not hold (the
base's storage beyond the input, which torch's own decompositions read when they copy a
view with its strides) holds `fill`, the storage's value there, a constant: torch's
backward drops its gradient too. Without `fill` such a view is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape

Geometry = tuple[tuple[int, ...], tuple[int, ...], int]  # (size, stride, storage offset)


def positions(size: Sequence[int], stride: Sequence[int], offset: int) -> Array:
    """The storage position of every entry of a strided view, an int array of shape size."""
    pos = np.full(tuple(size), int(offset), dtype=np.int64)
    for k, (n, s) in enumerate(zip(size, stride, strict=True)):
        pos = pos + int(s) * np.arange(n).reshape((n,) + (1,) * (len(size) - k - 1))
    return pos


def _geometry(size: Sequence[int], stride: Sequence[int], offset: int, what: str) -> Geometry:
    size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise ValueError(f"{what}: expected as many strides as sizes, got {size} and {stride}")
    if any(n < 0 for n in size) or any(s < 0 for s in stride) or int(offset) < 0:
        raise ValueError(
            f"{what}: expected sizes, strides and a storage offset ≥ 0, got size {size}, "
            f"stride {stride}, offset {offset}"
        )
    return size, stride, int(offset)


class _Strided(Layer):
    """The storage both geometries index: the input's (its strides and offset) and the
    view's (size, stride, offset)."""

    def __init__(
        self,
        size: Sequence[int],
        stride: Sequence[int],
        offset: int,
        in_stride: Sequence[int],
        in_offset: int,
        fill: Array | None = None,
    ) -> None:
        super().__init__()
        self.size, self.stride, self.offset = _geometry(size, stride, offset, type(self).__name__)
        self.in_stride, self.in_offset = tuple(int(s) for s in in_stride), int(in_offset)
        self.fill = None if fill is None else np.asarray(fill, dtype=np.float64).ravel()

    def __repr__(self) -> str:
        name, geometry = type(self).__name__, (self.size, self.stride, self.offset)
        return f"{name}(size={geometry[0]}, stride={geometry[1]}, offset={geometry[2]})"

    def storage(self, in_shape: Shape) -> tuple[Array, Array, int]:
        """(pos_a, pos_z, storage length): both geometries' positions; every position the
        view reads must be one the input holds or one `fill` gives."""
        pos_a = positions(in_shape, self.in_stride, self.in_offset)
        pos_z = positions(self.size, self.stride, self.offset)
        n = int(max(pos_a.max(initial=-1), pos_z.max(initial=-1))) + 1
        held = np.zeros(n, dtype=bool)
        held[pos_a.ravel()] = True
        if self.fill is not None:
            held[: self.fill.size] = True
        if not held[pos_z.ravel()].all():
            raise ValueError(
                f"{self!r}: the view reads storage positions the input (shape "
                f"{tuple(in_shape)}, stride {self.in_stride}, offset {self.in_offset}) does not "
                "hold (the base's storage beyond it); expected a view within the input"
            )
        return pos_a, pos_z, n


class AsStrided(_Strided):
    """z = S[pos_z], S[pos_a] = a (fill elsewhere);  δ_a = (G / count_a)[pos_a], G = δ added
    into storage."""

    def shape(self, in_shape: Shape) -> Shape:
        self.storage(in_shape)
        return self.size

    def forward(self, a: Array) -> tuple[Array, tuple[Shape, ...]]:
        pos_a, pos_z, n = self.storage(a.shape)
        S = np.zeros(n, dtype=a.dtype)
        if self.fill is not None:
            S[: min(n, self.fill.size)] = self.fill[:n]
        S[pos_a.ravel()] = a.ravel()  # (an overlapping input writes one value twice)
        return S[pos_z], a.shape

    def backward(self, delta: Array, in_shape: Shape) -> tuple[Array, dict]:
        pos_a, pos_z, n = self.storage(in_shape)
        G = np.zeros(n)
        np.add.at(G, pos_z.ravel(), delta.ravel())
        count = np.bincount(pos_a.ravel(), minlength=n)
        G = np.divide(G, count, out=np.zeros(n), where=count > 0)
        return G[pos_a], {}
