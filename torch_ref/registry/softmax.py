"""Softmax, log-softmax, softmin and the gated linear unit along a dim (manual_bp.ops.softmax)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.ops.softmax import GLU, LogSoftmax, Softmax, Softmin
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Refusal, Sample, tensor


def along_dim_rule(cls: type[Softmax | LogSoftmax | Softmin]) -> Callable[..., Op]:
    """F.softmax(input, dim=None, _stacklevel=3, dtype=None); torch's implicit dim for None."""
    what = cls.__name__.lower()

    def rule(input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Op:
        if dtype is not None and dtype != torch.float64:
            raise UnsupportedModuleError(f"{what}: the dtype option is not supported")
        return Op(cls(dim), (tensor(input, what),))

    return rule


def _samples(fn: Callable[..., Any], module: nn.Module) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        x = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        return [
            Sample("module", (x,), module=module),
            Sample("function, last dim", (x,), fn=lambda x: fn(x, dim=-1)),
        ]

    return samples


def glu(input: Any, dim: int = -1) -> Op:
    """F.glu(input, dim=-1): a ⊙ σ(b), (a, b) the halves of input along dim."""
    return Op(GLU(dim), (tensor(input, "glu"),))


def _glu_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 6, generator=g, dtype=torch.float64)
    return [
        Sample("module, last dim", (x,), module=nn.GLU()),
        Sample("function, dim 1", (x,), fn=lambda x: F.glu(x, 1)),
    ]


def _glu_refusals() -> list[Refusal]:
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return [Refusal("an odd size", (x,), ValueError, "expected an even size", fn=F.glu)]


ROWS = [
    OpEntry(
        "softmax",
        "softmax",
        along_dim_rule(Softmax),
        functions=(F.softmax, torch.softmax, torch.special.softmax),
        methods=("softmax",),
        modules=(nn.Softmax,),
        module_args=("dim",),
        note="any dim, torch's implicit dim",
        samples=_samples(F.softmax, nn.Softmax(dim=1)),
    ),
    OpEntry(
        "log_softmax",
        "softmax",
        along_dim_rule(LogSoftmax),
        functions=(F.log_softmax, torch.log_softmax, torch.special.log_softmax),
        methods=("log_softmax",),
        modules=(nn.LogSoftmax,),
        module_args=("dim",),
        note="any dim, torch's implicit dim",
        samples=_samples(F.log_softmax, nn.LogSoftmax(dim=1)),
    ),
    OpEntry(
        "softmin",
        "softmax",
        along_dim_rule(Softmin),
        functions=(F.softmin,),
        modules=(nn.Softmin,),
        module_args=("dim",),
        note="softmax(−x), any dim, torch's implicit dim",
        samples=_samples(F.softmin, nn.Softmin(dim=1)),
    ),
    OpEntry(
        "glu",
        "softmax",
        glu,
        functions=(F.glu,),
        modules=(nn.GLU,),
        module_args=("dim",),
        note="a ⊙ σ(b) of the two halves along a dim",
        samples=_glu_samples,
        refusals=_glu_refusals,
    ),
]
