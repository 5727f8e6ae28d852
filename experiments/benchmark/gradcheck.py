"""manual_gradients against torch.autograd.gradcheck over every parameter of an MLP: the
speed-up, and the exactness gradcheck's finite differences lack."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import torch_ref
from experiments.benchmark.models import (
    Case,
    mlp,
    vectors,
)
from experiments.benchmark.timing import (
    manual_rel_err,
    paired,
    row,
    threads,
)


def gradcheck_speedup(pairs: int, quick: bool) -> dict[str, Any]:
    """manual_gradients against torch.autograd.gradcheck over every parameter, 1,893 of them."""
    case = Case("mlp-20-32-32-5", lambda: mlp((20, 32, 32, 5)), vectors(16, 20, 5))
    if quick:
        case = Case("mlp-4-5-3", lambda: mlp((4, 5, 3)), vectors(4, 4, 3))
    model, loss_fn, x, t = case.problem()
    names = [n for n, _ in model.named_parameters()]
    params = tuple(q.detach().clone().requires_grad_(True) for q in model.parameters())

    def f(*ps: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, dict(zip(names, ps, strict=True)), (x,))
        return loss_fn(out, t)

    def check() -> None:
        torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-5, rtol=1e-3)

    with threads(1):
        p = paired(lambda: torch_ref.manual_gradients(model, loss_fn, x, t), check, pairs, warmup=1)
    s = p.summary()
    speedups = 1.0 / p.ratios
    return row(
        "gradcheck",
        case.name,
        "1 thread",
        "manual_gradients",
        "gradcheck",
        params=sum(q.numel() for q in model.parameters()),
        batch=x.shape[0],
        max_rel_err=manual_rel_err(model, loss_fn, x, t),
        speedup=float(np.median(speedups)),
        speedup_min=float(speedups.min()),
        speedup_max=float(speedups.max()),
        **s,
    )
