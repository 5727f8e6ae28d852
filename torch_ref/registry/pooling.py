"""Pooling (manual_bp.ops.pooling): max routes δ to the window's winner, average spreads it,
power-average (LPPool) is (K · avg(x^p))^(1/p)."""

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
    AdaptiveAvgPool3d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AdaptiveMaxPool3d,
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    LPPool1d,
    LPPool2d,
    LPPool3d,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
)
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Refusal, Sample, computed


def no_indices(what: str, return_indices: bool) -> None:
    if return_indices:
        raise UnsupportedModuleError(
            f"{what} with return_indices=True is not supported (its second output is not "
            "differentiable); expected return_indices=False"
        )


def max_pool_rule(cls: type[MaxPool1d | MaxPool2d | MaxPool3d]) -> Callable[..., Op]:
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


def avg_pool_rule(cls: type[AvgPool2d | AvgPool3d]) -> Callable[..., Op]:
    what = f"avg_pool{cls.n_spatial}d"

    def rule(
        input: Any,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> Op:
        layer = cls(
            kernel_size, stride or None, padding, ceil_mode, count_include_pad, divisor_override
        )
        return Op(layer, (computed(input, what),))

    return rule


def lp_pool_rule(cls: type[LPPool1d | LPPool2d | LPPool3d]) -> Callable[..., Op]:
    what = f"lp_pool{cls.n_spatial}d"

    def rule(
        input: Any, norm_type: Any, kernel_size: Any, stride: Any = None, ceil_mode: bool = False
    ) -> Op:
        if isinstance(norm_type, (int, float)) and norm_type < 1:
            raise UnsupportedModuleError(
                f"{what}: norm_type {norm_type} is not supported (below 1 the gradient at 0 is "
                "infinite); expected norm_type ≥ 1 or inf"
            )
        layer = cls(norm_type, kernel_size, stride or None, ceil_mode)
        return Op(layer, (computed(input, what),))

    return rule


def adaptive_rule(cls: type[Layer], what: str) -> Callable[..., Op]:
    def rule(input: Any, output_size: Any, return_indices: bool = False) -> Op:
        no_indices(what, return_indices)
        return Op(cls(output_size), (computed(input, what),))

    return rule


def _samples(
    fn: Callable[..., Any], n: int, module: nn.Module, *, ints: bool = False, positive: bool = False
) -> Callable[[], list[Sample]]:
    """A module and a function call on random x; for max pools also integer-valued x (ties
    everywhere: δ must go where torch sends it, with no replay)."""

    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(n)
        side = (7, 7, 5)[n - 1]
        x = torch.randn(2, 3, *(side,) * n, generator=g, dtype=torch.float64)
        if positive:
            x = x.abs()
        cases = [Sample("module", (x,), module=module), Sample("function", (x,), fn=fn)]
        if ints:
            x_int = torch.randint(-1, 2, x.shape, generator=g).to(torch.float64)
            cases.append(Sample("module, integer input (exact ties)", (x_int,), module=module))
        return cases

    return samples


_MAX = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVG1 = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
_AVG2 = (*_AVG1, "divisor_override")
_ADAPTIVE = ("output_size",)
_LP = ("norm_type", "kernel_size", "stride", "ceil_mode")


def _lp_refusals(
    n: int, fn: Callable[..., Any], module: type[nn.Module]
) -> Callable[[], list[Refusal]]:
    def refusals() -> list[Refusal]:
        x = torch.ones(1, 2, *(4,) * n, dtype=torch.float64)
        return [
            Refusal(  # found in the forward (the values decide), so a scalar output
                "fractional norm_type on a negative input (NaN in torch)",
                (-x,),
                ValueError,
                "x\\^1.5 is NaN in torch",
                fn=lambda x: fn(x, 1.5, 2).sum(),
            ),
            Refusal(
                "norm_type below 1",
                (x,),
                UnsupportedModuleError,
                "norm_type 0.5 is not supported",
                module=module(0.5, 2),
            ),
        ]

    return refusals


ROWS = (
    [
        OpEntry(
            f"max_pool{n}d",
            "pooling",
            max_pool_rule(cls),
            functions=(fn,),
            modules=(module,),
            module_args=_MAX,
            note="padding, dilation, ceil_mode; ties go where torch sends them (the first "
            "maximum), and entries within rounding of a tie are replayed with torch's values",
            samples=_samples(lambda x, fn=fn: fn(x, 3, 2, 1), n, module(3, 2, 1), ints=True),
        )
        for n, cls, fn, module in (
            (1, MaxPool1d, F.max_pool1d, nn.MaxPool1d),
            (2, MaxPool2d, F.max_pool2d, nn.MaxPool2d),
            (3, MaxPool3d, F.max_pool3d, nn.MaxPool3d),
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
    ]
    + [
        OpEntry(
            f"avg_pool{n}d",
            "pooling",
            avg_pool_rule(cls),
            functions=(fn,),
            modules=(module,),
            module_args=_AVG2,
            note="ceil_mode, count_include_pad, divisor_override",
            linear=True,
            samples=_samples(lambda x, fn=fn: fn(x, 3, 2, 1), n, module(3, 2)),
        )
        for n, cls, fn, module in (
            (2, AvgPool2d, F.avg_pool2d, nn.AvgPool2d),
            (3, AvgPool3d, F.avg_pool3d, nn.AvgPool3d),
        )
    ]
    + [
        OpEntry(
            f"lp_pool{n}d",
            "pooling",
            lp_pool_rule(cls),
            functions=(fn,),
            modules=(module,),
            module_args=_LP,
            note="norm_type ≥ 1 or inf, ceil_mode; 0 gradient where a window's power sum is "
            "0, as torch; inputs torch turns into NaN are refused",
            samples=_samples(lambda x, fn=fn: fn(x, 2, 2), n, module(3.0, 2, 1), positive=True),
            refusals=_lp_refusals(n, fn, module),
        )
        for n, cls, fn, module in (
            (1, LPPool1d, F.lp_pool1d, nn.LPPool1d),
            (2, LPPool2d, F.lp_pool2d, nn.LPPool2d),
            (3, LPPool3d, F.lp_pool3d, nn.LPPool3d),
        )
    ]
    + [
        OpEntry(
            f"adaptive_{kind}_pool{n}d",
            "pooling",
            adaptive_rule(cls, f"adaptive_{kind}_pool{n}d"),
            functions=(fn,),
            modules=(module,),
            module_args=_ADAPTIVE if kind == "avg" else (*_ADAPTIVE, "return_indices"),
            note="output sizes with None" + ("; ties as max pooling" if kind == "max" else ""),
            linear=kind == "avg",
            samples=_samples(lambda x, fn=fn: fn(x, 3), n, module(4), ints=kind == "max"),
        )
        for kind, n, cls, fn, module in (
            ("avg", 1, AdaptiveAvgPool1d, F.adaptive_avg_pool1d, nn.AdaptiveAvgPool1d),
            ("avg", 2, AdaptiveAvgPool2d, F.adaptive_avg_pool2d, nn.AdaptiveAvgPool2d),
            ("max", 1, AdaptiveMaxPool1d, F.adaptive_max_pool1d, nn.AdaptiveMaxPool1d),
            ("max", 2, AdaptiveMaxPool2d, F.adaptive_max_pool2d, nn.AdaptiveMaxPool2d),
            ("avg", 3, AdaptiveAvgPool3d, F.adaptive_avg_pool3d, nn.AdaptiveAvgPool3d),
            ("max", 3, AdaptiveMaxPool3d, F.adaptive_max_pool3d, nn.AdaptiveMaxPool3d),
        )
    ]
)
