"""Shape ops that keep every entry once (manual_bp.ops.shape): x[...], cat, view and
reshape, flatten, squeeze and unsqueeze, permute, transpose, identity; δ_prev is δ moved
back where the value came from. The samples the shape rows share are here too."""

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
    Flatten,
    Index,
    Permute,
    Reshape,
    Transpose,
)
from torch_ref.errors import UnsupportedModuleError
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
]
