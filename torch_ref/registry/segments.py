"""The row of torch.segment_reduce (manual_bp.ops.segments): sum, mean, max, min and prod
over consecutive segments of the first axis, given by lengths or offsets (constants: a
buffer, or a tensor made in forward() that carries no gradient)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from manual_bp.ops.segments import SegmentReduce
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Param, Refusal, Sample, number, tensor


def _constant(t: Any, what: str) -> np.ndarray:
    if not isinstance(t, Param) or t.trainable:
        raise UnsupportedModuleError(
            f"segment_reduce: {what} computed from the inputs are not supported; pass a constant"
        )
    return t.array()


def segment_reduce(
    data: Any,
    reduce: str,
    *,
    lengths: Any = None,
    indices: Any = None,
    offsets: Any = None,
    axis: int = 0,
    unsafe: bool = False,
    initial: Any = None,
) -> Op:
    """torch.segment_reduce(data, reduce, lengths= or offsets=, axis=, initial=); lengths or
    offsets of rank axis + 1 (each index before axis its own segments)."""
    if indices is not None:
        raise UnsupportedModuleError("segment_reduce: indices= is not supported; use lengths")
    if (lengths is None) == (offsets is None):
        raise ValueError("segment_reduce: expected lengths or offsets (one of them)")
    if lengths is not None:
        n = _constant(lengths, "lengths")
    else:
        n = np.diff(_constant(offsets, "offsets"), axis=-1)
    if initial is not None:
        initial = number(initial, "segment_reduce (initial)")
    layer = SegmentReduce(reduce, n, int(axis) % max(n.ndim, 1), initial)
    return Op(layer, (tensor(data, "segment_reduce"),))


def _samples() -> list[Sample]:
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(95), dtype=torch.float64)
    with_zero = x.clone()
    with_zero[4] = 0.0
    lengths, offsets = torch.tensor([3, 0, 2, 3]), torch.tensor([0, 3, 3, 5, 8])
    nonempty = torch.tensor([3, 2, 3])
    out = [
        Sample(f"{r}, lengths", (x,), fn=lambda x, r=r, n=ln: torch.segment_reduce(x, r, lengths=n))
        for r, ln in (("sum", lengths), ("mean", nonempty), ("max", nonempty), ("min", nonempty))
    ]
    return out + [
        Sample("prod with a zero, offsets", (with_zero,),
               fn=lambda x: torch.segment_reduce(x, "prod", offsets=offsets)),
        Sample("sum, offsets, an empty segment", (x,),
               fn=lambda x: torch.segment_reduce(x, "sum", offsets=offsets)),
        Sample("initial (an empty segment holds it)", (with_zero,), fn=lambda x: torch.cat([
            torch.segment_reduce(x, r, lengths=lengths, initial=2.5)
            for r in ("sum", "mean", "prod")])),
        Sample("axis 1, per-row lengths", (x.T.reshape(2, 8, 1),),
               fn=lambda x: torch.segment_reduce(x, "max", lengths=torch.tensor([[3, 5], [8, 0]]),
                                                 axis=1, initial=-9.0)),
        Sample("unsafe: rows past the last segment (read by none)", (x,),
               fn=lambda x: torch.segment_reduce(x, "sum", lengths=torch.tensor([2, 3]),
                                                 unsafe=True)),
    ]  # fmt: skip


def _refusals() -> list[Refusal]:
    tied = torch.tensor([1.0, 3.0, 3.0, 2.0], dtype=torch.float64)
    return [
        Refusal("a tied maximum (torch divides only positive cotangents)", (tied,), ValueError,
                "held by 2 entries", fn=lambda x: torch.segment_reduce(
                    x, "max", lengths=torch.tensor([3, 1]))),
    ]  # fmt: skip


ROWS = [
    OpEntry(
        "segment_reduce",
        "reduction",
        segment_reduce,
        functions=(torch.segment_reduce,),
        note="sum, mean, max, min, prod; lengths or offsets (constants), axis, initial; a tied "
        "max/min refused (torch splits only a positive cotangent)",
        samples=_samples,
        refusals=_refusals,
    )
]
