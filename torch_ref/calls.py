"""What the record knows of a torch callable: how users write it, its registry row, whether
it writes in place, and the tensors in a call's arguments or outputs (torch_ref.record)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from torch_ref.registry import lookup_function, lookup_method, torch_name
from torch_ref.registry.core import OpEntry

#: the devices whose autocast regions the record turns off (the twin computes in float64)
_AUTOCAST = ("cpu", "cuda")
#: Tensor methods that cast to a floating dtype: the twin's is float64
_FLOAT_CASTS = {"float", "half", "bfloat16"}
#: reflected operators: `1 - x` arrives as x.__rsub__(1), the rule of operator.sub(1, x)
_REFLECTED = {
    "__rsub__": "sub",
    "__rtruediv__": "truediv",
    "__rdiv__": "truediv",
    "__rpow__": "pow",
    "__rmatmul__": "matmul",
    "__rfloordiv__": "floordiv",
    "__rmod__": "mod",
}


@dataclass(frozen=True)
class _Call:
    """What the record knows of a torch callable, looked up once."""

    entry: OpEntry | None
    what: str  # how users write it: F.relu, torch.cat, Tensor.view
    base: str  # node names: "linear", "linear_1", ...
    inplace: bool
    swap: bool  # a reflected operator: the rule takes (other, self)
    #: a property as the method call it is: x.mT is x.transpose(-2, -1)
    adapt: Callable[[tuple], tuple] | None = None
    #: a property with no rule (x.dtype, x.is_nested, x.data): read as it is
    attribute: bool = False


def _describe(func: Any) -> _Call:
    owner = getattr(func, "__self__", None)
    if type(owner).__name__ == "getset_descriptor":  # a property: x.T, x.mT, x.data
        name = owner.__name__
        if name in _PROPERTIES:
            method, adapt = _PROPERTIES[name]
            return _Call(lookup_method(method), f"Tensor.{name}", name, False, False, adapt)
        entry = lookup_method(name)
        return _Call(entry, f"Tensor.{name}", name, False, False, attribute=entry is None)
    entry = lookup_function(func)
    name = getattr(func, "__name__", type(func).__name__)
    method = (
        getattr(torch.Tensor, name, None) is func
        or getattr(torch._C.TensorBase, name, None) is func
        or getattr(func, "__qualname__", "").startswith(("Tensor.", "TensorBase."))
    )
    swap = False
    if entry is None and method:
        if name in _REFLECTED:
            entry, swap = lookup_function(getattr(operator, _REFLECTED[name])), True
        else:
            entry = lookup_method(name)
        if entry is None and name.startswith("__") and hasattr(operator, name.strip("_")):
            entry = lookup_function(getattr(operator, name.strip("_")))
    what = f"Tensor.{name}" if method else torch_name(func)
    inplace = method and (
        (name.endswith("_") and not name.endswith("__"))
        or name in ("__setitem__",)
        or (
            name.startswith("__i")
            and name.endswith("__")
            and name not in ("__init__", "__iter__", "__index__", "__int__", "__invert__")
        )
    )
    base = name.strip("_") or "call"
    return _Call(entry, what, base, inplace, swap)


#: tensor properties that are method calls (for real tensors the conjugate is the tensor)
_PROPERTIES: dict[str, tuple[str, Callable[[tuple], tuple]]] = {
    "T": ("permute", lambda a: (a[0], *reversed(range(a[0].ndim)))),
    "H": ("permute", lambda a: (a[0], *reversed(range(a[0].ndim)))),
    "mT": ("transpose", lambda a: (a[0], -2, -1)),
    "mH": ("transpose", lambda a: (a[0], -2, -1)),
}

_CALLS: dict[Any, _Call] = {}


def _call_of(func: Any) -> _Call:
    try:
        return _CALLS[func]
    except KeyError:
        found = _CALLS[func] = _describe(func)
        return found
    except TypeError:  # an unhashable callable
        return _describe(func)


def _tensors(value: Any, out: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """The tensors in a call's arguments or outputs (tuples, lists, dicts, nested)."""
    out = [] if out is None else out
    if isinstance(value, torch.Tensor):
        out.append(value)
        return out
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (tuple, list)):
        return out
    for v in value:  # (the common case, a flat tuple of arguments, without recursion)
        if isinstance(v, torch.Tensor):
            out.append(v)
        elif isinstance(v, (tuple, list, dict)) and v:
            _tensors(v, out)
    return out


def _not_float64(a: Any) -> bool:
    """A floating dtype or tensor other than float64 (which the twin makes float64)."""
    if isinstance(a, torch.Tensor):
        return a.dtype is not torch.float64 and a.is_floating_point()
    return isinstance(a, torch.dtype) and a.is_floating_point and a is not torch.float64


def _kind(t: torch.Tensor) -> str:
    if t.is_floating_point():
        return "float"
    return "bool" if t.dtype == torch.bool else "int"
