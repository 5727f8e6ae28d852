"""Normalisation (manual_bp.ops.normalization): z = γ (x − μ)/√(v + eps) + β, with the
backward through μ and v wherever they are statistics of the batch itself."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.ops.arithmetic import DivTensor, Mul
from manual_bp.ops.normalization import (
    BatchNorm,
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    GroupNorm,
    InstanceNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
    LayerNorm,
    RMSNorm,
)
from manual_bp.ops.reductions import Norm
from torch_ref.registry.core import (
    Op,
    OpEntry,
    Refusal,
    Sample,
    array,
    computed,
    fused,
    number,
    param_arg,
    tensor,
)

_BN = {nn.BatchNorm1d: BatchNorm1d, nn.BatchNorm2d: BatchNorm2d, nn.BatchNorm3d: BatchNorm3d}


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
    running ones, read and never updated. A module passes the input ranks it accepts; the
    function takes (N, C, *) of any rank."""
    params = {
        name: param_arg(t, "batch_norm", name, optional=True)
        for name, t in (
            ("weight", weight),
            ("bias", bias),
            ("running_mean", running_mean),
            ("running_var", running_var),
        )
    }
    x = computed(input, "batch_norm")
    cls = {c.NDIMS: c for c in _BN.values()}.get(ndims, BatchNorm)
    if ndims is None and x.ndim >= 2:
        ndims = (x.ndim,)  # F.batch_norm: any rank
    layer = cls(
        weight=array(params["weight"]),
        bias=array(params["bias"]),
        running_mean=array(params["running_mean"]),
        running_var=array(params["running_var"]),
        eps=eps,
        training=training,
        ndims=ndims,
    )
    return Op(layer, (x,), fused(weight=params["weight"], bias=params["bias"]))


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
        "ndims": _BN[type(m)].NDIMS,
    }


_IN = {nn.InstanceNorm1d: InstanceNorm1d, nn.InstanceNorm2d: InstanceNorm2d,
       nn.InstanceNorm3d: InstanceNorm3d}  # fmt: skip


def instance_norm(
    input: Any,
    running_mean: Any = None,
    running_var: Any = None,
    weight: Any = None,
    bias: Any = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    layer: type[InstanceNorm] = InstanceNorm,
) -> Op:
    """F.instance_norm: each sample's and channel's own statistics over the spatial axes when
    use_input_stats, else the running ones (read, never updated). A module passes its preset,
    which takes unbatched input too."""
    params = {
        name: param_arg(t, "instance_norm", name, optional=True)
        for name, t in (
            ("weight", weight),
            ("bias", bias),
            ("running_mean", running_mean),
            ("running_var", running_var),
        )
    }
    norm = layer(
        weight=array(params["weight"]),
        bias=array(params["bias"]),
        running_mean=array(params["running_mean"]),
        running_var=array(params["running_var"]),
        eps=eps,
        use_input_stats=use_input_stats,
    )
    return Op(
        norm,
        (computed(input, "instance_norm"),),
        fused(weight=params["weight"], bias=params["bias"]),
    )


def _instance_norm_args(m: nn.modules.instancenorm._InstanceNorm) -> dict[str, Any]:
    """What nn.InstanceNorm*d.forward passes to F.instance_norm."""
    return {
        "running_mean": m.running_mean,
        "running_var": m.running_var,
        "weight": m.weight,
        "bias": m.bias,
        "use_input_stats": m.training or not m.track_running_stats,
        "eps": m.eps,
        "layer": _IN[type(m)],
    }


def group_norm(
    input: Any, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5
) -> Op:
    """F.group_norm: statistics over each sample's group of C/G channels and its spatial axes."""
    w = param_arg(weight, "group_norm", "weight", optional=True)
    b = param_arg(bias, "group_norm", "bias", optional=True)
    layer = GroupNorm(num_groups, array(w), array(b), eps=eps)
    return Op(layer, (computed(input, "group_norm"),), fused(weight=w, bias=b))


