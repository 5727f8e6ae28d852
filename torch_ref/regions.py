"""Custom autograd Functions met in the record: a mixin of the recorder (torch_ref.record).

Autograd runs a Function's forward without grad; the nodes built there are the Function's,
listed under its apply frame (its region), which torch_ref.custom compares with its backward.
"""

from __future__ import annotations

import sys
from types import FrameType

import torch

from torch_ref.registry.core import Param, Ref

_APPLY = torch.autograd.function.Function.apply.__func__.__code__  # type: ignore[attr-defined]


class Regions:
    """The recorder's regions: the nodes each custom Function's forward built."""

    def function_frame(self) -> FrameType | None:
        """The frame of the innermost custom autograd.Function.apply on the stack (autograd
        runs the Function's forward without grad), or None."""
        f = sys._getframe(2)
        while f is not None and f is not self.stop:
            if f.f_code is _APPLY:
                return f
            f = f.f_back
        return None

    def region(self, frame: FrameType) -> list[str]:
        if frame not in self.regions:
            cls = frame.f_locals.get("cls")
            args = frame.f_locals.get("args", ())
            names: list[str | None] = []
            for a in args:
                if not isinstance(a, torch.Tensor):
                    names.append(None)
                    continue
                v = self.bound.get(id(a))
                if v is None and self.conv.names.get(id(a)) is not None:
                    v = (self.conv.model_tensor(a), 0)
                if v is not None and isinstance(v[0], Param) and v[0].trainable:
                    v = (self.b.leaf(v[0]), 0)
                names.append(v[0].name if v is not None and isinstance(v[0], Ref) else "")
            self.regions[frame] = (getattr(cls, "__name__", "Function"), names, [])
            self.frames.append(frame)
        return self.regions[frame][2]

    def tag(self, frame: FrameType | None, before: int) -> None:
        if frame is None and not torch.is_grad_enabled():
            frame = self.function_frame()
        if frame is not None:
            self.region(frame).extend(n.name for n in self.b.nodes[before:])
