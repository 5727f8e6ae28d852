"""Shape ops that move, repeat or pick entries, or give several tensors
(manual_bp.ops.shape): expand, repeat and tile, roll, flip, movedim, unflatten, the
transposes, triangles, narrow, select, index_select, gather, stack, split, chunk, unbind;
δ_prev is δ moved back where the value came from (summed where it was used twice)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from manual_bp.ops.shape import (
    Expand,
    Flip,
    Gather,
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
from torch_ref.errors import NotCovered
from torch_ref.registry import core
from torch_ref.registry.core import Op, OpEntry, Param, Ref, Sample, tensor
from torch_ref.registry.shape.reshaping import (
    _IDS,
    _MOVE,
    _VIEW,
    TokenGather,
    _cases,
    _index_arg,
    _split_samples,
    _unbind_samples,
    _x,
    sizes,
    wrap_dim,
)

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


def flip(input: Any, *args: Any, dims: Any = None) -> Op:
    """torch.flip(x, dims) / x.flip(*dims)."""
    return Op(Flip(sizes("flip", args if dims is None else (dims,))), (tensor(input, "flip"),))


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
    if isinstance(start, (Ref, Param)):  # (torch reads its value: lowering)
        raise NotCovered("narrow: this row takes start as a number, got a tensor")
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


ROWS = [
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
        samples=_cases(
            ("flip", lambda x: torch.flip(x, (0, 2)) + x.flip(-1), (_x(2, 3, 4),)),
            ("dims as a keyword", lambda x: torch.flip(x, dims=[1]), (_x(2, 3, 4),)),
        ),
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
            (
                "narrow",
                lambda x: x.narrow(1, 1, 2) + torch.narrow(x, -1, -3, 2)[:, :2],
                (_x(3, 4),),
            ),
            (
                "start a 0-d tensor (torch's lowering)",
                lambda x: x.narrow(1, torch.tensor(2), 2),
                (_x(3, 4),),
            ),
            # fmt: skip
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
            Sample(
                "an empty index (of any shape: gathers nothing)",
                (_x(5),),
                fn=lambda x: x * (1 + torch.gather(x, 0, torch.zeros(2, 0, dtype=int)).sum()),
            ),
        ],  # fmt: skip
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
