"""Reductions over dims: sum and mean; δ_prev is δ broadcast back."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape, _axis


class Sum(Layer):
    """z = Σ a over dims (all when dims is None or ());  δ_prev = δ broadcast back."""

    def __init__(self, dims: int | Sequence[int] | None = None, keepdim: bool = False) -> None:
        super().__init__()
        self.dims = (int(dims),) if isinstance(dims, (int, np.integer)) else dims
        self.dims = None if self.dims is None else tuple(int(d) for d in self.dims)
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

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        axes = self._axes(in_shape)
        if self.keepdim:
            return tuple(1 if i in axes else n for i, n in enumerate(in_shape))
        return tuple(n for i, n in enumerate(in_shape) if i not in axes)

    def _count(self, in_shape: Shape, axes: tuple[int, ...]) -> int:
        return 1

    def forward(self, a: Array) -> tuple[Array, tuple[Shape, tuple[int, ...]]]:
        self.shape(a.shape)
        axes = self._axes(a.shape)
        z = a.sum(axis=axes, keepdims=self.keepdim) / self._count(a.shape, axes)
        return z, (a.shape, axes)

    def backward(
        self, delta: Array, cache: tuple[Shape, tuple[int, ...]]
    ) -> tuple[Array, dict[str, Array]]:
        in_shape, axes = cache
        if not self.keepdim:
            delta = np.expand_dims(delta, axes)  # put the reduced axes back, as size 1
        return np.broadcast_to(delta / self._count(in_shape, axes), in_shape).copy(), {}


class Mean(Sum):
    """z = mean of a over dims (all when dims is None or ());  δ_prev = δ / m broadcast back."""

    def shape(self, in_shape: Shape) -> Shape:
        out = super().shape(in_shape)
        if self._count(tuple(in_shape), self._axes(tuple(in_shape))) == 0:
            raise ValueError(
                f"expected nonempty dims to average over, got dims {self.dims} of shape "
                f"{tuple(in_shape)} (torch would return nan)"
            )
        return out

    def _count(self, in_shape: Shape, axes: tuple[int, ...]) -> int:
        return int(np.prod([in_shape[i] for i in axes], dtype=np.int64))
