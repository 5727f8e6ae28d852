"""The float64 twin's casts: a mixin of the recorder (torch_ref.record).

A floating `dtype` argument (`.to(torch.float32)`, `softmax(x, dtype=torch.float32)`,
`torch.zeros(..., dtype=torch.half)`), `.float()` / `.half()` / `.bfloat16()`, and floating
tensors of another dtype met as operands (a float32 attribute that is not a buffer) all
become float64, so the reference is float64 end to end; each neutralised cast is listed in
`Recording.casts`.
"""

from __future__ import annotations

from typing import Any

import torch

from torch_ref.calls import _FLOAT_CASTS, _call_of, _not_float64
from torch_ref.capture import _user_line


class Casts:
    """The recorder's casts: a call as the float64 twin makes it."""

    def float64(self, func: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple, dict]:
        """The call as the float64 twin makes it (see the module's docstring)."""
        name = getattr(func, "__name__", "")
        if name in _FLOAT_CASTS and getattr(torch.Tensor, name, None) is func:
            self.casts.append(f"Tensor.{name}{_user_line()}")
            func = torch.Tensor.double
        if not any(map(_not_float64, args)) and not (
            kwargs and any(map(_not_float64, kwargs.values()))
        ):
            return func, args, kwargs  # (nearly every call: nothing to change)
        changed = False

        def fix(a: Any) -> Any:
            nonlocal changed
            if isinstance(a, torch.dtype) and a.is_floating_point and a != torch.float64:
                changed = True
                return torch.float64
            if isinstance(a, torch.Tensor) and a.is_floating_point() and a.dtype != torch.float64:
                changed = True
                out = a.double()
                if self.conv.names.get(id(a)) is not None:  # the caller's own parameter
                    self.bind(out, self.conv.model_tensor(a), id(a) in self.live)
                return out
            return a

        args2 = tuple(fix(a) for a in args)
        kwargs2 = {k: fix(v) for k, v in kwargs.items()}
        if changed:
            self.casts.append(f"{_call_of(func).what}{_user_line()}")
            return func, args2, kwargs2
        return func, args, kwargs
