"""Shape ops (manual_bp.ops.shape): δ_prev is δ moved back where the value came from."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from manual_bp.ops.shape import Cat, Flatten, Permute, Reshape, Transpose
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Param, Ref, Sample, tensor


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


def getitem(obj: Any, index: Any) -> Any:
    """An entry of a size or of a layer's tuple of outputs (x.shape[0], out[0]); indexing or
    slicing a tensor is refused."""
    if isinstance(obj, (Ref, Param)):
        raise UnsupportedModuleError(
            "indexing or slicing a tensor (x[...]) is not supported; supported: indexing a "
            "size (x.shape[0]) or a tuple of outputs"
        )
    return obj[index]


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

ROWS = [
    OpEntry(
        "getitem",
        "shape",
        getitem,
        functions=(operator.getitem,),
        note="an entry of a size or of a tuple of outputs",
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
