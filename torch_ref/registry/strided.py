"""Rows of the views by storage position: torch.as_strided (and its copy), and
torch.as_strided_scatter, refused. The formula: manual_bp.ops.shape.strided.

A strided view reads the input's storage, so the rule needs the input's own geometry (its
strides and storage offset), which a Ref does not carry: a call met at the torch level goes
through torch's lowering (NotCovered), where aten.as_strided is met with the tensor itself
and the geometry is read off it (torch_ref.lowering). What torch's own decompositions build
on it (F.group_norm's native_group_norm, diagonal_scatter, stft's frames) then has a row.
"""

from __future__ import annotations

from typing import Any

import torch

from manual_bp.ops.shape.strided import AsStrided
from torch_ref.errors import NotCovered
from torch_ref.registry.core import Op, OpEntry, Refusal, Sample, tensor


def as_strided(
    input: Any, size: Any, stride: Any, storage_offset: int | None = None, *, _geometry=None
) -> Op:
    """torch.as_strided(x, size, stride, storage_offset): `_geometry` the input's (stride,
    storage offset, its storage's values), handed over by torch's lowering; storage_offset
    None is the input's."""
    x = tensor(input, "as_strided")
    if _geometry is None:  # (a Ref: its strides are torch's business)
        raise NotCovered("as_strided: this row reads the input's strides off the tensor itself")
    in_stride, in_offset, fill = _geometry
    offset = in_offset if storage_offset is None else storage_offset
    return Op(AsStrided(size, stride, offset, in_stride, in_offset, fill), (x,))


def as_strided_scatter(input: Any, src: Any, *args: Any, **kwargs: Any) -> Op:
    raise ValueError(
        "as_strided_scatter: torch's gradient of it is wrong (its input's gradient fails "
        "torch.autograd.gradcheck in torch 2.13), so no reference exists; write src by index "
        "instead (x.flatten().index_put((positions,), src).view_as(x))"
    )


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def _as_strided_samples() -> list[Sample]:
    return [
        Sample("a sliding window (overlapping reads)", (_x(3, 4),),
               fn=lambda x: torch.as_strided(x, (3, 3), (1, 1), 2)),
        Sample("of a transposed view (its strides)", (_x(3, 4),),
               fn=lambda x: (2 * x).T.as_strided((2, 2), (4, 1))),
        Sample("of an expanded input (it overlaps itself)", (_x(4),),
               fn=lambda x: torch.as_strided((2 * x).expand(3, 4), (2, 3), (0, 1))),
        Sample("the diagonal, storage offset None", (_x(3, 3),),
               fn=lambda x: x[1:].as_strided((2,), (4,))),
        Sample("beyond the input: the base's storage, a constant", (_x(3, 4),),
               fn=lambda x: (2 * x)[:1].as_strided((2, 4), (4, 1))),
        Sample("as_strided_copy", (_x(2, 5),),
               fn=lambda x: torch.as_strided_copy(x, (3, 2), (3, 1), 1)),
        Sample("what torch lowers to it: diagonal_scatter", (_x(3, 4),),
               fn=lambda x: torch.diagonal_scatter(x[:, :3], 2 * x[:, 3])),
    ]  # fmt: skip


def _scatter_samples() -> list[Sample]:
    """NOTE: the row refuses every call; its sample is the route its message advises."""
    at = torch.arange(0, 12, 2)
    return [Sample("advised instead: a write by index", (_x(3, 4), _x(6)),
                   fn=lambda x, s: x.flatten().index_put((at,), s).view_as(x))]  # fmt: skip


def _scatter_refusals() -> list[Refusal]:
    return [Refusal("every other entry", (_x(3, 4), _x(6)), ValueError, "gradcheck",
                    fn=lambda x, s: torch.as_strided_scatter(x, s, (6,), (2,)))]  # fmt: skip


ROWS = [
    OpEntry(
        "as_strided",
        "shape",
        as_strided,
        functions=(torch.as_strided, torch.as_strided_copy),
        methods=("as_strided",),
        note="by storage position: the input's own strides and offset (through torch's "
        "lowering, which reads them); overlapping views and inputs as torch's "
        "as_strided_backward; the base's storage beyond the input a constant (torch drops "
        "its gradient too)",
        linear=True,
        samples=_as_strided_samples,
    ),
    OpEntry(
        "as_strided_scatter",
        "shape",
        as_strided_scatter,
        functions=(torch.as_strided_scatter,),
        note="refused: torch's gradient of it fails torch.autograd.gradcheck (torch 2.13)",
        samples=_scatter_samples,
        refusals=_scatter_refusals,
    ),
]
