"""Shape ops (manual_bp.ops.shape): δ_prev is δ moved back where the value came from."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from manual_bp.ops.shape import (
    FROM_INPUT,
    Cat,
    Expand,
    Flatten,
    Flip,
    Gather,
    Index,
    IndexSelect,
    MoveDim,
    Narrow,
    Permute,
    Repeat,
    Reshape,
    Roll,
    SelectDim,
    Split,
    Stack,
    Tile,
    Transpose,
    Triangle,
    Unbind,
    Unflatten,
    chunk_sizes,
    split_sizes,
)
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry import core
from torch_ref.registry.core import Op, OpEntry, Param, Ref, Refusal, Sample, tensor


def wrap_dim(dim: Any, ndim: int, what: str, shape: tuple[int, ...]) -> int:
    """torch's dim wrapping, d in [−ndim, ndim), as a ValueError for people."""
    if not isinstance(dim, int) or not -max(ndim, 1) <= dim < max(ndim, 1):
        raise ValueError(f"{what}: dim {dim!r} is out of range for a tensor of shape {shape}")
    return dim % max(ndim, 1)


def sizes(what: str, values: tuple[Any, ...]) -> tuple[int, ...]:
    """view(2, -1), view((2, -1)), view(x.size()): the sizes as ints."""
    if len(values) == 1 and isinstance(values[0], (tuple, list)):
        values = tuple(values[0])
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in values):
        raise UnsupportedModuleError(f"{what}: expected sizes as ints, got {values!r}")
    return values


def cat(tensors: Sequence[Any], dim: int = 0) -> Op:
    refs = tuple(tensor(t, "cat") for t in tensors)
    if not refs:
        raise ValueError("cat: expected at least one tensor, got an empty list")
    if any(len(r.shape) > 1 for r in refs):  # torch's legacy rule: a 1-d empty input is
        refs = tuple(r for r in refs if tuple(r.shape) != (0,)) or refs  # skipped (KV caches)
    return Op(Cat(dim, n_inputs=len(refs)), refs)


def reshape_method(input: Any, *shape: Any) -> Op:
    """x.view(*shape) / x.reshape(*shape)."""
    return Op(Reshape(sizes("view", shape)), (tensor(input, "view"),))


def reshape(input: Any, shape: Sequence[int]) -> Op:
    """torch.reshape(input, shape)."""
    return Op(Reshape(sizes("reshape", (shape,))), (tensor(input, "reshape"),))


def flatten(input: Any, start_dim: int = 0, end_dim: int = -1) -> Op:
    return Op(Flatten(start_dim, end_dim), (tensor(input, "flatten"),))


def unsqueeze(input: Any, dim: int) -> Op:
    x = tensor(input, "unsqueeze")
    d = wrap_dim(dim, x.ndim + 1, "unsqueeze", x.shape)
    return Op(Reshape((*x.shape[:d], 1, *x.shape[d:])), (x,))


def squeeze(input: Any, dim: Any = None) -> Op:
    """Drops the given dims (all when dim is None) that have size 1, as torch does."""
    x = tensor(input, "squeeze")
    if dim is None:
        dims = set(range(x.ndim))
    else:
        dims = {
            wrap_dim(d, x.ndim, "squeeze", x.shape)
            for d in (dim if isinstance(dim, (tuple, list)) else (dim,))
        }
    return Op(Reshape(tuple(n for i, n in enumerate(x.shape) if not (i in dims and n == 1))), (x,))


def permute(input: Any, *dims: Any) -> Op:
    return Op(Permute(sizes("permute", dims)), (tensor(input, "permute"),))


def transpose(input: Any, dim0: int, dim1: int) -> Op:
    return Op(Transpose(dim0, dim1), (tensor(input, "transpose"),))


def same(input: Any, *args: Any, **kwargs: Any) -> Ref | Param:
    """x.contiguous(), x.clone(), nn.Identity: the same value (no node)."""
    return tensor(input, "identity")


