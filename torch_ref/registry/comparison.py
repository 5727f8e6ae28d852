"""Comparisons (manual_bp.ops.comparison): bool masks, no gradient. On plain numbers
(sizes) they compute the answer itself (`x.size(1) > 2`)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch

from manual_bp.ops.comparison import Compare, LogicalNot
from torch_ref.registry.core import Op, OpEntry, Param, Ref, Sample, is_plain, number, tensor

_REFLECTED = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}


def compare_rule(op: str, fn: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def rule(input: Any, other: Any) -> Any:
        if is_plain(input, other):
            return fn(input, other)
        tensors = isinstance(input, (Ref, Param)), isinstance(other, (Ref, Param))
        if all(tensors):
            return Op(Compare(op), (input, other))
        if tensors[0]:
            return Op(Compare(op, 1, number(other, op, infinite=True)), (input,))
        return Op(Compare(_REFLECTED[op], 1, number(input, op, infinite=True)), (other,))

    return rule


def _samples(fn: Callable[..., Any]) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        return [Sample("mask times x", (x,), fn=lambda x: x * fn(x, 0.1))]

    return samples


ROWS = [
    OpEntry(
        op,
        "comparison",
        compare_rule(op, fn),
        functions=(fn, getattr(torch, op)),
        methods=(op, f"__{op}__"),
        note="a bool mask (no gradient)",
        samples=_samples(fn),
    )
    for op, fn in (
        ("lt", operator.lt),
        ("le", operator.le),
        ("gt", operator.gt),
        ("ge", operator.ge),
        ("eq", operator.eq),
        ("ne", operator.ne),
    )
]


def logical_not(input: Any) -> Op:
    return Op(LogicalNot(), (tensor(input, "logical_not"),))


def _not_samples() -> list[Sample]:
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return [Sample("x where not x > 0", (x,), fn=lambda x: x * torch.logical_not(x > 0))]


ROWS.append(
    OpEntry(
        "logical_not",
        "comparison",
        logical_not,
        functions=(torch.logical_not,),
        methods=("logical_not", "__invert__"),
        note="a bool mask (no gradient)",
        samples=_not_samples,
    )
)
