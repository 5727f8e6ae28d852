"""Resampling (manual_bp.ops.resample): F.interpolate's modes, one sparse interpolation
matrix per axis whose transpose is the backward; PixelShuffle and PixelUnshuffle, each the
other's backward."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.ops.resample import Interpolate, PixelShuffle, PixelUnshuffle
from manual_bp.ops.shape import Reshape, Transpose
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Refusal, Sample, computed, is_plain


def interpolate(
    input: Any,
    size: Any = None,
    scale_factor: Any = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> Op:
    """F.interpolate (nn.Upsample, nn.UpsamplingNearest2d and nn.UpsamplingBilinear2d call it
    with their attributes); sizes may be read off the input (x.shape[-2:])."""
    if antialias:
        raise UnsupportedModuleError(
            "interpolate: antialias=True is not supported; expected antialias=False"
        )
    if not is_plain(size, scale_factor):
        raise UnsupportedModuleError(
            "interpolate: expected size and scale_factor as Python numbers, got a tensor"
        )
    layer = Interpolate(size, scale_factor, mode, align_corners, recompute_scale_factor)
    return Op(layer, (computed(input, "interpolate"),))


def pixel_shuffle(input: Any, upscale_factor: int) -> Op:
    return Op(PixelShuffle(upscale_factor), (computed(input, "pixel_shuffle"),))


def pixel_unshuffle(input: Any, downscale_factor: int) -> Op:
    return Op(PixelUnshuffle(downscale_factor), (computed(input, "pixel_unshuffle"),))


_UPSAMPLE = ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor")


class _ToSizeOf(nn.Module):
    """Resize to a skip connection's size read off it, as U-Nets write it."""

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([up, skip], 1)


def _interp_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    x2 = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    x3 = torch.randn(1, 2, 3, 4, 3, generator=g, dtype=torch.float64)
    skip = torch.randn(2, 2, 7, 9, generator=g, dtype=torch.float64)
    return [
        Sample("Upsample, nearest, scale 2", (x2,), module=nn.Upsample(scale_factor=2)),
        Sample(
            "Upsample, bilinear, align_corners",
            (x2,),
            module=nn.Upsample(size=(7, 9), mode="bilinear", align_corners=True),
        ),
        Sample("UpsamplingNearest2d", (x2,), module=nn.UpsamplingNearest2d(size=(6, 7))),
        Sample("UpsamplingBilinear2d", (x2,), module=nn.UpsamplingBilinear2d(scale_factor=2)),
        Sample("bicubic", (x2,), fn=lambda x: F.interpolate(x, (9, 7), mode="bicubic")),
        Sample(
            "nearest-exact, down",
            (x2,),
            fn=lambda x: F.interpolate(x, scale_factor=0.6, mode="nearest-exact"),
        ),
        Sample("linear, 1-d", (x1,), fn=lambda x: F.interpolate(x, 8, mode="linear")),
        Sample(
            "trilinear, scale not recomputed",
            (x3,),
            fn=lambda x: F.interpolate(x, scale_factor=1.7, mode="trilinear"),
        ),
        Sample("area", (x2,), fn=lambda x: F.interpolate(x, (3, 2), mode="area")),
        Sample("size read off a skip connection", (x2, skip), module=_ToSizeOf()),
    ]


def _interp_refusals() -> list[Refusal]:
    x = torch.zeros(1, 2, 5, dtype=torch.float64)
    x2 = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    return [
        Refusal(
            "antialias",
            (x2,),
            UnsupportedModuleError,
            "antialias=True is not supported",
            fn=lambda x: F.interpolate(x, 3, mode="bilinear", antialias=True),
        ),
        Refusal(
            "nearest whose torch backward is not its forward's",
            (x,),
            ValueError,
            "its gradient is not its forward's",
            fn=lambda x: F.interpolate(x, scale_factor=1.1),
        ),
    ]


def channel_shuffle(input: Any, groups: int) -> Op:
    """F.channel_shuffle(x, g) (ShuffleNet): (N, C, *) → (N, g, C/g, *) → swap dims 1, 2 →
    (N, C, *); δ_prev the same steps undone (reshape and transpose rows' backwards)."""
    x = computed(input, "channel_shuffle")
    g = int(groups)
    if len(x.shape) < 3 or g <= 0 or x.shape[1] % g:
        raise ValueError(
            f"channel_shuffle: expected an input (N, C, *) with C divisible by groups > 0, got "
            f"shape {x.shape} and groups={groups}"
        )
    n, c, *rest = x.shape
    split = Op(Reshape((n, g, c // g, *rest)), (x,))
    return Op(Reshape(x.shape), (Op(Transpose(1, 2), (split,)),))


def _channel_shuffle_samples() -> list[Sample]:
    x = torch.randn((2, 6, 3, 2), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    return [
        Sample("module, 3 groups", (x,), module=nn.ChannelShuffle(3)),
        Sample("function, 2 groups", (x,), fn=lambda x: F.channel_shuffle(x, 2)),
        Sample("1-d", (x[..., 0],), fn=lambda x: F.channel_shuffle(x, 3)),
    ]


def _shuffle_samples(cls: type[nn.Module], shape: tuple[int, ...]) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(3)
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        fn = F.pixel_shuffle if cls is nn.PixelShuffle else F.pixel_unshuffle
        return [
            Sample("module", (x,), module=cls(2)),
            Sample("function", (x,), fn=lambda x: fn(x, 2)),
        ]

    return samples


ROWS = [
    OpEntry(
        "interpolate",
        "resample",
        interpolate,
        functions=(F.interpolate,),
        modules=(nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d),
        module_args=_UPSAMPLE,
        note="nearest, nearest-exact, linear, bilinear, bicubic, trilinear, area; size or "
        "scale_factor, align_corners, recompute_scale_factor (antialias refused; nearest calls "
        "where torch's backward disagrees with its forward refused)",
        linear=True,
        samples=_interp_samples,
        refusals=_interp_refusals,
    ),
    OpEntry(
        "pixel_shuffle",
        "resample",
        pixel_shuffle,
        functions=(F.pixel_shuffle,),
        modules=(nn.PixelShuffle,),
        module_args=("upscale_factor",),
        note="(*, C·r², H, W) → (*, C, H·r, W·r)",
        linear=True,
        samples=_shuffle_samples(nn.PixelShuffle, (2, 8, 3, 4)),
    ),
    OpEntry(
        "pixel_unshuffle",
        "resample",
        pixel_unshuffle,
        functions=(F.pixel_unshuffle,),
        modules=(nn.PixelUnshuffle,),
        module_args=("downscale_factor",),
        note="(*, C, H·r, W·r) → (*, C·r², H, W)",
        linear=True,
        samples=_shuffle_samples(nn.PixelUnshuffle, (2, 3, 4, 6)),
    ),
    OpEntry(
        "channel_shuffle",
        "resample",
        channel_shuffle,
        functions=(F.channel_shuffle,),
        modules=(nn.ChannelShuffle,),
        module_args=("groups",),
        note="(N, C, *) with the channels regrouped as ShuffleNet's; a reshape, a transpose and "
        "a reshape (torch.native_channel_shuffle has no derivative in torch)",
        linear=True,
        samples=_channel_shuffle_samples,
        refusals=lambda: [
            Refusal(
                "channels not divisible by groups",
                (torch.zeros(2, 5, 3, dtype=torch.float64),),
                ValueError,
                "C divisible by groups",
                fn=lambda x: F.channel_shuffle(x, 2),
            )
        ],
    ),
]