def _index_tensor(t: Ref | Param, what: str) -> tuple[Any, Ref | None]:
    """An index tensor as an Index item: a model tensor (buffer) as its constant values, a
    computed integer one as FROM_INPUT (with the Ref to wire in)."""
    if isinstance(t, Param):
        values = t.array()
        if np.issubdtype(values.dtype, np.floating):
            raise ValueError(f"{what}: tensors used as indices must be long, int or bool")
        return values, None
    if t.dtype == "float":
        raise ValueError(f"{what}: tensors used as indices must be long, int or bool")
    if t.dtype == "bool":
        raise UnsupportedModuleError(
            f"{what}: a bool mask computed in forward() selects a number of entries that "
            "depends on its values; only a mask of the model (a buffer) is supported"
        )
    return FROM_INPUT, t


def getitem(obj: Any, index: Any) -> Any:
    """x[...] on a tensor (ints, slices, None, ..., index tensors: buffers, or integer tensors
    computed in forward()), else an entry of a size or of a tuple of outputs (x.shape[0])."""
    if not isinstance(obj, (Ref, Param)):
        return obj[index]
    items, extra = [], []
    for item in index if isinstance(index, tuple) else (index,):
        if isinstance(item, (Ref, Param)):
            item, ref = _index_tensor(item, "x[...]")
            extra += [ref] if ref is not None else []
        elif isinstance(item, list):
            item = np.asarray(item)
        items.append(item)
    return Op(Index(tuple(items)), (obj, *extra))


def _index_arg(index: Any, what: str) -> tuple[Any, tuple[Ref, ...]]:
    """index_select's and gather's index: constant values, or FROM_INPUT and its Ref."""
    item, ref = _index_tensor(tensor(index, what), what)
    return item, (ref,) if ref is not None else ()


# --- broadcasting, tiling, moving entries --------------------------------------------------


def expand(input: Any, *size: Any) -> Op:
    return Op(Expand(sizes("expand", size)), (tensor(input, "expand"),))


def expand_as(input: Any, other: Any) -> Op:
    return Op(Expand(tensor(other, "expand_as").shape), (tensor(input, "expand_as"),))


def broadcast_to(input: Any, size: Any) -> Op:
    return Op(Expand(sizes("broadcast_to", (size,))), (tensor(input, "broadcast_to"),))


def repeat(input: Any, *repeats: Any) -> Op:
    return Op(Repeat(sizes("repeat", repeats)), (tensor(input, "repeat"),))


def tile(input: Any, *dims: Any) -> Op:
    return Op(Tile(sizes("tile", dims)), (tensor(input, "tile"),))


def roll(input: Any, shifts: Any, dims: Any = None) -> Op:
    return Op(Roll(shifts, None if dims in (None, ()) else dims), (tensor(input, "roll"),))


def flip(input: Any, *dims: Any) -> Op:
    return Op(Flip(sizes("flip", dims)), (tensor(input, "flip"),))


def fliplr(input: Any) -> Op:
    x = tensor(input, "fliplr")
    if x.ndim < 2:
        raise ValueError(f"fliplr: expected at least 2 dims, got shape {x.shape}")
    return Op(Flip((1,)), (x,))


def flipud(input: Any) -> Op:
    x = tensor(input, "flipud")
    if x.ndim < 1:
        raise ValueError("flipud: expected at least 1 dim, got a 0-d tensor")
    return Op(Flip((0,)), (x,))


def movedim(input: Any, source: Any, destination: Any) -> Op:
    return Op(MoveDim(source, destination), (tensor(input, "movedim"),))


def unflatten(input: Any, dim: int, sizes: Sequence[int]) -> Op:
    return Op(Unflatten(dim, tuple(sizes)), (tensor(input, "unflatten"),))


def swapaxes(input: Any, axis0: int, axis1: int) -> Op:
    return Op(Transpose(axis0, axis1), (tensor(input, "swapaxes"),))


