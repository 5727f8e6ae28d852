"""Pooling (manual_bp.ops.pooling): max routes δ to the window's winner, average spreads it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.ops.base import Layer
from manual_bp.ops.pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Sample, computed


def no_indices(what: str, return_indices: bool) -> None:
    if return_indices:
        raise UnsupportedModuleError(
            f"{what} with return_indices=True is not supported (its second output is not "
            "differentiable); expected return_indices=False"
        )


def max_pool_rule(cls: type[MaxPool1d | MaxPool2d]) -> Callable[..., Op]:
    what = f"max_pool{cls.n_spatial}d"

    def rule(
        input: Any,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        ceil_mode: bool = False,
        return_indices: bool = False,
    ) -> Op:
        no_indices(what, return_indices)
        # NOTE: torch's stride=[] means stride = kernel_size, as None does
        layer = cls(kernel_size, stride or None, padding, dilation, ceil_mode)
        return Op(layer, (computed(input, what),))

    return rule


def avg_pool1d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Op:
    layer = AvgPool1d(kernel_size, stride or None, padding, ceil_mode, count_include_pad)
    return Op(layer, (computed(input, "avg_pool1d"),))


def avg_pool2d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Op:
    layer = AvgPool2d(
        kernel_size, stride or None, padding, ceil_mode, count_include_pad, divisor_override
    )
    return Op(layer, (computed(input, "avg_pool2d"),))


def adaptive_rule(cls: type[Layer], what: str) -> Callable[..., Op]:
    def rule(input: Any, output_size: Any, return_indices: bool = False) -> Op:
        no_indices(what, return_indices)
        return Op(cls(output_size), (computed(input, what),))

    return rule


def _samples(fn: Callable[..., Any], n: int, module: nn.Module) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(n)
        x = torch.randn(2, 3, *(7,) * n, generator=g, dtype=torch.float64)
        return [Sample("module", (x,), module=module), Sample("function", (x,), fn=fn)]

    return samples


_MAX = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVG1 = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
_AVG2 = (*_AVG1, "divisor_override")
_ADAPTIVE = ("output_size",)

ROWS = (
    [
        OpEntry(
            f"max_pool{n}d",
            "pooling",
            max_pool_rule(cls),
            functions=(fn,),
            modules=(module,),
            module_args=_MAX,
            note="padding, dilation, ceil_mode; ties go where torch sends them",
            samples=_samples(lambda x, fn=fn: fn(x, 3, 2, 1), n, module(3, 2, 1)),
        )
        for n, cls, fn, module in (
            (1, MaxPool1d, F.max_pool1d, nn.MaxPool1d),
            (2, MaxPool2d, F.max_pool2d, nn.MaxPool2d),
        )
    ]
    + [
        OpEntry(
            "avg_pool1d",
            "pooling",
            avg_pool1d,
            functions=(F.avg_pool1d,),
            modules=(nn.AvgPool1d,),
            module_args=_AVG1,
            note="ceil_mode, count_include_pad",
            linear=True,
            samples=_samples(lambda x: F.avg_pool1d(x, 3, 2, 1), 1, nn.AvgPool1d(3, 2)),
        ),
        OpEntry(
            "avg_pool2d",
            "pooling",
            avg_pool2d,
            functions=(F.avg_pool2d,),
            modules=(nn.AvgPool2d,),
            module_args=_AVG2,
            note="ceil_mode, count_include_pad, divisor_override",
            linear=True,
            samples=_samples(lambda x: F.avg_pool2d(x, 3, 2, 1), 2, nn.AvgPool2d(3, 2)),
        ),
    ]
    + [
        OpEntry(
            f"adaptive_{kind}_pool{n}d",
            "pooling",
            adaptive_rule(cls, f"adaptive_{kind}_pool{n}d"),
            functions=(fn,),
            modules=(module,),
            module_args=_ADAPTIVE if kind == "avg" else (*_ADAPTIVE, "return_indices"),
            note="output sizes with None",
            linear=kind == "avg",
            samples=_samples(lambda x, fn=fn: fn(x, 3), n, module(4)),
        )
        for kind, n, cls, fn, module in (
            ("avg", 1, AdaptiveAvgPool1d, F.adaptive_avg_pool1d, nn.AdaptiveAvgPool1d),
            ("avg", 2, AdaptiveAvgPool2d, F.adaptive_avg_pool2d, nn.AdaptiveAvgPool2d),
            ("max", 1, AdaptiveMaxPool1d, F.adaptive_max_pool1d, nn.AdaptiveMaxPool1d),
            ("max", 2, AdaptiveMaxPool2d, F.adaptive_max_pool2d, nn.AdaptiveMaxPool2d),
        )
    ]
)
