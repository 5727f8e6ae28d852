"""The row of torch.segment_reduce (manual_bp.ops.segments): sum, mean, max, min and prod
over consecutive segments of the first axis, given by lengths or offsets (constants: a
buffer, or a tensor made in forward() that carries no gradient)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from manual_bp.ops.segments import SegmentReduce
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Param, Refusal, Sample, tensor


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
    """torch.segment_reduce(data, reduce, lengths= or offsets=) along axis 0, initial None."""
    if axis != 0 or indices is not None or initial is not None:
        raise UnsupportedModuleError(
            "segment_reduce: only axis=0 with lengths or offsets, and initial=None, are supported"
        )
    if (lengths is None) == (offsets is None):
        raise ValueError("segment_reduce: expected lengths or offsets (one of them)")
    if lengths is not None:
        n = _constant(lengths, "lengths")
    else:
        n = np.diff(_constant(offsets, "offsets"))
    if n.ndim != 1:
        raise UnsupportedModuleError("segment_reduce: only 1-d lengths or offsets are supported")
    return Op(SegmentReduce(reduce, n), (tensor(data, "segment_reduce"),))


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
        note="sum, mean, max, min, prod; lengths or offsets (constants), axis 0; a tied max/min "
        "refused (torch splits only a positive cotangent)",
        samples=_samples,
        refusals=_refusals,
    )
]