def t(input: Any) -> Any:
    """x.t(): the transpose of a matrix; a 0-d or 1-d tensor as it is."""
    x = tensor(input, "t")
    if x.ndim > 2:
        raise ValueError(f"t() expects a tensor with <= 2 dims, got shape {x.shape}")
    return Op(Transpose(0, 1), (x,)) if x.ndim == 2 else x


def reverse_dims(input: Any) -> Any:
    """x.T (and x.H of a real tensor): every dim reversed."""
    x = tensor(input, "T")
    return Op(Permute(tuple(range(x.ndim))[::-1]), (x,)) if x.ndim > 1 else x


def matrix_transpose(input: Any) -> Any:
    """x.mT (and x.mH of a real tensor): the last two dims swapped (a 0-d tensor as it is)."""
    x = tensor(input, "mT")
    if x.ndim == 1:
        raise ValueError(f"mT expects a tensor of at least 2 dims, got shape {x.shape}")
    return Op(Transpose(-2, -1), (x,)) if x.ndim else x


def view_as(input: Any, other: Any) -> Op:
    return Op(Reshape(tensor(other, "view_as").shape), (tensor(input, "view_as"),))


def tril(input: Any, diagonal: int = 0) -> Op:
    return Op(Triangle(False, diagonal), (tensor(input, "tril"),))


def triu(input: Any, diagonal: int = 0) -> Op:
    return Op(Triangle(True, diagonal), (tensor(input, "triu"),))


# --- picking entries -------------------------------------------------------------------------


def narrow(input: Any, dim: int, start: int, length: int) -> Op:
    return Op(Narrow(dim, start, length), (tensor(input, "narrow"),))


def select(input: Any, dim: int, index: int) -> Op:
    return Op(SelectDim(dim, index), (tensor(input, "select"),))


def index_select(input: Any, dim: int, index: Any) -> Op:
    item, extra = _index_arg(index, "index_select")
    return Op(IndexSelect(dim, item), (tensor(input, "index_select"), *extra))


def gather(input: Any, dim: int, index: Any, *, sparse_grad: bool = False) -> Op:
    """torch.gather; sparse_grad=True gives the same gradient, dense."""
    item, extra = _index_arg(index, "gather")
    return Op(Gather(dim, item), (tensor(input, "gather"), *extra))


# --- several tensors in, several out -----------------------------------------------------------


def stack(tensors: Sequence[Any], dim: int = 0) -> Op:
    refs = tuple(tensor(x, "stack") for x in tensors)
    if not refs:
        raise ValueError("stack: expected at least one tensor, got an empty list")
    return Op(Stack(dim, n_inputs=len(refs)), refs)


def _dim_size(x: Ref | Param, dim: Any, what: str) -> tuple[int, int]:
    if x.ndim == 0:
        raise ValueError(f"{what}: expected a tensor of at least 1 dim, got a 0-d tensor")
    d = wrap_dim(dim, x.ndim, what, x.shape)
    return d, x.shape[d]


def _split_result(x: Ref | Param, piece_sizes: tuple[int, ...], d: int) -> Any:
    """One Split layer, a node per piece; torch's tuple of pieces (one piece: itself)."""
    if len(piece_sizes) == 1:
        return (Op(Split(piece_sizes, d), (x,)),)
    return Op(Split(piece_sizes, d), (x,))


def split(tensor: Any, split_size_or_sections: Any, dim: int = 0) -> Any:
    """torch.split / x.split / x.split_with_sizes: a size, or the sizes of the pieces."""
    x = core.tensor(tensor, "split")
    d, n = _dim_size(x, dim, "split")
    sections = split_size_or_sections
    if isinstance(sections, (tuple, list)):
        sections = sizes("split", (sections,))
    return _split_result(x, split_sizes(n, sections), d)


def chunk(input: Any, chunks: int, dim: int = 0) -> Any:
    x = tensor(input, "chunk")
    d, n = _dim_size(x, dim, "chunk")
    return _split_result(x, chunk_sizes(n, chunks), d)


