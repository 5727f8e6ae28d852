"""Modules with a registry row of their own (nn.Linear, nn.LSTM, nn.MultiheadAttention, ...),
recorded whole by forward hooks: they are the readable formulas, and the names δ is reported
under. A mixin of the recorder (torch_ref.record)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from torch_ref.calls import _AUTOCAST, _tensors
from torch_ref.capture import _PLAIN, Probe, _user_line
from torch_ref.errors import NotCovered
from torch_ref.registry import lookup_module
from torch_ref.registry.core import Ref


class WholeModules:
    """The recorder's module hooks: a module with a row is one call of its rule."""

    aside = False  # the mode is off the stack inside a module recorded whole

    def enter(self, path: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.scope.append((path, module))
        if self.depth:
            self.pending.append(None)
            return
        entry = lookup_module(type(module))
        if entry is None or "forward" in vars(module):
            self.pending.append(None)
            return
        on, frame = self.recording(args, kwargs, module)
        module_kwargs = self.row_kwargs(entry, module) if on else None
        if module_kwargs is None:
            self.pending.append(None)  # (its forward's calls, one by one)
            return
        what = f"module {path!r} ({type(module).__name__})"
        if _inplace(module) and args and isinstance(args[0], torch.Tensor):
            self.refuse_leaf_write(args[0], what)
        vargs = self.values_of(args, what)
        vkwargs = self.values_of(kwargs, what) if kwargs else {}
        before = len(self.b.nodes)
        k = self.calls.get(path, 0)
        self.calls[path] = k + 1
        probe = Probe("module", path, k) if self.keep_z else None  # (for the reference)
        try:
            result = self.conv.call(
                entry, what, _user_line, path or "model", tuple(vargs), vkwargs, module,
                probe, path, module_kwargs=module_kwargs,
            )  # fmt: skip
        except NotCovered:  # (a form its row does not cover: its forward's calls, one by one)
            self.calls[path] = k
            self.pending.append(None)
            return
        self.tag(frame, before)
        self.pending.append((result, frame, before))
        self.depth += 1
        self.step_aside()

    def step_aside(self) -> None:
        """Inside a module recorded whole, torch's calls are its own business: the mode
        leaves the stack until the module returns (its calls then dispatch as in a plain
        run), unless autocast is on, which the mode turns off call by call."""
        top = torch._C._len_torch_function_stack() - 1
        if top < 0 or torch._C._get_function_stack_at(top) is not self:
            return
        if torch._C._is_any_autocast_enabled() and any(map(torch.is_autocast_enabled, _AUTOCAST)):
            return
        torch._C._pop_torch_function_stack()
        self.aside = True

    def step_back(self) -> None:
        """The mode on the stack again (a module recorded whole returned, or raised)."""
        if self.aside:
            self.aside = False
            torch._C._push_on_torch_function_stack(self)

    def row_kwargs(self, entry: Any, module: nn.Module) -> dict[str, Any] | None:
        """The module's arguments to its row's rule, or None where its forward's calls are
        recorded one by one instead: a tensor the row would take from the module was
        computed in this run and carries gradient (nn.utils.weight_norm's pre-hook sets
        `weight`), or the row does not cover the module's form."""
        try:
            module_kwargs = entry.module_kwargs(module)
        except NotCovered:
            return None
        bound, live = self.bound, self.live
        for v in module_kwargs.values():  # (flat: tensors and plain values, as they are)
            if type(v) in _PLAIN:
                continue
            for t in (v,) if isinstance(v, torch.Tensor) else _tensors(v):
                if id(t) in bound and id(t) in live:
                    return None
        return module_kwargs

    def leave(self, path: str, module: nn.Module, output: Any) -> Any:
        self.scope.pop()
        pending = self.pending.pop()
        if pending is None:
            return None
        self.step_back()
        self.depth -= 1
        result, _, before = pending
        grad = torch.is_grad_enabled()
        what = f"module {path!r} ({type(module).__name__})"
        new = self.bind_output(self.inner_deltas(path, output), result, what, grad)
        self.module_output(path, result)
        return new if new is not output else None

    def module_output(self, path: str, result: Any) -> None:
        outputs = self.b.module_outputs
        key, k = path, 1
        while key in outputs:
            key, k = f"{path}#{k}", k + 1
        first = result
        while isinstance(first, (tuple, list)) and first:
            first = first[0]
        if isinstance(first, Ref):
            outputs[key] = first.name


def _inplace(module: nn.Module) -> bool:
    """getattr(module, "inplace", False) is True, without the AttributeError that getattr
    raises and catches for the modules that have no such attribute (most): only the
    instance's own attribute or its class's (a flag, a property) can be True; what
    nn.Module.__getattr__ finds (parameters, buffers, submodules) never is."""
    if "inplace" not in module.__dict__ and not hasattr(type(module), "inplace"):
        return False
    return getattr(module, "inplace", False) is True
