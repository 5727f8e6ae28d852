"""Shape layers that keep every entry once: identity, flatten, reshape, permute,
transpose; δ_prev is δ moved back (see manual_bp.ops.shape).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape, _axis, _dim, inverse_permutation

# --- shape-only layers ---------------------------------------------------------------


class Identity(Layer):
    """z = a, δ_prev = δ. Also Dropout in eval mode, and the layer under a lone activation."""

    integer_inputs = True

    def shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def forward(self, a: Array) -> tuple[Array, None]:
        return a, None

    def backward(self, delta: Array, cache: None) -> tuple[Array, dict[str, Array]]:
        return delta, {}


class Flatten(Layer):
    """z = a reshaped with dims start..end merged, δ_prev = δ reshaped back."""

    integer_inputs = True

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def __repr__(self) -> str:
        return f"Flatten({self.start_dim}, {self.end_dim})"

    def shape(self, in_shape: Shape) -> Shape:
        ndim = max(len(in_shape), 1)
        start, end = _dim(self.start_dim, ndim), _dim(self.end_dim, ndim)
        if not (0 <= start < ndim and 0 <= end < ndim) or start > end:
            raise ValueError(
                f"cannot flatten dims {self.start_dim}..{self.end_dim} of an input of "
                f"shape {tuple(in_shape)}"
            )
        if len(in_shape) == 0:
            return (1,)
        merged = math.prod(in_shape[start : end + 1])
        return (*in_shape[:start], merged, *in_shape[end + 1 :])

    def forward(self, a: Array) -> tuple[Array, Shape]:
        return a.reshape(self.shape(a.shape)), a.shape

    def backward(self, delta: Array, in_shape: Shape) -> tuple[Array, dict[str, Array]]:
        return delta.reshape(in_shape), {}


# --- shape ----------------------------------------------------------------------------


class Reshape(Layer):
    """z = a reshaped to `shape` (one −1 at most, inferred);  δ_prev = δ reshaped back.

    Also view(); torch's view can refuse a non-contiguous input, which values cannot be.
    """

    integer_inputs = True

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.target = tuple(map(int, shape))

    def __repr__(self) -> str:
        return f"Reshape({self.target})"

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        numel = math.prod(in_shape)
        if min(self.target, default=0) < -1 or self.target.count(-1) > 1:
            raise ValueError(
                f"expected a shape of sizes >= 0 with at most one -1, got {self.target}"
            )
        if -1 in self.target:
            known = math.prod(n for n in self.target if n != -1)
            if known == 0:
                raise ValueError(
                    f"cannot reshape {in_shape} into {self.target}: with another size 0 the "
                    "size of -1 is ambiguous"
                )
            if numel % known:
                raise ValueError(f"cannot reshape {in_shape} ({numel} elements) into {self.target}")
            return tuple(numel // known if n == -1 else n for n in self.target)
        if math.prod(self.target) != numel:
            raise ValueError(f"cannot reshape {in_shape} ({numel} elements) into {self.target}")
        return self.target

    def forward(self, a: Array) -> tuple[Array, Shape]:
        return a.reshape(self.shape(a.shape)), a.shape

    def backward(self, delta: Array, in_shape: Shape) -> tuple[Array, dict[str, Array]]:
        return delta.reshape(in_shape), {}


class Permute(Layer):
    """z = a.permute(dims);  δ_prev = δ.permute(dims⁻¹)."""

    integer_inputs = True

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.dims = tuple(map(int, dims))

    def __repr__(self) -> str:
        return f"Permute({self.dims})"

    def _perm(self, in_shape: Shape) -> tuple[int, ...]:
        ndim = len(in_shape)
        if len(self.dims) != ndim:
            raise ValueError(
                f"expected {len(self.dims)}-d input for permute {self.dims}, got shape {in_shape}"
            )
        perm = tuple(_axis(d, max(ndim, 1), "dims", in_shape) for d in self.dims)
        if sorted(perm) != list(range(ndim)):
            raise ValueError(f"expected a permutation of 0..{ndim - 1}, got {self.dims}")
        return perm

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        return tuple(in_shape[i] for i in self._perm(in_shape))

    def forward(self, a: Array) -> tuple[Array, tuple[int, ...]]:
        perm = self._perm(a.shape)
        return a.transpose(perm), perm

    def backward(self, delta: Array, perm: tuple[int, ...]) -> tuple[Array, dict[str, Array]]:
        return delta.transpose(inverse_permutation(perm)), {}


class Rearrange(Layer):
    """z = a.reshape(split).permute(dims).reshape(shape), laid out afresh (as torch's reshape
    of a permuted view copies);  δ_prev = δ moved back the same three steps in reverse.

    One node for what attention does to its heads: (T, N, E) → (N, H, T, hd) and back."""

    integer_inputs = True

    def __init__(self, split: Sequence[int], dims: Sequence[int], shape: Sequence[int]) -> None:
        super().__init__()
        self.split = tuple(map(int, split))
        self.dims = tuple(map(int, dims))
        self.target = tuple(map(int, shape))
        self.numel = math.prod(self.split)
        if sorted(self.dims) != list(range(len(self.split))):
            raise ValueError(f"expected a permutation of 0..{len(self.split) - 1}, got {self.dims}")
        if math.prod(self.target) != self.numel:
            raise ValueError(
                f"cannot reshape {self.split} permuted by {self.dims} into {self.target}"
            )
        self.inverse = inverse_permutation(self.dims)
        self.permuted = tuple(map(self.split.__getitem__, self.dims))

    def __repr__(self) -> str:
        return f"Rearrange({self.split}, {self.dims}, {self.target})"

    def shape(self, in_shape: Shape) -> Shape:
        if math.prod(in_shape) != self.numel:
            raise ValueError(f"cannot reshape {tuple(in_shape)} into {self.split}")
        return self.target

    def forward(self, a: Array) -> tuple[Array, Shape]:
        z = np.ascontiguousarray(a.reshape(self.split).transpose(self.dims))
        return z.reshape(self.target), a.shape

    def backward(self, delta: Array, in_shape: Shape) -> tuple[Array, dict[str, Array]]:
        moved = np.ascontiguousarray(delta.reshape(self.permuted).transpose(self.inverse))
        return moved.reshape(in_shape), {}


class Transpose(Layer):
    """z = a.transpose(dim0, dim1);  δ_prev = δ.transpose(dim0, dim1)."""

    integer_inputs = True

    def __init__(self, dim0: int, dim1: int) -> None:
        super().__init__()
        self.dim0, self.dim1 = int(dim0), int(dim1)

    def __repr__(self) -> str:
        return f"Transpose({self.dim0}, {self.dim1})"

    def _axes(self, in_shape: Shape) -> tuple[int, int]:
        ndim = max(len(in_shape), 1)  # torch lets a 0-d tensor transpose dims 0 and −1
        return (_axis(self.dim0, ndim, "dim0", in_shape), _axis(self.dim1, ndim, "dim1", in_shape))

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        i, j = self._axes(in_shape)
        if not in_shape:
            return ()
        out = list(in_shape)
        out[i], out[j] = out[j], out[i]
        return tuple(out)

    def forward(self, a: Array) -> tuple[Array, tuple[int, int]]:
        i, j = self._axes(a.shape)
        return (a.swapaxes(i, j) if a.ndim else a), (i, j)

    def backward(self, delta: Array, axes: tuple[int, int]) -> tuple[Array, dict[str, Array]]:
        return (delta.swapaxes(*axes) if delta.ndim else delta), {}