def unbind(input: Any, dim: int = 0) -> Any:
    x = tensor(input, "unbind")
    d, n = _dim_size(x, dim, "unbind")
    if n == 0:
        return ()
    if n == 1:
        return (Op(SelectDim(d, 0), (x,)),)
    return Op(Unbind(d, n), (x,))


def _samples() -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    return [
        Sample("view", (x,), fn=lambda x: x.view(x.size(0), -1)),
        Sample("flatten", (x,), module=nn.Flatten()),
        Sample("permute, transpose", (x,), fn=lambda x: x.permute(2, 0, 1).transpose(0, 1)),
        Sample("squeeze, unsqueeze", (x,), fn=lambda x: x.unsqueeze(1).squeeze(1)),
        Sample("cat", (x, x[:, :2].clone()), fn=lambda x, y: torch.cat([x, y], 1)),
    ]


_SHAPE = {"linear": True, "view": True, "samples": _samples}


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _cases(*cases: tuple[Any, ...]) -> Any:
    """samples() from (name, fn, inputs) or (name, fn, inputs, params)."""

    def samples() -> list[Sample]:
        return [Sample(c[0], c[2], fn=c[1], params=c[3] if len(c) > 3 else {}) for c in cases]

    return samples


class IndexedBias(nn.Module):
    """A Swin-style relative position bias: a table indexed by a buffer of indices (viewed
    flat, as torchvision writes it) and added to the input."""

    def __init__(self, window: int = 2, heads: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        n = (2 * window - 1) ** 2
        self.table = nn.Parameter(torch.randn(n, heads, generator=g, dtype=torch.float64))
        coords = torch.stack(
            torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        )
        rel = (coords.flatten(1)[:, :, None] - coords.flatten(1)[:, None, :]).permute(1, 2, 0)
        rel = rel + window - 1
        self.register_buffer("index", rel[..., 0] * (2 * window - 1) + rel[..., 1])
        self.area, self.heads = window * window, heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.table[self.index.view(-1)].view(self.area, self.area, -1)
        return x + bias.permute(2, 0, 1).contiguous().unsqueeze(0)


class TokenGather(nn.Module):
    """Rows picked by integer ids that are an input: x[ids], x.index_select, x.gather."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self.how == "getitem":
            return x[:, ids]
        if self.how == "index_select":
            return x.index_select(1, ids)
        return torch.gather(x, 1, ids.view(1, -1).expand(x.shape[0], -1))


_IDS = torch.tensor([3, 0, 3, 1])


def _getitem_samples() -> list[Sample]:
    x = _x(3, 4, 5)
    mask = torch.tensor([True, False, True, True])
    return [
        Sample("class token x[:, 0]", (x,), fn=lambda x: x[:, 0]),
        Sample("x[..., :2]", (x,), fn=lambda x: x[..., :2]),
        Sample("steps, None, negative", (x,), fn=lambda x: x[:, 1::2, None, -2]),
        Sample("int then a list (torch's order)", (x,), fn=lambda x: x[0, :, [4, 0, 4]]),
        Sample(
            "a parameter sliced",
            (x,),
            fn=lambda x, p: x + p[:, : x.shape[1]],
            params={"p": _x(1, 6, 5)},
        ),
        Sample("a buffer mask", (x,), module=_Masked(mask)),
        Sample("Swin relative position bias", (_x(2, 3, 4, 4),), module=IndexedBias()),
        Sample("ids that are an input", (x, _IDS), module=TokenGather("getitem")),
    ]


class _Masked(nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.mask]


def _split_samples() -> list[Sample]:
    x = _x(2, 9, 3)
    return [
        Sample("chunk qkv", (x,), fn=lambda x: (lambda q, k, v: q + 2 * k - v)(*x.chunk(3, 1))),
        Sample("chunk into fewer", (x,), fn=lambda x: torch.cat(torch.chunk(x, 4, 1)[::-1], 1)),
        Sample("split, a piece unused", (x,), fn=lambda x: x.split([2, 3, 4], 1)[2]),
        Sample("split by size", (x,), fn=lambda x: torch.split(x, 2, dim=-1)[0] * 2),
        Sample("one piece", (x,), fn=lambda x: x.chunk(1)[0]),
        Sample(
            "ShuffleNet: chunk, cat",
            (x[:, :8].contiguous(),),
            fn=lambda x: torch.cat(x.chunk(2, 1)[::-1], 1),
        ),
    ]


def _unbind_samples() -> list[Sample]:
    x = _x(3, 2, 4)
    return [
        Sample(
            "q, k, v = qkv.unbind(0)",
            (x,),
            fn=lambda x: (lambda q, k, v: q - 2 * k + v)(*x.unbind(0)),
        ),
        Sample("one of them", (x,), fn=lambda x: torch.unbind(x, -1)[1]),
        Sample("a dim of size 1", (x[:, :1].contiguous(),), fn=lambda x: x.unbind(1)[0]),
    ]


def _refusals() -> list[Refusal]:
    x = _x(3, 4)
    return [
        Refusal("index out of range", (x,), ValueError, "out of bounds", fn=lambda x: x[3]),
        Refusal(
            "narrow past the end", (x,), ValueError, "length in", fn=lambda x: x.narrow(1, 2, 3)
        ),
        Refusal(
            "expand a dim of size 3",
            (x,),
            ValueError,
            "only size-1 dims",
            fn=lambda x: x.expand(2, 4, 4),
        ),
    ]


_MOVE = {"linear": True}
_VIEW = {"linear": True, "view": True}

ROWS = [
    OpEntry(
        "getitem",
        "shape",
        getitem,
        functions=(operator.getitem,),
        note="x[...]: ints, slices (steps, clamped bounds), None, ..., index tensors (buffers, "
        "integer tensors computed in forward(), bool buffers), torch's order of ints and "
        "arrays; an entry of a size or of a tuple of outputs",
        samples=_getitem_samples,
        refusals=_refusals,
        **_VIEW,
    ),
    OpEntry(
        "cat",
        "shape",
        cat,
        functions=(torch.cat, torch.concat, torch.concatenate),
        note="any dim",
        **_SHAPE,
    ),
    OpEntry("view", "shape", reshape_method, methods=("view", "reshape"), **_SHAPE),
    OpEntry("reshape", "shape", reshape, functions=(torch.reshape,), **_SHAPE),
    OpEntry(
        "flatten",
        "shape",
        flatten,
        functions=(torch.flatten,),
        methods=("flatten",),
        modules=(nn.Flatten,),
        module_args=("start_dim", "end_dim"),
        **_SHAPE,
    ),
    OpEntry(
        "unsqueeze",
        "shape",
        unsqueeze,
        functions=(torch.unsqueeze,),
        methods=("unsqueeze",),
        **_SHAPE,
    ),
    OpEntry(
        "squeeze", "shape", squeeze, functions=(torch.squeeze,), methods=("squeeze",), **_SHAPE
    ),
    OpEntry(
        "permute", "shape", permute, functions=(torch.permute,), methods=("permute",), **_SHAPE
    ),
    OpEntry(
        "transpose",
        "shape",
        transpose,
        functions=(torch.transpose,),
        methods=("transpose",),
        **_SHAPE,
    ),
    OpEntry(
        "identity",
        "shape",
        same,
        methods=("contiguous", "clone"),
        modules=(nn.Identity,),
        module_args=lambda m: {},
        note="x.contiguous(), x.clone(), nn.Identity",
        **_SHAPE,
    ),
    OpEntry(
        "expand",
        "shape",
        expand,
        methods=("expand",),
        note="-1 keeps a dim, new leading dims",
        samples=_cases(
            (
                "class token expanded",
                lambda x, c: torch.cat([c.expand(x.shape[0], -1, -1), x], 1),
                (_x(2, 3, 4),),
                {"c": _x(1, 1, 4, seed=1)},
            ),
            ("new leading dims", lambda x: x.expand(2, -1, 3), (_x(4, 1),)),
        ),
        **_VIEW,
    ),
    OpEntry(
        "expand_as",
        "shape",
        expand_as,
        methods=("expand_as",),
        samples=_cases(("expand_as", lambda x, y: x.expand_as(y) + y, (_x(3, 1), _x(2, 3, 4)))),
        **_VIEW,
    ),
    OpEntry(
        "broadcast_to",
        "shape",
        broadcast_to,
        functions=(torch.broadcast_to,),
        methods=("broadcast_to",),
        samples=_cases(("broadcast_to", lambda x: torch.broadcast_to(x, (2, 3, 4)), (_x(3, 1),))),
        **_VIEW,
    ),
    OpEntry(
        "repeat",
        "shape",
        repeat,
        methods=("repeat",),
        samples=_cases(
            ("repeat", lambda x: x.repeat(2, 1, 3), (_x(3, 2),)),
            (
                "repeat a parameter",
                lambda x, b: x + b.repeat(1, x.shape[1], 1),
                (_x(2, 3, 4),),
                {"b": _x(1, 1, 4)},
            ),
        ),
        **_MOVE,
    ),
    OpEntry(
        "tile",
        "shape",
        tile,
        functions=(torch.tile,),
        methods=("tile",),
        samples=_cases(("tile", lambda x: torch.tile(x, (2,)) + x.tile(1, 2), (_x(3, 2),))),
        **_MOVE,
    ),
    OpEntry(
        "roll",
        "shape",
        roll,
        functions=(torch.roll,),
        methods=("roll",),
        note="shifts and dims, or the flattened tensor",
        samples=_cases(
            (
                "Swin shifted windows",
                lambda x: torch.roll(x, shifts=(-1, -1), dims=(1, 2)),
                (_x(2, 4, 4, 3),),
            ),
            ("flattened", lambda x: x.roll(5), (_x(3, 4),)),
        ),
        **_MOVE,
    ),
    OpEntry(
        "flip",
        "shape",
        flip,
        functions=(torch.flip,),
        methods=("flip",),
        samples=_cases(("flip", lambda x: torch.flip(x, (0, 2)) + x.flip(-1), (_x(2, 3, 4),))),
        **_MOVE,
    ),
    OpEntry(
        "fliplr",
        "shape",
        fliplr,
        functions=(torch.fliplr,),
        methods=("fliplr",),
        samples=_cases(("fliplr", torch.fliplr, (_x(2, 3),))),
        **_MOVE,
    ),
    OpEntry(
        "flipud",
        "shape",
        flipud,
        functions=(torch.flipud,),
        methods=("flipud",),
        samples=_cases(("flipud", torch.flipud, (_x(2, 3),))),
        **_MOVE,
    ),
    OpEntry(
        "movedim",
        "shape",
        movedim,
        functions=(torch.movedim, torch.moveaxis),
        methods=("movedim", "moveaxis"),
        samples=_cases(
            ("channels last", lambda x: x.movedim(1, -1), (_x(2, 3, 4, 5),)),
            ("several", lambda x: torch.moveaxis(x, (0, 1), (2, 0)), (_x(2, 3, 4),)),
        ),
        **_VIEW,
    ),
    OpEntry(
        "unflatten",
        "shape",
        unflatten,
        functions=(torch.unflatten,),
        methods=("unflatten",),
        modules=(nn.Unflatten,),
        module_args=lambda m: {"dim": m.dim, "sizes": tuple(m.unflattened_size)},
        samples=lambda: [
            Sample("heads", (_x(2, 5, 6),), fn=lambda x: x.unflatten(-1, (3, -1))),
            Sample("module", (_x(2, 12),), module=nn.Unflatten(1, (3, 2, 2))),
        ],
        **_VIEW,
    ),
    OpEntry(
        "swapaxes",
        "shape",
        swapaxes,
        functions=(torch.swapaxes, torch.swapdims),
        methods=("swapaxes", "swapdims"),
        samples=_cases(
            ("swapaxes", lambda x: x.swapaxes(0, 2) + torch.swapdims(x, 2, 0), (_x(2, 3, 2),))
        ),
        **_VIEW,
    ),
    OpEntry(
        "t",
        "shape",
        t,
        functions=(torch.t,),
        methods=("t",),
        note="a matrix transposed; 0-d and 1-d as they are",
        samples=_cases(("t", lambda x, v: x.t() @ v.t(), (_x(3, 2),), {"v": _x(3)})),
        **_VIEW,
    ),
    OpEntry(
        "view_as",
        "shape",
        view_as,
        methods=("view_as", "reshape_as"),
        samples=_cases(
            ("view_as", lambda x, y: x.view_as(y) - y + x.reshape_as(y), (_x(2, 6), _x(3, 4)))
        ),
        **_VIEW,
    ),
    OpEntry(
        "tril",
        "shape",
        tril,
        functions=(torch.tril,),
        methods=("tril", "tril_"),
        samples=_cases(("tril", lambda x: torch.tril(x) + x.tril(-1), (_x(2, 4, 3),))),
        **_MOVE,
    ),
    OpEntry(
        "triu",
        "shape",
        triu,
        functions=(torch.triu,),
        methods=("triu", "triu_"),
        samples=_cases(("triu", lambda x: torch.triu(x, 1) * 2, (_x(4, 4),))),
        **_MOVE,
    ),
    OpEntry(
        "narrow",
        "shape",
        narrow,
        functions=(torch.narrow,),
        methods=("narrow",),
        samples=_cases(
            ("narrow", lambda x: x.narrow(1, 1, 2) + torch.narrow(x, -1, -3, 2)[:, :2], (_x(3, 4),))
        ),
        **_VIEW,
    ),
    OpEntry(
        "select",
        "shape",
        select,
        functions=(torch.select,),
        methods=("select",),
        samples=_cases(("select", lambda x: x.select(1, -1), (_x(2, 3, 4),))),
        **_VIEW,
    ),
    OpEntry(
        "index_select",
        "shape",
        index_select,
        functions=(torch.index_select,),
        methods=("index_select",),
        note="a buffer of indices or integer ids computed in forward()",
        samples=lambda: [
            Sample("ids that are an input", (_x(2, 5), _IDS), module=TokenGather("index_select")),
        ],
        **_MOVE,
    ),
    OpEntry(
        "gather",
        "shape",
        gather,
        functions=(torch.gather,),
        methods=("gather",),
        note="a buffer of indices or integer ids computed in forward(); sparse_grad: dense",
        samples=lambda: [
            Sample("ids that are an input", (_x(2, 5), _IDS), module=TokenGather("gather")),
        ],
        **_MOVE,
    ),
    OpEntry(
        "stack",
        "shape",
        stack,
        functions=(torch.stack,),
        samples=_cases(
            ("stack", lambda x, y: torch.stack([x, y, x], -1), (_x(2, 3), _x(2, 3, seed=1)))
        ),
        **_MOVE,
    ),
    OpEntry(
        "split",
        "shape",
        split,
        functions=(torch.split,),
        methods=("split", "split_with_sizes"),
        note="a size or the pieces' sizes; one layer with a node per piece",
        samples=_split_samples,
        **_VIEW,
    ),
    OpEntry(
        "chunk",
        "shape",
        chunk,
        functions=(torch.chunk,),
        methods=("chunk",),
        note="torch's sizes: ⌈n / chunks⌉ each, so maybe fewer pieces",
        samples=_split_samples,
        **_VIEW,
    ),
    OpEntry(
        "unbind",
        "shape",
        unbind,
        functions=(torch.unbind,),
        methods=("unbind",),
        samples=_unbind_samples,
        **_VIEW,
    ),
]
