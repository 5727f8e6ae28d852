"""Casts in the float64 twin: the identity.

The record makes every floating cast float64 (`.to(torch.float32)`, `.float()`, `.half()`,
`.type_as(y)`, `dtype=` arguments; torch_ref.record), so a cast met on a value that carries
gradient hands the same values on: z = x, δ_prev = δ. A move between devices is the same
identity. Casts to integer or bool types carry no gradient and are constants of the run.
"""

from __future__ import annotations

from typing import Any

import torch

from torch_ref.registry.core import OpEntry, Sample, tensor


def cast(x: Any, *args: Any, **kwargs: Any) -> Any:
    """z = x (a floating cast in the twin is float64 → float64)."""
    return tensor(x, "cast")


def _samples() -> list[Sample]:
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return [
        Sample(
            ".to(torch.float32) (float64 in the twin)", (x,), fn=lambda x: x.to(torch.float32) * 2
        ),
        Sample(".float() then .to(dtype)", (x,), fn=lambda x: x.float().to(x.dtype) + 1),
        Sample(".half() and .type_as", (x,), fn=lambda x: x.half().type_as(x) * 3),
        Sample(".double(), .contiguous()", (x,), fn=lambda x: x.t().double().contiguous() * 3),
    ]


ROWS = [
    OpEntry(
        "cast",
        "shape",
        cast,
        methods=("to", "double", "float", "half", "bfloat16", "type", "type_as", "cpu", "cuda"),
        note="the identity in the float64 twin (every floating cast is made float64)",
        linear=True,
        samples=_samples,
    ),
]
