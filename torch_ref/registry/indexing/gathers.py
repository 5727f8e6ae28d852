"""Reads by index and diagonals (manual_bp.ops.scatter and manual_bp.ops.shape):
take_along_dim, repeat_interleave; diagonal, diag_embed, diag, trace, adjoint; and the
*_copy forms of views (the same values, not aliased). Index tensors carry no gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from manual_bp.ops.reductions import Sum
from manual_bp.ops.scatter import RepeatInterleave
from manual_bp.ops.shape import FROM_INPUT, DiagEmbed, Diagonal, Expand, Gather, Index, Reshape
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry import shape as shape_rules
from torch_ref.registry.core import Op, OpEntry, Param, Ref, Sample, tensor
from torch_ref.registry.indexing.writes import _dim, _randn
from torch_ref.registry.shape import _index_arg, matrix_transpose


def take_along_dim(input: Any, indices: Any, dim: Any = None) -> Op:
    """torch.take_along_dim(x, indices, dim=None): gather along dim, x and indices broadcast
    against each other off dim; dim None: of the flattened x and indices."""
    x = tensor(input, "take_along_dim")
    idx = tensor(indices, "take_along_dim")
    if dim is None:
        item, extra = _index_arg(idx, "take_along_dim")
        if item is not FROM_INPUT:
            item = np.asarray(item).reshape(-1)
        else:
            extra = (Op(Reshape((-1,)), extra),)  # type: ignore[assignment]
        return Op(Gather(0, item), (Op(Reshape((-1,)), (x,)), *extra))
    d = _dim(dim, "take_along_dim")
    if x.ndim != idx.ndim:
        raise ValueError(
            f"take_along_dim: expected input and indices of one rank, got shapes {x.shape} and "
            f"{idx.shape}"
        )
    d = d % max(x.ndim, 1)
    try:
        off = np.broadcast_shapes(
            tuple(1 if k == d else n for k, n in enumerate(x.shape)),
            tuple(1 if k == d else n for k, n in enumerate(idx.shape)),
        )
    except ValueError:
        raise ValueError(
            f"take_along_dim: shapes {x.shape} and {idx.shape} do not broadcast off dim {d}"
        ) from None
    x_to = tuple(x.shape[d] if k == d else n for k, n in enumerate(off))
    i_to = tuple(idx.shape[d] if k == d else n for k, n in enumerate(off))
    xs: Any = x if x.shape == x_to else Op(Expand(x_to), (x,))
    item, extra = _index_arg(idx, "take_along_dim")
    if item is not FROM_INPUT:
        item = np.broadcast_to(item, i_to)
    elif idx.shape != i_to:
        extra = (Op(Expand(i_to), extra),)  # type: ignore[assignment]
    return Op(Gather(d, item), (xs, *extra))


def repeat_interleave(
    input: Any, repeats: Any = None, dim: Any = None, *, output_size: Any = None
) -> Op:
    """x.repeat_interleave(repeats, dim=None): repeats an int or a tensor of the model (a
    count per entry); counts computed in forward() give a value-dependent shape: refused."""
    x = tensor(input, "repeat_interleave")
    if isinstance(repeats, Ref):
        raise UnsupportedModuleError(
            "repeat_interleave: repeats computed in forward() give a shape that depends on "
            "their values; only an int or a tensor of the model (a buffer) is supported"
        )
    counts = repeats.array() if isinstance(repeats, Param) else repeats
    if repeats is None:
        raise UnsupportedModuleError("repeat_interleave(repeats) alone gives indices: no gradient")
    if dim is not None:
        dim = _dim(dim, "repeat_interleave")
    return Op(RepeatInterleave(counts, dim), (x,))


# --- diagonals -------------------------------------------------------------------------------


def diagonal(input: Any, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Op:
    return Op(Diagonal(offset, dim1, dim2), (tensor(input, "diagonal"),))


def diag_embed(input: Any, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Op:
    return Op(DiagEmbed(offset, dim1, dim2), (tensor(input, "diag_embed"),))


def diag(input: Any, diagonal: int = 0) -> Op:
    """torch.diag: a 1-d x as the diagonal of a square matrix; a 2-d x's diagonal."""
    x = tensor(input, "diag")
    if x.ndim == 1:
        return Op(DiagEmbed(diagonal, 0, 1), (x,))
    if x.ndim == 2:
        return Op(Diagonal(diagonal, 0, 1), (x,))
    raise ValueError(f"diag: expected a 1-d or 2-d input, got shape {x.shape}")


