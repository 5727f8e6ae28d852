"""Padding (manual_bp.ops.padding): F.pad's constant, reflect, replicate and circular modes,
negative pads cropping; the backward folds each copy's gradient onto the cell it copies."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.ops.padding import Pad
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Refusal, Sample, computed, is_plain


def pad(input: Any, pad: Any, mode: str = "constant", value: Any = None) -> Op:
    """F.pad(x, pad, mode, value): the padding modules call it with their attributes."""
    if not is_plain(pad, value):
        raise UnsupportedModuleError("pad: expected pad and value as Python numbers, got a tensor")
    return Op(Pad(tuple(pad), mode, value), (computed(input, "pad"),))


#: each padding module type and the F.pad mode its forward passes
_MODULES: dict[type[nn.Module], str] = {
    **dict.fromkeys((nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d), "constant"),
    **dict.fromkeys((nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d), "constant"),
    **dict.fromkeys((nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d), "reflect"),
    **dict.fromkeys((nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d), "replicate"),
    **dict.fromkeys((nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d), "circular"),
}


def _module_args(m: nn.Module) -> dict[str, Any]:
    mode = _MODULES[type(m)]
    return {"pad": m.padding, "mode": mode, "value": m.value if mode == "constant" else None}


def _samples() -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    x2 = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    x3 = torch.randn(1, 2, 3, 4, 3, generator=g, dtype=torch.float64)
    return [
        Sample("ZeroPad2d", (x2,), module=nn.ZeroPad2d((1, 2, 0, 3))),
        Sample("ConstantPad1d, value 1.5", (x1,), module=nn.ConstantPad1d(2, 1.5)),
        Sample("ReflectionPad2d", (x2,), module=nn.ReflectionPad2d((1, 2, 3, 0))),
        Sample("ReplicationPad3d", (x3,), module=nn.ReplicationPad3d(2)),
        Sample("CircularPad1d", (x1,), module=nn.CircularPad1d((3, 1))),
        Sample("ReflectionPad3d", (x3,), module=nn.ReflectionPad3d((1, 1, 2, 0, 1, 2))),
        Sample("function, reflect with a crop", (x1,), fn=lambda x: F.pad(x, (-1, 3), "reflect")),
        Sample(
            "function, circular 2-d with a crop",
            (x2,),
            fn=lambda x: F.pad(x, (2, -1, 1, 3), mode="circular"),
        ),
        Sample("function, constant, crop", (x2,), fn=lambda x: F.pad(x, (1, -2, -1, 0))),
    ]


def _refusals() -> list[Refusal]:
    x = torch.zeros(1, 2, 5, dtype=torch.float64)
    return [
        Refusal(
            "circular wider than the crop left (torch wraps twice or raises)",
            (x,),
            ValueError,
            "must be at most the size 2 left after cropping",
            fn=lambda x: F.pad(x, (-3, 4), "circular"),
        ),
        Refusal(
            "reflect as wide as the input",
            (x,),
            ValueError,
            "must be smaller than the input size 5",
            module=nn.ReflectionPad1d(5),
        ),
    ]


ROWS = [
    OpEntry(
        "pad",
        "padding",
        pad,
        functions=(F.pad,),
        modules=tuple(_MODULES),
        module_args=_module_args,
        note="constant (any value; negative pads crop), reflect, replicate, circular, in "
        "1-d/2-d/3-d; the Zero/Constant/Reflection/Replication/CircularPad modules",
        linear=True,
        samples=_samples,
        refusals=_refusals,
    )
]
