"""Softmax and log-softmax along a dim (manual_bp.ops.softmax)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.ops.softmax import LogSoftmax, Softmax
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Sample, tensor


def along_dim_rule(cls: type[Softmax | LogSoftmax]) -> Callable[..., Op]:
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


ROWS = [
    OpEntry(
        "softmax",
        "softmax",
        along_dim_rule(Softmax),
        functions=(F.softmax, torch.softmax),
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
        functions=(F.log_softmax, torch.log_softmax),
        methods=("log_softmax",),
        modules=(nn.LogSoftmax,),
        module_args=("dim",),
        note="any dim, torch's implicit dim",
        samples=_samples(F.log_softmax, nn.LogSoftmax(dim=1)),
    ),
]
