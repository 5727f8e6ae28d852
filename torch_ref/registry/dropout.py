"""Dropout in evaluation mode: the identity. In training mode its mask is random, so no
reference gradient exists: refused, naming the module."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_ref.registry.core import OpEntry, Refusal, Sample, tensor

_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def dropout(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Any:
    """Evaluation mode: the value itself (no node)."""
    if training and p > 0:
        raise ValueError(
            f"dropout is in training mode (p={p}): its mask is random, so no reference "
            "gradient exists; expected model.eval() (or p=0, or training=self.training)"
        )
    return tensor(input, "dropout")


def _samples() -> list[Sample]:
    x = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return [
        Sample("module, eval", (x,), module=nn.Dropout(0.3).eval()),
        Sample("function, training=False", (x,), fn=lambda x: F.dropout(x, 0.5, False)),
    ]


def _refusals() -> list[Refusal]:
    x = torch.randn(3, 4, dtype=torch.float64)
    return [
        Refusal("module in training mode", (x,), ValueError, "random", module=nn.Dropout(0.3)),
        Refusal("function with training=True", (x,), ValueError, "random", fn=F.dropout),
    ]


ROWS = [
    OpEntry(
        "dropout",
        "dropout",
        dropout,
        functions=(F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout),
        modules=_DROPOUTS,
        module_args=lambda m: {"p": m.p, "training": m.training},
        note="evaluation mode (or p=0): the identity",
        linear=True,
        samples=_samples,
        refusals=_refusals,
    ),
]
