"""Sizes, read off the tensors' known shapes at conversion time: x.size(0), x.shape, x.ndim,
x.dim(), x.numel(), and checks on them (torch._assert, `assert x.ndim == 4`), which are
evaluated there: a failing one is a ValueError naming your line."""

from __future__ import annotations

import builtins
import math
from typing import Any

import torch
import torch.nn.functional as F

from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import OpEntry, Param, Ref, tensor
from torch_ref.registry.shape import matrix_transpose, reverse_dims, wrap_dim

#: attributes of a tensor that are plain values here (float64 on the CPU, as the manual pass)
PLAIN_ATTRIBUTES = ("shape", "ndim", "dtype", "device", "is_cuda", "requires_grad", "is_nested")


def attribute(x: Ref | Param, name: str) -> Any:
    """x.shape, x.ndim, ...: the value the traced tensor has here."""
    if name == "shape":
        return torch.Size(x.shape)
    if name == "ndim":
        return x.ndim
    if name == "dtype":
        return (
            x.tensor.dtype
            if isinstance(x, Param)
            else (
                torch.float64
                if x.dtype == "float"
                else torch.int64
                if x.dtype == "int"
                else torch.bool
            )
        )
    if name == "device":
        return torch.device("cpu")
    if name in ("is_cuda", "is_nested"):
        return False
    if name == "requires_grad":
        return x.trainable if isinstance(x, Param) else x.dtype == "float"
    raise UnsupportedModuleError(
        f"the tensor attribute .{name} is not supported; supported: "
        f"{', '.join('.' + a for a in PLAIN_ATTRIBUTES)}"
    )


def get_attribute(obj: Any, name: str) -> Any:
    """getattr(x, name) as fx records it: x.T and x.mT are transposes, x.shape and friends
    plain values."""
    if isinstance(obj, (Ref, Param)):
        if name in TRANSPOSES:
            return TRANSPOSES[name](obj)
        return attribute(obj, name)
    return builtins.getattr(obj, name)


#: the transposing attributes, real tensors' .H and .mH being their .T and .mT
TRANSPOSES = {"T": reverse_dims, "H": reverse_dims, "mT": matrix_transpose, "mH": matrix_transpose}


def is_floating_point(input: Any) -> bool:
    return (
        tensor(input, "is_floating_point").dtype == "float"
        if isinstance(input, Ref)
        else (tensor(input, "is_floating_point").tensor.is_floating_point())
    )


def none_or_dtype(input: Any) -> Any:
    """torch.nn.functional._none_or_dtype: a mask's dtype, or None."""
    return None if input is None else attribute(tensor(input, "_none_or_dtype"), "dtype")


def size(input: Any, dim: int | None = None) -> torch.Size | int:
    x = tensor(input, "size")
    if dim is None:
        return torch.Size(x.shape)
    return x.shape[wrap_dim(dim, x.ndim, "size", x.shape)]


def numel(input: Any) -> int:
    return math.prod(tensor(input, "numel").shape)


ROWS = [
    OpEntry("size", "sizes", size, methods=("size",), note="x.size(), x.size(d)"),
    OpEntry("dim", "sizes", lambda input: tensor(input, "dim").ndim, methods=("dim", "ndimension")),
    OpEntry("numel", "sizes", numel, functions=(torch.numel,), methods=("numel",)),
    OpEntry(
        "getattr",
        "sizes",
        get_attribute,
        functions=(builtins.getattr,),
        note="x.shape, x.ndim, x.dtype, x.device; x.T, x.mT",
    ),
    OpEntry(
        "is_floating_point",
        "sizes",
        is_floating_point,
        functions=(torch.is_floating_point,),
        methods=("is_floating_point",),
    ),
    OpEntry("_none_or_dtype", "sizes", none_or_dtype, functions=(F._none_or_dtype,)),
    OpEntry(
        "_nested_tensor_from_mask_left_aligned",
        "sizes",
        lambda *args: False,  # (nn.TransformerEncoder's fast-path test: not taken, as with grad)
        functions=(torch._nested_tensor_from_mask_left_aligned,),
    ),
]
