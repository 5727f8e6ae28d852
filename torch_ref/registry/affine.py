"""Affine layers: Linear, z = x Wᵀ + b (manual_bp.ops.linear)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.ops.linear import Linear
from torch_ref.registry.core import Op, OpEntry, Sample, tensor, weighted


def linear(input: Any, weight: Any, bias: Any = None) -> Op:
    """F.linear(x, weight, bias): a Linear layer holding copies of the model's weight and bias,
    or taking them as inputs where forward() computed them (x @ (W + B A)ᵀ, W ⊙ mask)."""
    return weighted(Linear, "linear", (tensor(input, "linear"),), weight, bias)


def _samples() -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    w = torch.randn(3, 5, generator=g, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    x3 = torch.randn(2, 4, 5, generator=g, dtype=torch.float64)
    return [
        Sample("module", (x,), module=nn.Linear(5, 3).double()),
        Sample("module, no bias, 3-d input", (x3,), module=nn.Linear(5, 3, bias=False).double()),
        Sample("function", (x,), fn=lambda x, w, b: F.linear(x, w, b), params={"w": w, "b": b}),
        Sample(
            "a weight computed in forward (merged LoRA), a parameter bias",
            (x3,),
            fn=lambda x, w, a, b, bias: F.linear(x, w + 0.5 * b @ a, bias),
            params={
                "w": w,
                "a": torch.randn(2, 5, generator=g, dtype=torch.float64),
                "b": torch.randn(3, 2, generator=g, dtype=torch.float64),
                "bias": b,
            },
        ),  # fmt: skip
        Sample(
            "a pruned weight, a computed bias, no bias",
            (x,),
            fn=lambda x, w, b: F.linear(x, w * (w.abs() > 0.5), 2 * b) + F.linear(x, w.tanh()),
            params={"w": w, "b": b},
        ),
    ]


ROWS = [
    OpEntry(
        "linear",
        "affine",
        linear,
        functions=(F.linear,),
        modules=(nn.Linear,),
        module_args=("weight", "bias"),
        note="bias on/off, any leading dims",
        linear=True,
        samples=_samples,
    ),
]
