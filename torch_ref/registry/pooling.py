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
    MaxPoolWithIndices,
    MaxUnpool,
)
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Refusal, Sample, computed, tensor


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
        # NOTE: torch's stride=[] means stride = kernel_size, as None does
        layer = cls(kernel_size, stride or None, padding, dilation, ceil_mode)
        if return_indices:  # (values, indices): the indices feed max_unpool
            return Op(MaxPoolWithIndices(layer), (computed(input, what),), outputs=tuple)
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


def max_unpool_rule(n: int) -> Callable[..., Op]:
    """F.max_unpool{n}d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    the values written at the max pool's indices, zeros elsewhere."""
    what = f"max_unpool{n}d"

    def rule(
        input: Any,
        indices: Any,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        output_size: Any = None,
    ) -> Op:
        x, idx = tensor(input, what), tensor(indices, f"{what} (indices)")
        if output_size is not None:
            spatial = tuple(int(v) for v in output_size)[-n:]
        else:
            k = _ntuple(kernel_size, n)
            s = _ntuple(stride if stride else kernel_size, n)
            p = _ntuple(padding, n)
            spatial = tuple((x.shape[-n + a] - 1) * s[a] - 2 * p[a] + k[a] for a in range(n))
        return Op(MaxUnpool(spatial), (x, idx))

    return rule


def with_indices_rule(cls: type[MaxPool1d | MaxPool2d | MaxPool3d]) -> Callable[..., Op]:
    """F.max_pool{n}d_with_indices: (values, indices) whatever return_indices says."""
    rule = max_pool_rule(cls)

    def with_indices(input: Any, *args: Any, return_indices: bool = True, **kwargs: Any) -> Op:
        return rule(input, *args[:5], return_indices=True, **kwargs)

    return with_indices


def _ntuple(v: Any, n: int) -> tuple[int, ...]:
    return tuple(int(t) for t in v) if isinstance(v, (tuple, list)) else (int(v),) * n


def _unpool_samples(n: int, with_indices: bool = False) -> Callable[[], list[Sample]]:
    pool, unpool = {
        1: (nn.MaxPool1d, nn.MaxUnpool1d),
        2: (nn.MaxPool2d, nn.MaxUnpool2d),
        3: (nn.MaxPool3d, nn.MaxUnpool3d),
    }[n]
    fn = {1: F.max_unpool1d, 2: F.max_unpool2d, 3: F.max_unpool3d}[n]

    class PoolUnpool(nn.Module):
        def __init__(self, stride: int) -> None:
            super().__init__()
            self.pool = pool(2, stride, return_indices=True)
            self.unpool = unpool(2, stride)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y, i = self.pool(x)
            return self.unpool(y * 2, i, output_size=x.shape)

    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(n)
        x = torch.randn(2, 3, *(5,) * n, generator=g, dtype=torch.float64)
        pool_fn = F.__dict__[f"max_pool{n}d_with_indices"]
        if with_indices:  # the function itself, its indices used as a mask
            mask = Sample(
                "values and indices",
                (x,),
                fn=lambda x: (lambda v, i: v * (i % 2))(*pool_fn(x, 2, 1)),
            )
            return [mask]
        return [
            Sample(
                "modules: pool with indices, unpool to the input's size", (x,), module=PoolUnpool(2)
            ),
            Sample(
                "functions, overlapping windows (an index twice)",
                (x,),
                fn=lambda x: fn(*pool_fn(x, 2, 1), 2, 1),
            ),
        ]

    return samples


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
            note="padding, dilation, ceil_mode, return_indices; ties go where torch sends them "
            "(the first maximum), and entries within rounding of a tie are replayed with torch's "
            "values",
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
            f"max_pool{n}d_with_indices",
            "pooling",
            with_indices_rule(cls),
            functions=(fn,),
            note="(values, indices), the indices for max_unpool",
            samples=_unpool_samples(n, with_indices=True),
        )
        for n, cls, fn in (
            (1, MaxPool1d, F.max_pool1d_with_indices),
            (2, MaxPool2d, F.max_pool2d_with_indices),
            (3, MaxPool3d, F.max_pool3d_with_indices),
        )
    ]
    + [
        OpEntry(
            f"max_unpool{n}d",
            "pooling",
            max_unpool_rule(n),
            functions=(fn,),
            modules=(module,),
            module_args=("kernel_size", "stride", "padding"),
            note="the indices of max_pool(return_indices=True); output_size",
            samples=_unpool_samples(n),
        )
        for n, fn, module in (
            (1, F.max_unpool1d, nn.MaxUnpool1d),
            (2, F.max_unpool2d, nn.MaxUnpool2d),
            (3, F.max_unpool3d, nn.MaxUnpool3d),
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
            samples=_samples(lambda x, fn=fn: fn(x, 3, 2, (1,)), n, module(3, 2)),  # ((1,): all)
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