def layer_norm(
    input: Any, normalized_shape: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5
) -> Op:
    w = param_arg(weight, "layer_norm", "weight", optional=True)
    b = param_arg(bias, "layer_norm", "bias", optional=True)
    layer = LayerNorm(tuple(normalized_shape), array(w), array(b), eps=eps)
    return Op(layer, (computed(input, "layer_norm"),), fused(weight=w, bias=b))


def rms_norm(input: Any, normalized_shape: Any, weight: Any = None, eps: float | None = None) -> Op:
    """F.rms_norm / nn.RMSNorm: γ ⊙ x / √(mean(x²) + eps); eps None is finfo(float64).eps."""
    w = param_arg(weight, "rms_norm", "weight", optional=True)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    eps = None if eps is None else number(eps, "rms_norm (eps)")
    layer = RMSNorm(shape, array(w), eps=eps)
    return Op(layer, (tensor(input, "rms_norm"),), fused(weight=w))


def _all_but(dim: int, ndim: int, what: str) -> tuple[int, ...] | None:
    """The dims a norm over all but `dim` takes (-1: every dim, as torch's weight norm)."""
    if dim == -1:
        return None
    if not 0 <= dim < ndim:
        raise ValueError(f"{what}: expected dim in [0, {ndim - 1}] or -1 (all), got {dim}")
    return tuple(k for k in range(ndim) if k != dim)


def norm_except_dim(v: Any, pow: float = 2, dim: int = 0) -> Op:
    """torch.norm_except_dim(v, pow, dim): the p-norm over every dim but dim, kept as size 1
    (dim −1: of the whole tensor, 0-d)."""
    x = tensor(v, "norm_except_dim")
    dims = _all_but(dim, x.ndim, "norm_except_dim")
    return Op(Norm(number(pow, "norm_except_dim (pow)"), dims, keepdim=dims is not None), (x,))


def weight_norm(v: Any, g: Any, dim: int = 0) -> Op:
    """torch._weight_norm(v, g, dim) = v · (g / ‖v‖), the norm over every dim but dim (as the
    weight_norm parametrization calls it): composed of Norm, DivTensor and Mul, each with its
    backward."""
    v, g = tensor(v, "_weight_norm (v)"), tensor(g, "_weight_norm (g)")
    return Op(Mul(), (v, Op(DivTensor(), (g, norm_except_dim(v, 2, dim)))))


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
        Sample(
            "BatchNorm3d",
            (torch.randn(2, 3, 2, 3, 2, generator=g, dtype=torch.float64),),
            module=nn.BatchNorm3d(3).double(),
            train=True,
        ),
        Sample(
            "function, rank 6, training",
            (torch.randn(2, 3, 2, 1, 2, 2, generator=g, dtype=torch.float64),),
            fn=lambda x: F.batch_norm(x, None, None, training=True),
        ),
        Sample(  # (computed weights: through torch's lowering, NotCovered)
            "function, a weight computed in forward, training",
            (x4,),
            fn=lambda x, w: F.batch_norm(x, None, None, w.exp(), w.tanh(), training=True),
            params={"w": torch.randn(3, generator=g, dtype=torch.float64)},
        ),
        Sample(
            "function, a weight computed in forward, running statistics",
            (x4,),
            fn=lambda x, w, m: F.batch_norm(x, m.detach(), m.detach().exp(), w * m, None),
            params={
                "w": torch.randn(3, generator=g, dtype=torch.float64),
                "m": torch.randn(3, generator=g, dtype=torch.float64),
            },
        ),  # fmt: skip
    ]


def _bn_refusals() -> list[Refusal]:
    x = torch.ones(4, 3, dtype=torch.float64)
    bn = nn.BatchNorm1d(3).double().eval()
    with torch.no_grad():
        bn.running_var[1] = -1.0
    return [Refusal("negative running_var in eval mode", (x,), ValueError, "running_var must "
                    "be ≥ 0 .* running_var\\[1\\]", module=bn)]  # fmt: skip


class _InstanceNormWithStats(nn.Module):
    """F.instance_norm with running statistics held as buffers, in eval mode."""

    def __init__(self, running_mean: torch.Tensor, running_var: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("running_mean", running_mean)
        self.register_buffer("running_var", running_var)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, self.running_mean, self.running_var, use_input_stats=False)


