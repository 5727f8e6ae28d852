"""Convolutions (manual_bp.ops.conv): z = b + Σ W ⋆ x; δ_prev is the full convolution of δ
with the rotated kernel. The transposed convolution is the same pair read the other way: its
forward is the convolution's backward-data, its backward-data the convolution's forward."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.ops.conv import (
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
    output_padding_for,
)
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Refusal, Sample, tensor, weighted


def conv_rule(cls: type[Conv1d | Conv2d | Conv3d]) -> Callable[..., Op]:
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
        def make(w: np.ndarray, b: np.ndarray | None) -> Conv1d | Conv2d | Conv3d:
            return cls(w, b, stride, padding, dilation, groups, padding_mode=padding_mode)

        return weighted(make, what, (tensor(input, what),), weight, bias)

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


_CONV = {1: (F.conv1d, nn.Conv1d), 2: (F.conv2d, nn.Conv2d), 3: (F.conv3d, nn.Conv3d)}


def _standardised(w: torch.Tensor) -> torch.Tensor:
    """timm's StdConv2d: the weight standardised per output channel in forward()."""
    dims = tuple(range(1, w.ndim))
    return (w - w.mean(dims, keepdim=True)) / (
        w.var(dims, keepdim=True, unbiased=False) + 1e-5
    ).sqrt()


def _samples(n: int) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(n)
        fn, conv = _CONV[n]
        side = (7, 6, 5)[n - 1]  # 3-d stays small
        x = torch.randn(2, 4, *(side,) * n, generator=g, dtype=torch.float64)
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
            Sample(
                "a standardised weight computed in forward (timm's StdConv), a computed bias",
                (x,),
                fn=lambda x, w, b: fn(x, _standardised(w), b.exp(), 1, 1, 1, 2),
                params={"w": w, "b": torch.randn(6, generator=g, dtype=torch.float64)},
            ),
        ]

    return samples


# --- the transposed convolution -------------------------------------------------------------


def conv_transpose_rule(
    cls: type[ConvTranspose1d | ConvTranspose2d | ConvTranspose3d],
) -> Callable[..., Op]:
    """F.conv_transpose{n}d(x, weight, bias, stride, padding, output_padding, groups,
    dilation); a module call's output_size (m(x, output_size=...)) picks output_padding as
    torch's ConvTranspose does."""
    n = cls.n_spatial
    what = f"conv_transpose{n}d"

    def rule(
        input: Any,
        weight: Any,
        bias: Any = None,
        stride: Any = 1,
        padding: Any = 0,
        output_padding: Any = 0,
        groups: int = 1,
        dilation: Any = 1,
        *,
        output_size: Any = None,
    ) -> Op:
        x = tensor(input, what)
        w_shape = tensor(weight, what).shape
        if output_size is not None:
            if any(not isinstance(s, int) for s in output_size):
                raise UnsupportedModuleError(
                    f"{what}: expected output_size as ints, got {output_size!r}"
                )
            sizes = list(output_size)
            if len(sizes) in (n + 1, n + 2) and len(sizes) == x.ndim:
                sizes = sizes[-n:]  # torch accepts the full output shape too
            shape = cls(np.zeros(w_shape), None, stride, padding, 0, groups, dilation)  # options
            output_padding = output_padding_for(
                x.shape[-n:], sizes, shape.kernel, shape.stride, shape.padding, shape.dilation
            )

        def make(w: np.ndarray, b: np.ndarray | None) -> Any:
            return cls(w, b, stride, padding, output_padding, groups, dilation)

        return weighted(make, what, (x,), weight, bias)

    return rule


def _conv_transpose_args(m: nn.Module) -> dict[str, Any]:
    return {
        "weight": m.weight,
        "bias": m.bias,
        "stride": m.stride,
        "padding": m.padding,
        "output_padding": m.output_padding,
        "groups": m.groups,
        "dilation": m.dilation,
    }


_CONV_T = {
    1: (F.conv_transpose1d, nn.ConvTranspose1d),
    2: (F.conv_transpose2d, nn.ConvTranspose2d),
    3: (F.conv_transpose3d, nn.ConvTranspose3d),
}


class _UpTo(nn.Module):
    """A transposed convolution called with output_size, as U-Nets write it."""

    def __init__(self, up: nn.Module, size: tuple[int, ...]) -> None:
        super().__init__()
        self.up, self.size = up, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x, output_size=self.size)


def _transposed_samples(n: int) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(10 + n)
        fn, module = _CONV_T[n]
        side = (5, 4, 3)[n - 1]
        x = torch.randn(2, 4, *(side,) * n, generator=g, dtype=torch.float64)
        w = torch.randn(4, 3, *(2,) * n, generator=g, dtype=torch.float64)
        up = module(4, 2, 3, stride=2, padding=1).double()
        return [
            Sample("module", (x,), module=module(4, 3, 2, stride=2).double()),
            Sample(
                "module, stride 2, padding 1, output_padding 1, dilation 2",
                (x,),
                module=module(4, 2, 3, stride=2, padding=1, output_padding=1, dilation=2).double(),
            ),
            Sample(
                "function, groups 2, bias off, output_padding",
                (x,),
                fn=lambda x, w: fn(x, w, None, 3, 1, 2, 2),
                params={"w": w},
            ),
            Sample(
                "a weight computed in forward",
                (x,),
                fn=lambda x, w: fn(x, w * w.sigmoid(), None, 2),
                params={"w": w},
            ),
            Sample("module call with output_size", (x,), module=_UpTo(up, (2 * side,) * n)),
        ]

    return samples


def _transposed_refusals(n: int) -> Callable[[], list[Refusal]]:
    def refusals() -> list[Refusal]:
        _, module = _CONV_T[n]
        x = torch.zeros(1, 2, *(4,) * n, dtype=torch.float64)
        up = module(2, 2, 3, stride=2, padding=1).double()
        return [
            Refusal(
                "output_size out of range",
                (x,),
                ValueError,
                "valid sizes range from 7 to 8",
                module=_UpTo(up, (10,) * n),
            ),
            Refusal(
                "output too small",
                (x,),
                ValueError,
                "expected both ≥ 1",
                module=module(2, 2, 2, padding=3).double(),
            ),
        ]

    return refusals


ROWS = [
    OpEntry(
        f"conv{n}d",
        "convolution",
        conv_rule(cls),
        functions=(_CONV[n][0],),
        modules=(_CONV[n][1],),
        module_args=_conv_args,
        note="stride, padding (int, tuple, 'same', 'valid'), dilation, groups, bias, "
        "padding_mode zeros/reflect/replicate/circular",
        linear=True,
        samples=_samples(n),
    )
    for n, cls in ((1, Conv1d), (2, Conv2d), (3, Conv3d))
] + [
    OpEntry(
        f"conv_transpose{n}d",
        "convolution",
        conv_transpose_rule(cls),
        functions=(_CONV_T[n][0],),
        modules=(_CONV_T[n][1],),
        module_args=_conv_transpose_args,
        note="stride, padding, output_padding (or the call's output_size), groups, dilation, "
        "bias; the convolution's backward-data as a forward",
        linear=True,
        samples=_transposed_samples(n),
        refusals=_transposed_refusals(n),
    )
    for n, cls in ((1, ConvTranspose1d), (2, ConvTranspose2d), (3, ConvTranspose3d))
]
