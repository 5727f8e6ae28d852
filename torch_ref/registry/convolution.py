"""Convolutions (manual_bp.ops.conv): z = b + Σ W ⋆ x; δ_prev is the full convolution of δ
with the rotated kernel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.ops.conv import Conv1d, Conv2d
from torch_ref.registry.core import Op, OpEntry, Sample, array, fused, param_arg, tensor


def conv_rule(cls: type[Conv1d | Conv2d]) -> Callable[..., Op]:
    """F.conv{n}d(x, weight, bias, stride, padding, dilation, groups); a module adds its
    padding_mode (zeros, reflect, replicate, circular)."""
    what = cls.__name__.lower()

    def rule(
        input: Any,
        weight: Any,
        bias: Any = None,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        *,
        padding_mode: str = "zeros",
    ) -> Op:
        w = param_arg(weight, what, "weight")
        b = param_arg(bias, what, "bias", optional=True)
        layer = cls(
            array(w), array(b), stride, padding, dilation, groups, padding_mode=padding_mode
        )
        return Op(layer, (tensor(input, what),), fused(weight=w, bias=b))

    return rule


def _conv_args(m: nn.Module) -> dict[str, Any]:
    return {
        "weight": m.weight,
        "bias": m.bias,
        "stride": m.stride,
        "padding": m.padding,
        "dilation": m.dilation,
        "groups": m.groups,
        "padding_mode": m.padding_mode,
    }


def _samples(n: int) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(n)
        conv = (nn.Conv1d, nn.Conv2d)[n - 1]
        fn = (F.conv1d, F.conv2d)[n - 1]
        x = torch.randn(2, 4, *(7,) * n, generator=g, dtype=torch.float64)
        w = torch.randn(6, 2, *(3,) * n, generator=g, dtype=torch.float64)
        return [
            Sample("module", (x,), module=conv(4, 3, 3).double()),
            Sample(
                "module, stride 2, reflect",
                (x,),
                module=conv(4, 4, 3, stride=2, padding=1, padding_mode="reflect").double(),
            ),
            Sample(
                "function, groups 2, dilation 2",
                (x,),
                fn=lambda x, w: fn(x, w, None, 1, 2, 2, 2),
                params={"w": w},
            ),
        ]

    return samples


ROWS = [
    OpEntry(
        f"conv{n}d",
        "convolution",
        conv_rule(cls),
        functions=(fn,),
        modules=(module,),
        module_args=_conv_args,
        note="stride, padding (int, tuple, 'same', 'valid'), dilation, groups, bias, "
        "padding_mode zeros/reflect/replicate/circular",
        linear=True,
        samples=_samples(n),
    )
    for n, cls, fn, module in (
        (1, Conv1d, F.conv1d, nn.Conv1d),
        (2, Conv2d, F.conv2d, nn.Conv2d),
    )
]
