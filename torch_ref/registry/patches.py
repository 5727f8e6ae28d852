"""Sliding patches (manual_bp.ops.patches): F.unfold / nn.Unfold (im2col) and F.fold /
nn.Fold (col2im), 2-d, each the other's backward; and F.local_response_norm /
nn.LocalResponseNorm (manual_bp.ops.normalization)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.ops.normalization import LocalResponseNorm
from manual_bp.ops.patches import Fold, Unfold
from torch_ref.registry.core import Op, OpEntry, Sample, number, tensor


def unfold(
    input: Any, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1
) -> Op:
    return Op(Unfold(kernel_size, dilation, padding, stride), (tensor(input, "unfold"),))


def fold(
    input: Any,
    output_size: Any,
    kernel_size: Any,
    dilation: Any = 1,
    padding: Any = 0,
    stride: Any = 1,
) -> Op:
    return Op(Fold(output_size, kernel_size, dilation, padding, stride), (tensor(input, "fold"),))


def local_response_norm(
    input: Any, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> Op:
    layer = LocalResponseNorm(size, number(alpha, "alpha"), number(beta, "beta"), number(k, "k"))
    return Op(layer, (tensor(input, "local_response_norm"),))


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _unfold_samples() -> list[Sample]:
    x = _randn(0, 2, 3, 6, 7)
    return [
        Sample("module", (x,), module=nn.Unfold(3)),
        Sample(
            "dilation, padding, stride",
            (x,),
            module=nn.Unfold((2, 3), dilation=(2, 1), padding=1, stride=(2, 3)),
        ),
        Sample("unbatched function", (x[0],), fn=lambda x: F.unfold(x, 2, stride=2)),
    ]


def _fold_samples() -> list[Sample]:
    return [
        Sample(
            "module, overlapping patches", (_randn(1, 2, 3 * 4, 20),), module=nn.Fold((5, 6), 2)
        ),
        Sample(
            "dilation, padding, stride",
            (_randn(2, 2, 2 * 6, 9),),
            module=nn.Fold((6, 7), (2, 3), dilation=(2, 1), padding=1, stride=(2, 3)),
        ),
        Sample(
            "unbatched, unfold then fold",
            (_randn(3, 3, 5, 5),),
            fn=lambda x: F.fold(F.unfold(x, 3, padding=1), (5, 5), 3, padding=1),
        ),
    ]


def _lrn_samples() -> list[Sample]:
    x = _randn(4, 2, 5, 3, 4)
    return [
        Sample("module, 4-d", (x,), module=nn.LocalResponseNorm(3)),
        Sample(
            "even size, options, 3-d", (x[:, :, 0],), module=nn.LocalResponseNorm(4, 0.1, 0.6, 2.0)
        ),
        Sample(
            "function, 5-d, size larger than C",
            (x[..., None],),
            fn=lambda x: F.local_response_norm(x, 7, alpha=0.2),
        ),
    ]


ROWS = [
    OpEntry(
        "unfold",
        "convolution",
        unfold,
        functions=(F.unfold,),
        modules=(nn.Unfold,),
        module_args=("kernel_size", "dilation", "padding", "stride"),
        note="im2col, 2-d: dilation, padding, stride; unbatched too",
        linear=True,
        samples=_unfold_samples,
    ),
    OpEntry(
        "fold",
        "convolution",
        fold,
        functions=(F.fold,),
        modules=(nn.Fold,),
        module_args=("output_size", "kernel_size", "dilation", "padding", "stride"),
        note="col2im, 2-d: overlaps added",
        linear=True,
        samples=_fold_samples,
    ),
    OpEntry(
        "local_response_norm",
        "normalization",
        local_response_norm,
        functions=(F.local_response_norm,),
        modules=(nn.LocalResponseNorm,),
        module_args=("size", "alpha", "beta", "k"),
        note="3-d and more; any size",
        samples=_lrn_samples,
    ),
]
