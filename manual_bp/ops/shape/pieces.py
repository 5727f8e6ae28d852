"""Several tensors in or out: cat, stack, split and chunk, unbind; δ_prev is δ cut
into the inputs' pieces or the outputs' δ joined back (see manual_bp.ops.shape).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape, _axis, _one_or_tuple

# --- joining --------------------------------------------------------------


class Cat(Layer):
    """z = torch.cat(a, dim);  δ_prev_i = the slice of δ along dim where aᵢ was placed."""

    integer_inputs = True

    def __init__(self, dim: int = 0, n_inputs: int = 2) -> None:
        super().__init__()
        if n_inputs < 1:
            raise ValueError(f"expected n_inputs >= 1, got {n_inputs}")
        self.dim = int(dim)
        self.n_inputs = int(n_inputs)  # type: ignore[misc]  # variadic: set per instance

    def __repr__(self) -> str:
        return f"Cat(dim={self.dim}, n_inputs={self.n_inputs})"

    def shape(self, *in_shapes: Shape) -> Shape:
        shapes = [tuple(s) for s in in_shapes]
        if len(shapes) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} inputs, got {len(shapes)}")
        ndim = len(shapes[0])
        if ndim == 0 or any(len(s) != ndim for s in shapes):
            raise ValueError(
                f"expected inputs of one rank >= 1 (torch's legacy skip of 1-d empty "
                f"inputs is not supported), got shapes {shapes}"
            )
        d = _axis(self.dim, ndim, "dim", shapes[0])
        rest = {s[:d] + s[d + 1 :] for s in shapes}
        if len(rest) > 1:
            raise ValueError(f"expected shapes equal except on dim {self.dim}, got {shapes}")
        return (*shapes[0][:d], sum(s[d] for s in shapes), *shapes[0][d + 1 :])

    def forward(self, *a: Array) -> tuple[Array, tuple[int, list[int]]]:
        self.shape(*(x.shape for x in a))
        d = self.dim % a[0].ndim
        return np.concatenate(a, axis=d), (d, [x.shape[d] for x in a])

    def backward(self, delta: Array, cache: tuple[int, list[int]]) -> tuple[Any, dict[str, Array]]:
        d, sizes = cache
        return _one_or_tuple(np.split(delta, np.cumsum(sizes)[:-1], axis=d)), {}


# --- several tensors in, several out ------------------------------------------------------


class Stack(Layer):
    """z = torch.stack(a, dim), inputs of one shape;  δ_prev_i = δ at position i along dim."""

    integer_inputs = True  # moves values: token ids and indices too

    def __init__(self, dim: int = 0, n_inputs: int = 2) -> None:
        super().__init__()
        if n_inputs < 1:
            raise ValueError(f"expected n_inputs >= 1, got {n_inputs}")
        self.dim = int(dim)
        self.n_inputs = int(n_inputs)  # type: ignore[misc]  # variadic: set per instance

    def __repr__(self) -> str:
        return f"Stack(dim={self.dim}, n_inputs={self.n_inputs})"

    def _axis(self, shapes: list[Shape]) -> int:
        if len(shapes) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} inputs, got {len(shapes)}")
        if len(set(shapes)) > 1:
            raise ValueError(f"expected inputs of one shape to stack, got {shapes}")
        return _axis(self.dim, len(shapes[0]) + 1, "dim", shapes[0])

    def shape(self, *in_shapes: Shape) -> Shape:
        shapes = [tuple(s) for s in in_shapes]
        d = self._axis(shapes)
        return (*shapes[0][:d], len(shapes), *shapes[0][d:])

    def forward(self, *a: Array) -> tuple[Array, int]:
        d = self._axis([x.shape for x in a])
        return np.stack(a, axis=d), d

    def backward(self, delta: Array, d: int) -> tuple[Any, dict[str, Array]]:
        return _one_or_tuple(list(np.moveaxis(delta, d, 0))), {}


def _pieces(delta: Any, shapes: Sequence[Shape]) -> list[Array]:
    """The δ of each output of a multi-output layer: the array itself for one output, a zero
    for an output the loss does not depend on (None)."""
    deltas = [delta] if len(shapes) == 1 else list(delta)
    return [np.zeros(s) if g is None else g for g, s in zip(deltas, shapes, strict=True)]


class Split(Layer):
    """(z₁, …, z_k) = torch.split(a, sizes, dim): consecutive pieces of the given sizes along
    dim;  δ_prev = the pieces' δ concatenated back (zeros for an unused piece).

    One layer with k outputs (n_outputs = k; for k = 1 the piece itself, as the protocol
    has it). split with one size and chunk become sizes through split_sizes / chunk_sizes."""

    integer_inputs = True  # moves values: token ids and indices too

    def __init__(self, sizes: Sequence[int], dim: int = 0) -> None:
        super().__init__()
        self.sizes, self.dim = tuple(int(n) for n in sizes), int(dim)
        if not self.sizes or any(n < 0 for n in self.sizes):
            raise ValueError(f"expected one or more piece sizes >= 0, got {self.sizes}")
        self.n_outputs = len(self.sizes)  # type: ignore[misc]  # set per instance

    def __repr__(self) -> str:
        return f"Split({self.sizes}, dim={self.dim})"

    def _shapes(self, in_shape: Shape) -> list[Shape]:
        in_shape = tuple(in_shape)
        if not in_shape:
            raise ValueError("split() cannot be applied to a 0-d input")
        d = _axis(self.dim, len(in_shape), "dim", in_shape)
        if sum(self.sizes) != in_shape[d]:
            raise ValueError(
                f"expected piece sizes summing to the size {in_shape[d]} of dim {d} (shape "
                f"{in_shape}), got {self.sizes}"
            )
        return [(*in_shape[:d], n, *in_shape[d + 1 :]) for n in self.sizes]

    def shape(self, in_shape: Shape) -> Any:
        shapes = self._shapes(in_shape)
        return shapes[0] if len(shapes) == 1 else tuple(shapes)

    def forward(self, a: Array) -> tuple[Any, tuple[int, list[Shape]]]:
        shapes = self._shapes(a.shape)
        d = self.dim % a.ndim
        pieces = np.split(a, np.cumsum(self.sizes)[:-1], axis=d)
        return _one_or_tuple(pieces), (d, shapes)

    def backward(self, delta: Any, cache: tuple[int, list[Shape]]) -> tuple[Array, dict]:
        d, shapes = cache
        return np.concatenate(_pieces(delta, shapes), axis=d), {}


def split_sizes(n: int, split_size_or_sections: int | Sequence[int]) -> tuple[int, ...]:
    """torch.split's pieces of a dim of size n: pieces of split_size, the last one smaller
    (one empty piece for n = 0), or the given sections, which must sum to n."""
    if isinstance(split_size_or_sections, (int, np.integer)):
        s = int(split_size_or_sections)
        if s < 0 or s == 0 and n > 0:
            raise ValueError(
                f"expected a split size > 0 (0 only for an empty dim), got {s} for a dim of "
                f"size {n}"
            )
        if n == 0:
            return (0,)
        k = -(-n // s)
        return (s,) * (k - 1) + (n - s * (k - 1),)
    sections = tuple(int(m) for m in split_size_or_sections)
    if sum(sections) != n or any(m < 0 for m in sections):
        raise ValueError(f"expected split sizes >= 0 summing to {n}, got {sections}")
    return sections


def chunk_sizes(n: int, chunks: int) -> tuple[int, ...]:
    """torch.chunk's pieces of a dim of size n: split by ⌈n / chunks⌉, so possibly fewer than
    `chunks` pieces (6 into 4 gives 2, 2, 2); `chunks` empty pieces for n = 0."""
    if chunks <= 0:
        raise ValueError(f"expected chunks > 0, got {chunks}")
    if n == 0:
        return (0,) * chunks
    return split_sizes(n, -(-n // chunks))


class Unbind(Layer):
    """(z₁, …, z_n) = torch.unbind(a, dim): the n slices along dim, dim removed;
    δ_prev = the slices' δ stacked back along dim (zeros for an unused slice).

    n (the size of dim) is given up front: it is the layer's n_outputs."""

    integer_inputs = True  # moves values: token ids and indices too

    def __init__(self, dim: int, n: int) -> None:
        super().__init__()
        self.dim = int(dim)
        if n < 1:
            raise ValueError(f"expected a dim of size >= 1 to unbind (n outputs), got {n}")
        self.n_outputs = int(n)  # type: ignore[misc]  # set per instance

    def __repr__(self) -> str:
        return f"Unbind(dim={self.dim}, n={self.n_outputs})"

    def _slice_shape(self, in_shape: Shape) -> tuple[int, Shape]:
        in_shape = tuple(in_shape)
        if not in_shape:
            raise ValueError("unbind() cannot be applied to a 0-d input")
        d = _axis(self.dim, len(in_shape), "dim", in_shape)
        if in_shape[d] != self.n_outputs:
            raise ValueError(
                f"expected dim {d} of size {self.n_outputs} (the number of outputs), got shape "
                f"{in_shape}"
            )
        return d, in_shape[:d] + in_shape[d + 1 :]

    def shape(self, in_shape: Shape) -> Any:
        _, s = self._slice_shape(in_shape)
        return s if self.n_outputs == 1 else (s,) * self.n_outputs

    def forward(self, a: Array) -> tuple[Any, tuple[int, Shape]]:
        d, s = self._slice_shape(a.shape)
        return _one_or_tuple(list(np.moveaxis(a, d, 0))), (d, s)

    def backward(self, delta: Any, cache: tuple[int, Shape]) -> tuple[Array, dict]:
        d, s = cache
        return np.stack(_pieces(delta, [s] * self.n_outputs), axis=d), {}
