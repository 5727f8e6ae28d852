"""Where a forward cuts the gradient of a value it computed from the inputs, and uses it again.

torch's gradcheck compares autograd against the derivative of the function: finite
differences move the inputs and see every path from them to the outputs. The oracle's
reference is the exact derivative of the ops autograd follows, so the two references part
where the forward computes a floating value from the inputs outside autograd — `.detach()`,
an op under `torch.no_grad()` — and then uses that value where the output depends on it
smoothly: `x / x.norm().detach()`, a straight-through estimator
`x + (x.round() - x).detach()`, a threshold nudged by `nextafter(boundary.detach())`. There
the oracle agrees with autograd by construction while
the function's derivative differs, so gradcheck cannot tell a right backward from a wrong one,
and says so instead of passing.

So where a cut value is used, the oracle is taken again through the cuts: `through(fn)` runs
the forward with every `.detach()` an identity view and every op under `no_grad` (outside a
custom Function's forward) run with grad enabled, so that the record follows the paths
autograd does not — the derivative of the function, as finite differences take it. A cut that
changes nothing (a projective scale detached before a division the output is invariant to)
then passes, a straight-through estimator fails as in torch (so does otsu's threshold nudged
by `nextafter`, whose row takes torch's derivative), and a path the record cannot follow is
refused, naming the cut.

`watch()` follows those values (a mode over the run): a floating output that carries no
gradient but is computed from a value that does (or from such a value), is "cut"; the first
cut value met again by an op whose output carries gradient, or returned, is reported with the
line that cut it. Values that depend on the inputs only through a piecewise-constant step
(`round`, `floor`, a comparison, an integer cast) or not at all (`zeros_like`, `new_ones`) are
not cut: their derivative is zero where it exists, as the record takes it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from torch_ref.calls import _tensors
from torch_ref.capture import _user_line

#: ops whose floating result does not move with the values they read (zero derivative)
_STEPS = {"round", "floor", "ceil", "trunc", "sign", "signbit", "heaviside"}
_SHAPE_ONLY = ("_like", "new_")


def _floating(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point()


def _is_data(func: Any) -> bool:
    """func is the getter of Tensor.data (a detached alias)."""
    return getattr(getattr(func, "__self__", None), "__name__", "") == "data"


def _cuts(func: Any, ins: list[torch.Tensor]) -> bool:
    """Whether this call cuts the gradient of a floating input that carries it: `.detach()`,
    `.data`, or any op under no_grad outside a custom Function's forward (with grad on, an
    output without grad reads its live inputs only for their shape or dtype: `expand_as`,
    `.to(x)`, `type_as`)."""
    if not any(t.requires_grad and t.is_floating_point() for t in ins):
        return False
    if func in _DETACH or _is_data(func):
        return True
    return not torch.is_grad_enabled() and not _in_function()


def _name(func: Any) -> str:
    return "Tensor.data" if _is_data(func) else getattr(func, "__name__", str(func))


class _Cuts(TorchFunctionMode):
    """The mode: tensors cut from the inputs (by id, kept alive) and where each was cut."""

    def __init__(self) -> None:
        super().__init__()
        self.cut: dict[int, tuple[torch.Tensor, str]] = {}
        self.used: str | None = None  # the first cut value used where gradient flows

    def origin(self, tensors: list[torch.Tensor]) -> str | None:
        for t in tensors:
            found = self.cut.get(id(t))
            if found is not None and found[0] is t and not t.requires_grad:
                return found[1]
        return None

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not self.cut and torch.is_grad_enabled() and func not in _DETACH and not _is_data(func):
            return out  # (nothing cut yet, and nothing here cuts: most calls)
        name = getattr(func, "__name__", "")
        if name in _STEPS or name.startswith(_SHAPE_ONLY) or name.endswith(_SHAPE_ONLY[0]):
            return out
        ins = _tensors((args, kwargs))
        origin = self.origin(ins)
        outs = _tensors(out)
        if origin is not None and self.used is None and any(t.requires_grad for t in outs):
            self.used = origin
        if origin is None and _cuts(func, ins):
            origin = f"{_name(func)}{_user_line()}"
        if origin is not None:
            for t in outs:
                if _floating(t) and not t.requires_grad:
                    self.cut[id(t)] = (t, origin)
        return out

    def returned(self, outputs: Any) -> None:
        """A cut value among the outputs is used too (the function returns it)."""
        leaves = [t for t in pytree.tree_leaves(outputs) if isinstance(t, torch.Tensor)]
        origin = self.origin(leaves)
        if origin is not None and self.used is None:
            self.used = origin


@contextmanager
def watch() -> Iterator[_Cuts]:
    """The run inside is watched; `.used` is then the first cut that mattered, or None."""
    mode = _Cuts()
    with mode:
        yield mode
    mode.cut.clear()


_APPLY = torch.autograd.function.Function.apply.__func__.__code__  # type: ignore[attr-defined]
_DETACH = {torch.Tensor.detach, torch.detach}


def _in_function() -> bool:
    """Whether a custom autograd.Function's forward is on the stack (it runs without grad)."""
    f = sys._getframe(2)
    while f is not None:
        if f.f_code is _APPLY:
            return True
        f = f.f_back
    return False


class _Through(TorchFunctionMode):
    """The mode over the forward (above the record's): `.detach()` is `view_as`, an op under
    no_grad runs with grad (outside a custom Function's forward)."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _DETACH and isinstance(args[0], torch.Tensor):
            return args[0].view_as(args[0])
        if not torch.is_grad_enabled() and not _in_function():
            with torch.enable_grad():
                return func(*args, **kwargs)
        return func(*args, **kwargs)


def through(fn: Callable[..., Any]) -> Callable[..., Any]:
    """fn with the gradient cuts of its forward undone (see the module docstring)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        with _Through():
            return fn(*args, **kwargs)

    run.__qualname__ = getattr(fn, "__qualname__", type(fn).__name__)
    return run