def _in_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(1)
    x3 = 1 + torch.randn(2, 3, 6, generator=g, dtype=torch.float64)
    x4 = 1 + torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    x5 = 1 + torch.randn(2, 3, 2, 3, 4, generator=g, dtype=torch.float64)
    tracked = nn.InstanceNorm2d(3, affine=True, track_running_stats=True).double()
    with torch.no_grad():
        tracked.running_mean.uniform_(-1, 1, generator=g)
        tracked.running_var.uniform_(0.5, 2, generator=g)
        tracked.weight.uniform_(0.5, 2, generator=g)
    rm = torch.randn(3, generator=g, dtype=torch.float64)
    rv = 0.5 + torch.rand(3, generator=g, dtype=torch.float64)
    return [
        Sample("InstanceNorm1d", (x3,), module=nn.InstanceNorm1d(3).double()),
        Sample("InstanceNorm1d unbatched", (x3[0],), module=nn.InstanceNorm1d(3).double()),
        Sample("InstanceNorm2d affine, running stats", (x4,), module=tracked, train=True),
        Sample("InstanceNorm3d affine", (x5,), module=nn.InstanceNorm3d(3, affine=True).double()),
        Sample("function with running statistics", (x4,), module=_InstanceNormWithStats(rm, rv)),
        Sample("function, a weight computed in forward", (x4,),  # (torch's lowering)
               fn=lambda x, w: F.instance_norm(x, weight=2 * w, bias=w.sin()), params={"w": rm}),
    ]  # fmt: skip


def _in_refusals() -> list[Refusal]:
    x = torch.ones(2, 3, 1, dtype=torch.float64)
    return [
        Refusal(
            "one spatial element",
            (x,),
            ValueError,
            "more than 1 spatial element",
            module=nn.InstanceNorm1d(3).double(),
        )
    ]


def _gn_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(2)
    x = 1 + torch.randn(2, 6, 4, 5, generator=g, dtype=torch.float64)
    gn = nn.GroupNorm(3, 6).double()
    with torch.no_grad():
        gn.weight.uniform_(0.5, 2, generator=g)
        gn.bias.uniform_(-1, 1, generator=g)
    w = 1 + torch.rand(6, generator=g, dtype=torch.float64)
    return [
        Sample("module", (x,), module=gn),
        Sample("module, 1-d, no affine", (x[..., 0],), module=nn.GroupNorm(2, 6, affine=False)),
        Sample("module, one group per channel", (x,), module=nn.GroupNorm(6, 6).double()),
        Sample("function", (x,), fn=lambda x, w: F.group_norm(x, 2, w), params={"w": w}),
        Sample("function, a weight computed in forward", (x,),  # (torch's lowering)
               fn=lambda x, w: F.group_norm(x, 3, w.sqrt(), w.flip(0)), params={"w": w}),
    ]  # fmt: skip


def _gn_refusals() -> list[Refusal]:
    x = torch.ones(2, 6, 3, dtype=torch.float64)
    return [
        Refusal(
            "channels not divisible by num_groups",
            (x,),
            ValueError,
            "divisible by num_groups 4",
            fn=lambda x: F.group_norm(x, 4),
        )
    ]


def _ln_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 6, generator=g, dtype=torch.float64)
    w = 1 + torch.rand(6, generator=g, dtype=torch.float64)
    return [
        Sample("module", (x,), module=nn.LayerNorm(6).double()),
        Sample("module, 2 dims, no bias", (x,), module=nn.LayerNorm((4, 6), bias=False).double()),
        Sample("function", (x,), fn=lambda x, w: F.layer_norm(x, (6,), w), params={"w": w}),
        Sample("function, a weight computed in forward", (x,),  # (torch's lowering)
               fn=lambda x, w: F.layer_norm(x, (6,), w.log(), w.flip(0)), params={"w": w}),
    ]  # fmt: skip


