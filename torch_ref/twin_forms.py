"""Calls the float64 twin makes in another form: torch has no float64 kernel for them.

`torch._grouped_mm` (`F.grouped_mm`, the Mixture-of-Experts GEMM of transformers' experts
layers) runs in bfloat16 and float32 only. In the twin it is made of what it is defined as,
one matrix product per group, written in torch ops that the record then records one by one
(their rows are mm, slicing and cat): the manual pass and the autograd reference both
differentiate that definition. Groups are the experts; the loop is over them, never over
tokens. The report lists such a call with the calls recorded through lowering.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from torch_ref.errors import UnsupportedModuleError


def _ends(offs: Any, n: int, what: str) -> list[int]:
    if not isinstance(offs, torch.Tensor) or offs.ndim != 1 or offs.dtype != torch.int32:
        raise ValueError(f"{what}: expected offs, a 1-d int32 tensor of group ends, got {offs!r}")
    ends = [int(e) for e in offs.tolist()]
    if any(b < a for a, b in zip([0, *ends], ends, strict=False)) or (ends and ends[-1] > n):
        raise ValueError(
            f"{what}: expected offs increasing and at most {n} (the jagged size), got {ends}"
        )
    return ends


def grouped_mm(
    mat_a: torch.Tensor,
    mat_b: torch.Tensor,
    *,
    offs: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """torch._grouped_mm by its definition, for each layout torch accepts (rows of a 2-d
    operand past offs[-1] are ignored: their outputs are zero, where torch leaves them
    unwritten)."""
    what = "torch._grouped_mm"
    if bias is not None:
        raise UnsupportedModuleError(f"{what}: bias is not supported (torch refuses it too)")
    if mat_a.ndim not in (2, 3) or mat_b.ndim not in (2, 3):
        raise ValueError(
            f"{what}: expected 2-d or 3-d operands, got shapes {tuple(mat_a.shape)} and "
            f"{tuple(mat_b.shape)}"
        )
    if mat_a.ndim == 3 and mat_b.ndim == 3:
        if offs is not None:
            raise ValueError(f"{what}: offs given for 3-d/3-d operands (a batched product)")
        return torch.bmm(mat_a, mat_b)
    if offs is None:
        raise ValueError(f"{what}: offs is needed for {mat_a.ndim}-d/{mat_b.ndim}-d operands")
    if mat_a.ndim == 2 and mat_b.ndim == 2:  # groups along the contraction: (G, M, N)
        ends = _ends(offs, mat_a.shape[1], what)
        starts = [0, *ends[:-1]]
        return torch.stack([mat_a[:, s:e] @ mat_b[s:e] for s, e in zip(starts, ends, strict=True)])
    if mat_a.ndim == 2:  # groups of rows of mat_a, one matrix of mat_b each: (M, N)
        ends = _ends(offs, mat_a.shape[0], what)
        starts = [0, *ends[:-1]]
        parts = [mat_a[s:e] @ mat_b[g] for g, (s, e) in enumerate(zip(starts, ends, strict=True))]
        rest = mat_a.shape[0] - (ends[-1] if ends else 0)
        parts.append(mat_a.new_zeros(rest, mat_b.shape[-1]))
        return torch.cat(parts)
    ends = _ends(offs, mat_b.shape[1], what)  # groups of columns of mat_b: (M, N)
    starts = [0, *ends[:-1]]
    parts = [mat_a[g] @ mat_b[:, s:e] for g, (s, e) in enumerate(zip(starts, ends, strict=True))]
    rest = mat_b.shape[1] - (ends[-1] if ends else 0)
    parts.append(mat_a.new_zeros(mat_a.shape[1], rest))
    return torch.cat(parts, dim=1)


#: the torch function → its form in the twin
FORMS: dict[Any, Callable[..., Any]] = {torch._grouped_mm: grouped_mm}
