"""Reductions over dims (manual_bp.ops.reductions): δ_prev is δ broadcast back (÷ count
for a mean)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from manual_bp.ops.reductions import Mean, Sum
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Sample, tensor


def reduce_rule(cls: type[Sum]) -> Callable[..., Op]:
    """torch.sum/mean(input, dim=None, keepdim=False, *, dtype=None)."""
    what = cls.__name__.lower()

    def rule(input: Any, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Op:
        if dtype is not None and dtype != torch.float64:
            raise UnsupportedModuleError(f"{what}: the dtype option is not supported")
        return Op(cls(dim, keepdim), (tensor(input, what),))

    return rule


def _samples(fn: Callable[..., Any]) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        x = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        return [
            Sample("all dims", (x,), fn=lambda x: fn(x)),
            Sample("dims (0, 2), keepdim", (x,), fn=lambda x: fn(x, (0, 2), True)),
            Sample("dim -1", (x,), fn=lambda x: fn(x, -1)),
        ]

    return samples


ROWS = [
    OpEntry(
        "sum",
        "reduction",
        reduce_rule(Sum),
        functions=(torch.sum,),
        methods=("sum",),
        note="over any dims, keepdim",
        linear=True,
        samples=_samples(torch.sum),
    ),
    OpEntry(
        "mean",
        "reduction",
        reduce_rule(Mean),
        functions=(torch.mean,),
        methods=("mean",),
        note="over any dims, keepdim",
        linear=True,
        samples=_samples(torch.mean),
    ),
]