def _rms_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 6, generator=g, dtype=torch.float64)
    w = 1 + torch.rand(6, generator=g, dtype=torch.float64)
    return [
        Sample("module", (x,), module=nn.RMSNorm(6).double()),
        Sample("module, 2 dims, eps, no affine", (x,),
               module=nn.RMSNorm((4, 6), eps=1e-3, elementwise_affine=False).double()),
        Sample("function", (x,), fn=lambda x, w: F.rms_norm(x, (6,), w, 1e-6), params={"w": w}),
        Sample("function, a list shape", (x,), fn=lambda x: F.rms_norm(x, [4, 6])),
        Sample("function, a weight computed in forward", (x,),  # (torch's lowering)
               fn=lambda x, w: F.rms_norm(x, (6,), w.log()), params={"w": w}),
    ]  # fmt: skip


def _weight_norm_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    x4 = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64)
    wn = torch.nn.utils.parametrizations.weight_norm
    return [
        Sample("weight_norm of a Linear", (x,), module=wn(nn.Linear(5, 3).double())),
        Sample("of a Conv2d, dim 1", (x4,), module=wn(nn.Conv2d(3, 2, 3).double(), dim=1)),
        Sample("dim None: the whole tensor", (x,), module=wn(nn.Linear(5, 3).double(), dim=None)),
        Sample("torch._weight_norm itself", (x,),
               fn=lambda x, v, g: x @ torch._weight_norm(v, g, 0).T,
               params={"v": torch.randn(3, 5, generator=g, dtype=torch.float64),
                       "g": torch.rand(3, 1, generator=g, dtype=torch.float64)}),
    ]  # fmt: skip


def _norm_except_dim_samples() -> list[Sample]:
    x = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return [
        Sample("dim 0, 1, 2", (x,), fn=lambda x: torch.norm_except_dim(x, 2, 0) * x
               + torch.norm_except_dim(x, 2, 1) + torch.norm_except_dim(x, 3, 2)),
        Sample("dim -1: the whole tensor", (x,), fn=lambda x: torch.norm_except_dim(x, 2, -1) * x),
    ]  # fmt: skip


ROWS = [
    OpEntry(
        "batch_norm",
        "normalization",
        batch_norm,
        functions=(F.batch_norm,),
        modules=tuple(_BN),
        module_args=_batch_norm_args,
        note="eval (running statistics) and training (batch statistics, the full backward "
        "through mean and variance; your running statistics are never updated), affine "
        "on/off, track_running_stats=False",
        samples=_bn_samples,
        refusals=_bn_refusals,
    ),
    OpEntry(
        "instance_norm",
        "normalization",
        instance_norm,
        functions=(F.instance_norm,),
        modules=tuple(_IN),
        module_args=_instance_norm_args,
        note="affine, track_running_stats (running statistics in eval mode, never updated), "
        "unbatched input",
        samples=_in_samples,
        refusals=_in_refusals,
    ),
    OpEntry(
        "group_norm",
        "normalization",
        group_norm,
        functions=(F.group_norm,),
        modules=(nn.GroupNorm,),
        module_args=("num_groups", "weight", "bias", "eps"),
        note="affine on/off, any rank (N, C, *)",
        samples=_gn_samples,
        refusals=_gn_refusals,
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
    OpEntry(
        "rms_norm",
        "normalization",
        rms_norm,
        functions=(F.rms_norm,),
        modules=(nn.RMSNorm,),
        module_args=("normalized_shape", "weight", "eps"),
        note="affine on/off; eps None is finfo(float64).eps",
        samples=_rms_samples,
    ),
    OpEntry(
        "_weight_norm",
        "normalization",
        weight_norm,
        functions=(torch._weight_norm,),
        note="v · (g / ‖v‖) over all dims but dim (the weight_norm parametrization; dim -1: all)",
        samples=_weight_norm_samples,
    ),
    OpEntry(
        "norm_except_dim",
        "normalization",
        norm_except_dim,
        functions=(torch.norm_except_dim,),
        note="any pow; dim -1: the whole tensor",
        samples=_norm_except_dim_samples,
    ),
]
