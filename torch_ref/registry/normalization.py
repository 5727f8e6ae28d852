"""Normalisation (manual_bp.ops.normalization): z = γ (x − μ)/√(v + eps) + β, with the
backward through μ and v wherever they are statistics of the batch itself."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.ops.normalization import BatchNorm, BatchNorm1d, BatchNorm2d, LayerNorm
from torch_ref.registry.core import Op, OpEntry, Sample, array, computed, fused, param_arg


def batch_norm(
    input: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    ndims: tuple[int, ...] | None = None,
) -> Op:
    """F.batch_norm: batch statistics when training (or without running ones), else the
    running ones, read and never updated. A module passes the input ranks it accepts."""
    params = {
        name: param_arg(t, "batch_norm", name, optional=True)
        for name, t in (
            ("weight", weight),
            ("bias", bias),
            ("running_mean", running_mean),
            ("running_var", running_var),
        )
    }
    cls = {BatchNorm1d.NDIMS: BatchNorm1d, BatchNorm2d.NDIMS: BatchNorm2d}.get(ndims, BatchNorm)
    layer = cls(
        weight=array(params["weight"]),
        bias=array(params["bias"]),
        running_mean=array(params["running_mean"]),
        running_var=array(params["running_var"]),
        eps=eps,
        training=training,
        ndims=ndims,
    )
    return Op(
        layer, (computed(input, "batch_norm"),), fused(weight=params["weight"], bias=params["bias"])
    )


def _batch_norm_args(m: nn.modules.batchnorm._BatchNorm) -> dict[str, Any]:
    """What nn.BatchNorm*d.forward passes to F.batch_norm: running statistics unless it is
    training with track_running_stats (then the batch's are used), as torch's bn_training."""
    use_running = not m.training or m.running_mean is None
    return {
        "running_mean": m.running_mean if use_running or not m.track_running_stats else None,
        "running_var": m.running_var if use_running or not m.track_running_stats else None,
        "weight": m.weight,
        "bias": m.bias,
        "training": m.training or (m.running_mean is None and m.running_var is None),
        "eps": m.eps,
        "ndims": {nn.BatchNorm1d: BatchNorm1d, nn.BatchNorm2d: BatchNorm2d}[type(m)].NDIMS,
    }


def layer_norm(
    input: Any, normalized_shape: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5
) -> Op:
    w = param_arg(weight, "layer_norm", "weight", optional=True)
    b = param_arg(bias, "layer_norm", "bias", optional=True)
    layer = LayerNorm(tuple(normalized_shape), array(w), array(b), eps=eps)
    return Op(layer, (computed(input, "layer_norm"),), fused(weight=w, bias=b))


def _bn_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    x2 = torch.randn(6, 3, generator=g, dtype=torch.float64)
    x4 = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    bn = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1, generator=g)
        bn.running_var.uniform_(0.5, 2, generator=g)
        bn.weight.uniform_(0.5, 2, generator=g)
    return [
        Sample("BatchNorm1d", (x2,), module=nn.BatchNorm1d(3).double(), train=True),
        Sample("BatchNorm2d with running stats", (x4,), module=bn, train=True),
        Sample(
            "BatchNorm2d without running stats",
            (x4,),
            module=nn.BatchNorm2d(3, affine=False, track_running_stats=False).double(),
        ),
    ]


def _ln_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 6, generator=g, dtype=torch.float64)
    w = 1 + torch.rand(6, generator=g, dtype=torch.float64)
    return [
        Sample("module", (x,), module=nn.LayerNorm(6).double()),
        Sample("module, 2 dims, no bias", (x,), module=nn.LayerNorm((4, 6), bias=False).double()),
        Sample("function", (x,), fn=lambda x, w: F.layer_norm(x, (6,), w), params={"w": w}),
    ]


ROWS = [
    OpEntry(
        "batch_norm",
        "normalization",
        batch_norm,
        functions=(F.batch_norm,),
        modules=(nn.BatchNorm1d, nn.BatchNorm2d),
        module_args=_batch_norm_args,
        note="eval (running statistics) and training (batch statistics, the full backward "
        "through mean and variance; your running statistics are never updated), affine "
        "on/off, track_running_stats=False",
        samples=_bn_samples,
    ),
    OpEntry(
        "layer_norm",
        "normalization",
        layer_norm,
        functions=(F.layer_norm,),
        modules=(nn.LayerNorm,),
        module_args=("normalized_shape", "weight", "bias", "eps"),
        note="affine on/off, bias=False",
        samples=_ln_samples,
    ),
]