def trace(input: Any) -> Op:
    """torch.trace: the sum of a 2-d x's diagonal."""
    x = tensor(input, "trace")
    if x.ndim != 2:
        raise ValueError(f"trace: expected a 2-d input, got shape {x.shape}")
    return Op(Sum(None), (Op(Diagonal(0, 0, 1), (x,)),))


def adjoint(input: Any) -> Any:
    """x.adjoint() = x.mH: the last two dims swapped (real tensors)."""
    return matrix_transpose(input)


def _take_along_dim_samples() -> list[Sample]:
    x = _randn(28, 3, 5)
    return [
        Sample(
            "dim 1",
            (x,),
            fn=lambda x: torch.take_along_dim(x, torch.tensor([[0, 4], [1, 1], [3, 2]]), 1),
        ),
        Sample(
            "indices broadcast", (x,), fn=lambda x: x.take_along_dim(torch.tensor([[4, 0]]), dim=-1)
        ),
        Sample(
            "flattened", (x,), fn=lambda x: torch.take_along_dim(x, torch.tensor([0, 14, 7, 7]))
        ),
    ]


def _repeat_interleave_samples() -> list[Sample]:
    x = _randn(29, 3, 4)
    counts = torch.tensor([1, 0, 2])
    return [
        Sample("an int, flattened", (x,), fn=lambda x: x.repeat_interleave(2)),
        Sample("an int along dim 1", (x,), fn=lambda x: torch.repeat_interleave(x, 3, dim=1)),
        Sample(
            "a count per entry (a constant)",
            (x,),
            fn=lambda x: torch.repeat_interleave(x, counts, dim=-2),
        ),
    ]


def _diagonal_samples() -> list[Sample]:
    x = _randn(30, 2, 4, 3)
    return [
        Sample("default dims", (x,), fn=torch.diagonal),
        Sample("offset, negative dims", (x,), fn=lambda x: x.diagonal(1, -2, -1)),
        Sample("negative offset, dims swapped", (x,), fn=lambda x: torch.diagonal(x, -1, 2, 1)),
    ]


def _diag_embed_samples() -> list[Sample]:
    x = _randn(31, 2, 3)
    return [
        Sample("default", (x,), fn=torch.diag_embed),
        Sample("offset, dims 0 and 2", (x,), fn=lambda x: x.diag_embed(-1, 0, 2)),
    ]


def _diag_samples() -> list[Sample]:
    return [
        Sample("of a vector, offset", (_randn(32, 3),), fn=lambda x: torch.diag(x, 1)),
        Sample("of a matrix", (_randn(33, 3, 4),), fn=lambda x: x.diag(-1)),
    ]


ROWS = [
    OpEntry(
        "take_along_dim",
        "indexing",
        take_along_dim,
        functions=(torch.take_along_dim,),
        methods=("take_along_dim",),
        note="indices broadcast off dim; dim None flattens",
        samples=_take_along_dim_samples,
    ),
    OpEntry(
        "repeat_interleave",
        "indexing",
        repeat_interleave,
        functions=(torch.repeat_interleave,),
        methods=("repeat_interleave",),
        note="an int or a constant count per entry; counts computed in forward() refused "
        "(value-dependent shape)",
        linear=True,
        samples=_repeat_interleave_samples,
    ),
    OpEntry(
        "diagonal",
        "shape",
        diagonal,
        functions=(torch.diagonal,),
        methods=("diagonal",),
        note="offset, any two dims",
        linear=True,
        samples=_diagonal_samples,
    ),
    OpEntry(
        "diag_embed",
        "shape",
        diag_embed,
        functions=(torch.diag_embed,),
        methods=("diag_embed",),
        linear=True,
        samples=_diag_embed_samples,
    ),
    OpEntry(
        "diag",
        "shape",
        diag,
        functions=(torch.diag,),
        methods=("diag",),
        note="a vector's matrix, a matrix's diagonal; offset",
        linear=True,
        samples=_diag_samples,
    ),
    OpEntry(
        "trace",
        "shape",
        trace,
        functions=(torch.trace,),
        methods=("trace",),
        linear=True,
        samples=lambda: [Sample("square and not", (_randn(38, 3, 4),), fn=torch.trace)],
    ),
    OpEntry(
        "adjoint",
        "shape",
        adjoint,
        functions=(torch.adjoint,),
        methods=("adjoint",),
        note="x.mH of a real tensor",
        linear=True,
        samples=lambda: [Sample("batched", (_randn(39, 2, 3, 4),), fn=lambda x: x.adjoint() * 2)],
    ),
]


# --- the *_copy forms of views: the same values, not aliased ----------------------------------


def _slice_copy(input: Any, dim: int = 0, start: Any = None, end: Any = None, step: int = 1) -> Op:
    """torch.slice_copy(x, dim, start, end, step) = x[..., start:end:step, ...] along dim."""
    x = tensor(input, "slice_copy")
    d = _dim(dim, "slice_copy") % max(x.ndim, 1)
    return Op(Index((slice(None),) * d + (slice(start, end, step),)), (x,))


def _expand_copy(input: Any, size: Any, *, implicit: bool = False) -> Op:
    return shape_rules.expand(input, size)


def _copy_rows() -> list[OpEntry]:
    x = _randn(50, 2, 3, 4)
    table = [
        ("diagonal_copy", torch.diagonal_copy, diagonal, lambda x: torch.diagonal_copy(x, 1, 1, 2)),
        (
            "permute_copy",
            torch.permute_copy,
            shape_rules.permute,
            lambda x: torch.permute_copy(x, (2, 0, 1)),
        ),
        (
            "transpose_copy",
            torch.transpose_copy,
            shape_rules.transpose,
            lambda x: torch.transpose_copy(x, 0, 2),
        ),
        ("t_copy", torch.t_copy, shape_rules.t, lambda x: torch.t_copy(x[0])),
        ("view_copy", torch.view_copy, shape_rules.reshape, lambda x: torch.view_copy(x, (4, 6))),
        (
            "expand_copy",
            torch.expand_copy,
            _expand_copy,
            lambda x: torch.expand_copy(x[:, :1], (5, 2, 3, 4)),
        ),
        (
            "unsqueeze_copy",
            torch.unsqueeze_copy,
            shape_rules.unsqueeze,
            lambda x: torch.unsqueeze_copy(x, -1),
        ),
        (
            "squeeze_copy",
            torch.squeeze_copy,
            shape_rules.squeeze,
            lambda x: torch.squeeze_copy(x[:1], 0),
        ),
        (
            "select_copy",
            torch.select_copy,
            shape_rules.select,
            lambda x: torch.select_copy(x, 2, -1),
        ),
        (
            "narrow_copy",
            torch.narrow_copy,
            shape_rules.narrow,
            lambda x: torch.narrow_copy(x, 1, 1, 2),
        ),
        ("slice_copy", torch.slice_copy, _slice_copy, lambda x: torch.slice_copy(x, 2, 1, None, 2)),
        (
            "unbind_copy",
            torch.unbind_copy,
            shape_rules.unbind,
            lambda x: torch.unbind_copy(x, 1)[2],
        ),
        ("split_copy", torch.split_copy, shape_rules.split, lambda x: torch.split_copy(x, 3, 2)[1]),
    ]
    return [
        OpEntry(
            name,
            "shape",
            rule,
            functions=(fn,),
            note="a copy: the same values as the view",
            linear=True,
            samples=lambda s=sample: [Sample("values", (x,), fn=s)],
        )
        for name, fn, rule, sample in table
    ]


ROWS += _copy_rows()
