"""Writes by index (manual_bp.ops.scatter) and diagonals (manual_bp.ops.shape):
x[idx] = v, index_put, scatter / scatter_add / scatter_reduce, index_add / index_copy /
index_fill / index_reduce, masked_scatter, take_along_dim, repeat_interleave; diagonal,
diag_embed, diag, trace, adjoint.

An in-place write is its out-of-place twin: `x[idx] = v` is "x with x[idx] replaced by v"
(the overwritten entries get zero gradient, v the gradient gathered from where it went), and
the capture rebinds x to the result. Index tensors are buffers of the model or integer
tensors computed in forward(); they carry no gradient.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch

from manual_bp.ops.reductions import Sum
from manual_bp.ops.scatter import IndexPut, MaskedScatter, MaskedWrite, RepeatInterleave, Scatter
from manual_bp.ops.shape import FROM_INPUT, DiagEmbed, Diagonal, Expand, Gather, Index, Reshape
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry import shape as shape_rules
from torch_ref.registry.core import Op, OpEntry, Param, Ref, Refusal, Sample, number, tensor
from torch_ref.registry.shape import _index_arg, _index_tensor, matrix_transpose

# --- x[idx] = v and index_put ------------------------------------------------------------------


def _index_items(index: Any, what: str) -> tuple[tuple[Any, ...], list[Ref]]:
    """An index as IndexPut takes it: constants as arrays, computed integer tensors as
    FROM_INPUT with their Refs in order."""
    items, extra = [], []
    for item in index if isinstance(index, tuple) else (index,):
        if isinstance(item, (Ref, Param)):
            item, ref = _index_tensor(item, what)
            extra += [ref] if ref is not None else []
        elif isinstance(item, list):
            item = np.asarray(item)
        items.append(item)
    return tuple(items), extra


def _value(value: Any, what: str) -> tuple[float | None, tuple[Any, ...]]:
    """The written value: a number as the layer's option, a tensor as an input."""
    if isinstance(value, (Ref, Param)):
        return None, (value,)
    if isinstance(value, torch.Tensor):
        tensor(value, what)  # refused, naming the tensor
    return number(value, what), ()


def _masked_write(x: Ref | Param, mask: Ref, value: Any) -> Op:
    """x[mask] = v with a bool mask computed in forward() (over x's leading dims)."""
    v, v_inputs = _value(value, "x[mask] = v")
    return Op(MaskedWrite(v), (x, *v_inputs, mask))


def setitem(obj: Any, index: Any, value: Any) -> Op:
    """`x[index] = value` (operator.setitem, Tensor.__setitem__): x with x[index] replaced by
    value, which is a number or a tensor broadcast to the indexed shape."""
    x = tensor(obj, "x[...] = v")
    items = index if isinstance(index, tuple) else (index,)
    if len(items) == 1 and isinstance(items[0], Ref) and items[0].dtype == "bool":
        return _masked_write(x, items[0], value)
    if any(isinstance(i, Ref) and i.dtype == "bool" for i in items):
        raise UnsupportedModuleError(
            "x[...] = v: a bool mask computed in forward() is supported alone (x[mask] = v), "
            "not among other index items"
        )
    spec, extra = _index_items(index, "x[...] = v")
    v, v_inputs = _value(value, "x[...] = v")
    return Op(IndexPut(spec, v), (x, *v_inputs, *extra))


def index_put(input: Any, indices: Any, values: Any, accumulate: bool = False) -> Op:
    """torch.index_put(x, indices, values, accumulate=False): x[indices] = values (or +=);
    None in indices takes a whole dim."""
    x = tensor(input, "index_put")
    items = tuple(slice(None) if i is None else i for i in indices)
    if len(items) == 1 and isinstance(items[0], Ref) and items[0].dtype == "bool":
        if accumulate:
            raise UnsupportedModuleError(
                "index_put: accumulate=True with a bool mask computed in forward() is not supported"
            )
        return _masked_write(x, items[0], values)
    spec, extra = _index_items(items, "index_put")
    v, v_inputs = _value(values, "index_put (values)")
    return Op(IndexPut(spec, v, bool(accumulate)), (x, *v_inputs, *extra))


# --- scatter and the index_* family ------------------------------------------------------------


def _dim(dim: Any, what: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise UnsupportedModuleError(f"{what}: expected an int dim, got {dim!r}")
    return dim


def _scatter(what: str, input: Any, dim: Any, index: Any, src: Any, **options: Any) -> Op:
    x = tensor(input, what)
    item, extra = _index_arg(index, what)
    value, src_inputs = (None, (src,)) if isinstance(src, (Ref, Param)) else _value(src, what)
    layer = Scatter(_dim(dim, what), item, value=value, **options)
    return Op(layer, (x, *src_inputs, *extra))


def scatter(
    input: Any, dim: Any, index: Any, src: Any = None, value: Any = None, *, reduce: Any = None
) -> Op:
    """torch.scatter(x, dim, index, src) or (x, dim, index, value): x with src's entries (or
    the number) written at index along dim."""
    if reduce is not None:
        raise UnsupportedModuleError(
            f"scatter: reduce={reduce!r} is not supported (torch deprecates it and its gradient "
            "is not defined for src); use scatter_reduce or scatter_add"
        )
    return _scatter("scatter", input, dim, index, src if src is not None else value)


def scatter_add(input: Any, dim: Any, index: Any, src: Any) -> Op:
    return _scatter("scatter_add", input, dim, index, tensor(src, "scatter_add"), reduce="sum")


_SCATTER_REDUCE = ("sum", "prod", "mean", "amax", "amin")


def scatter_reduce(
    input: Any, dim: Any, index: Any, src: Any, reduce: str, *, include_self: bool = True
) -> Op:
    """torch.scatter_reduce(x, dim, index, src, reduce, include_self=True): reduce one of
    sum, prod, mean, amax, amin."""
    if reduce not in _SCATTER_REDUCE:
        raise UnsupportedModuleError(
            f"scatter_reduce: reduce={reduce!r} is not supported; expected one of {_SCATTER_REDUCE}"
        )
    src = tensor(src, "scatter_reduce")
    return _scatter(
        "scatter_reduce", input, dim, index, src, reduce=reduce, include_self=bool(include_self)
    )


def index_add(input: Any, dim: Any, index: Any, source: Any, *, alpha: Any = 1) -> Op:
    """x.index_add(dim, index, source, alpha=1): x[…, index[j], …] += α source[…, j, …]."""
    source = tensor(source, "index_add")
    alpha = number(alpha, "index_add (alpha)")
    return _scatter("index_add", input, dim, index, source, reduce="sum", alpha=alpha, along=True)


def index_copy(input: Any, dim: Any, index: Any, source: Any) -> Op:
    """x.index_copy(dim, index, source): x[…, index[j], …] = source[…, j, …]."""
    return _scatter("index_copy", input, dim, index, tensor(source, "index_copy"), along=True)


def index_fill(input: Any, dim: Any, index: Any, value: Any) -> Op:
    """x.index_fill(dim, index, value): the slices at index along dim set to a number."""
    if isinstance(value, (Ref, Param)):
        raise UnsupportedModuleError("index_fill: a tensor value is not supported; only a number")
    return _scatter("index_fill", input, dim, index, value, along=True)


_INDEX_REDUCE = ("prod", "mean", "amax", "amin")


def index_reduce(
    input: Any, dim: Any, index: Any, source: Any, reduce: str, *, include_self: bool = True
) -> Op:
    if reduce not in _INDEX_REDUCE:
        raise UnsupportedModuleError(
            f"index_reduce: reduce={reduce!r} is not supported; expected one of {_INDEX_REDUCE}"
        )
    source = tensor(source, "index_reduce")
    return _scatter(
        "index_reduce",
        input,
        dim,
        index,
        source,
        reduce=reduce,
        include_self=bool(include_self),
        along=True,
    )


def masked_scatter(input: Any, mask: Any, source: Any) -> Op:
    m = tensor(mask, "masked_scatter (mask)")
    if isinstance(m, Param) and m.tensor.dtype != torch.bool:
        raise UnsupportedModuleError(
            f"masked_scatter: expected a bool mask, got {m.name!r} of dtype {m.tensor.dtype}"
        )
    x, src = tensor(input, "masked_scatter"), tensor(source, "masked_scatter")
    return Op(MaskedScatter(), (x, m, src))


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


# --- samples -----------------------------------------------------------------------------------


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


_IDX = torch.tensor([2, 0, 2])


def _set_first_column(x: torch.Tensor) -> torch.Tensor:
    y = x * 2
    y[:, 0] = 0
    return y


def _set_corner(x: torch.Tensor) -> torch.Tensor:
    H = x * 2  # (not x.exp(): exp saves its output, which torch's autograd then refuses)
    H[..., -1, -1] += 1  # kornia: H[..., -1, -1] += 1
    return H


def _set_rows_from_v(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    y = x + 0
    y[_IDX] = v  # a repeated row: the last write wins, v gets both δ
    return y


def _set_by_mask(x: torch.Tensor) -> torch.Tensor:
    y = x * 1
    y[y < 0] = -1.5
    return y


def _set_by_mask_tensor(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    y = x * 1
    y[x[:, 0] > 0] = v
    return y


def _setitem_samples() -> list[Sample]:
    x = _randn(0, 4, 3)
    return [
        Sample("y[:, 0] = 0", (x,), fn=_set_first_column),
        Sample("H[..., -1, -1] += 1", (_randn(1, 2, 3, 3),), fn=_set_corner),
        Sample(
            "a bool mask (a constant) with other items", (_randn(34, 4, 3),), fn=_masked_with_more
        ),
        Sample("rows by an index buffer, repeated", (x, _randn(2, 3)), fn=_set_rows_from_v),
        Sample("by a mask computed in forward, a number", (x,), fn=_set_by_mask),
        Sample(
            "by a row mask computed in forward, a tensor", (x, _randn(3, 3)), fn=_set_by_mask_tensor
        ),
    ]


def _index_put_samples() -> list[Sample]:
    x = _randn(4, 4, 3)
    v = _randn(5, 3, 3)
    rows, cols = torch.tensor([0, 3, 0]), torch.tensor([1, 2, 1])
    return [
        Sample("rows", (x, v), fn=lambda x, v: x.index_put((_IDX,), v)),
        Sample(
            "accumulate, repeated",
            (x, v),
            fn=lambda x, v: torch.index_put(x, (_IDX,), v, accumulate=True),
        ),
        Sample(
            "two index tensors, broadcast value",
            (x, v[0, :1]),
            fn=lambda x, v: x.index_put((rows, cols), v),
        ),
    ]


def _scatter_samples() -> list[Sample]:
    x = _randn(6, 3, 5)
    src = _randn(7, 2, 4)
    idx = torch.tensor([[0, 1, 2, 0], [2, 0, 0, 1]])
    col = torch.tensor([[4, 0], [1, 3], [2, 2]])
    return [
        Sample(
            "dim 0, src larger than index",
            (x, src),
            fn=lambda x, s: torch.scatter(x, 0, idx, s[:, :4]),
        ),
        Sample("dim 1, as a method", (x, _randn(8, 3, 2)), fn=lambda x, s: x.scatter(1, col, s)),
        Sample("a number", (x,), fn=lambda x: x.scatter(-1, col, 0.5)),
    ]


def _scatter_add_samples() -> list[Sample]:
    x = _randn(9, 3, 5)
    idx = torch.tensor([[0, 1, 2, 0], [2, 0, 0, 1]])
    return [
        Sample(
            "dim 0, repeats add up",
            (x, _randn(10, 2, 4)),
            fn=lambda x, s: torch.scatter_add(x, 0, idx, s),
        ),
        Sample(
            "a graph's messages (index from an input)",
            (x, _randn(11, 3, 5)),
            fn=lambda x, s: x.scatter_add(
                1,
                torch.zeros(3, 5, dtype=torch.long).scatter(1, torch.tensor([[0], [1], [2]]), 1),
                s,
            ),
        ),
    ]


def _scatter_reduce_samples() -> list[Sample]:
    x = _randn(12, 5, 3)
    src = _randn(13, 6, 3)
    idx = torch.tensor([0, 2, 0, 4, 2, 0])[:, None].expand(6, 3)
    ints_x = torch.randint(-2, 3, (5, 3), generator=torch.Generator().manual_seed(14)).double()
    ints_s = torch.randint(-2, 3, (6, 3), generator=torch.Generator().manual_seed(15)).double()
    out = []
    for reduce in _SCATTER_REDUCE:
        for include_self in (True, False):
            out.append(
                Sample(
                    f"{reduce}, include_self={include_self}",
                    (x, src),
                    fn=lambda x, s, r=reduce, i=include_self: x.scatter_reduce(
                        0, idx, s, r, include_self=i
                    ),
                )
            )
    for reduce in ("prod", "amax", "amin"):
        out.append(
            Sample(
                f"{reduce}, exact ties and zeros (integer-valued)",
                (ints_x, ints_s),
                fn=lambda x, s, r=reduce: torch.scatter_reduce(x, 0, idx, s, r),
            )
        )
    return out


def _index_add_samples() -> list[Sample]:
    x = _randn(16, 4, 3)
    return [
        Sample("dim 0, repeats", (x, _randn(17, 3, 3)), fn=lambda x, s: x.index_add(0, _IDX, s)),
        Sample(
            "dim -1, alpha",
            (x, _randn(18, 4, 3)),
            fn=lambda x, s: torch.index_add(x, -1, _IDX, s, alpha=-2),
        ),
    ]


def _index_copy_samples() -> list[Sample]:
    x = _randn(19, 4, 3)
    return [
        Sample(
            "dim 0", (x, _randn(20, 2, 3)), fn=lambda x, s: x.index_copy(0, torch.tensor([3, 1]), s)
        ),
        Sample(
            "dim 1",
            (x, _randn(21, 4, 2)),
            fn=lambda x, s: torch.index_copy(x, 1, torch.tensor([2, 0]), s),
        ),
    ]


def _index_fill_samples() -> list[Sample]:
    x = _randn(22, 4, 3)
    return [
        Sample("dim 1, a number", (x,), fn=lambda x: x.index_fill(1, torch.tensor([0, 2]), -1.0))
    ]


def _index_reduce_samples() -> list[Sample]:
    x = _randn(23, 4, 3)
    s = _randn(24, 5, 3)
    return [
        Sample(
            f"{r}, include_self={i}",
            (x, s),
            fn=lambda x, s, r=r, i=i: x.index_reduce(
                0, torch.tensor([0, 3, 0, 1, 3]), s, r, include_self=i
            ),
        )
        for r in _INDEX_REDUCE
        for i in (True, False)
    ]


def _masked_scatter_samples() -> list[Sample]:
    x = _randn(25, 3, 4)
    mask = torch.tensor([True, False, True, True])
    return [
        Sample(
            "a constant mask, broadcast; a longer source",
            (x, _randn(26, 4, 4)),
            fn=lambda x, s: x.masked_scatter(mask, s),
        ),
        Sample(
            "a mask computed in forward",
            (x, _randn(27, 12)),
            fn=lambda x, s: torch.masked_scatter(x, x > 0, s),
        ),
    ]


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


def _masked_with_more(x: torch.Tensor) -> torch.Tensor:
    y = x * 1
    y[x[:, 0] > 0, 1] = 0.0
    return y


def _scatter_refusals() -> list[Refusal]:
    x = _randn(35, 3, 5)
    return [
        Refusal(
            "reduce='add'",
            (x, _randn(36, 3, 5)),
            UnsupportedModuleError,
            "use scatter_reduce",
            fn=lambda x, s: x.scatter(1, torch.zeros(3, 5, dtype=torch.long), s, reduce="add"),
        ),
    ]


ROWS = [
    OpEntry(
        "setitem",
        "indexing",
        setitem,
        functions=(operator.setitem,),
        methods=("__setitem__",),
        note="x[idx] = v as 'x with x[idx] replaced' (overwritten entries: zero gradient); "
        "ints, slices, ..., index buffers or ids, a bool mask computed in forward()",
        samples=_setitem_samples,
    ),
    OpEntry(
        "index_put",
        "indexing",
        index_put,
        functions=(torch.index_put, torch.index_put_),
        methods=("index_put", "index_put_"),
        note="accumulate; None takes a whole dim",
        samples=_index_put_samples,
    ),
    OpEntry(
        "scatter",
        "indexing",
        scatter,
        functions=(torch.scatter,),
        methods=("scatter", "scatter_"),
        note="src or a number; reduce= refused (use scatter_reduce)",
        samples=_scatter_samples,
        refusals=_scatter_refusals,
    ),
    OpEntry(
        "scatter_add",
        "indexing",
        scatter_add,
        functions=(torch.scatter_add,),
        methods=("scatter_add", "scatter_add_"),
        linear=True,
        samples=_scatter_add_samples,
    ),
    OpEntry(
        "scatter_reduce",
        "indexing",
        scatter_reduce,
        functions=(torch.scatter_reduce,),
        methods=("scatter_reduce", "scatter_reduce_"),
        note="sum, prod (zeros exact), mean, amax/amin (δ shared by the tied; ties reported); "
        "include_self",
        samples=_scatter_reduce_samples,
    ),
    OpEntry(
        "index_add",
        "indexing",
        index_add,
        functions=(torch.index_add,),
        methods=("index_add", "index_add_"),
        note="alpha; repeated indices add up",
        linear=True,
        samples=_index_add_samples,
    ),
    OpEntry(
        "index_copy",
        "indexing",
        index_copy,
        functions=(torch.index_copy,),
        methods=("index_copy", "index_copy_"),
        linear=True,
        samples=_index_copy_samples,
    ),
    OpEntry(
        "index_fill",
        "indexing",
        index_fill,
        functions=(torch.index_fill,),
        methods=("index_fill", "index_fill_"),
        note="a number",
        samples=_index_fill_samples,
    ),
    OpEntry(
        "index_reduce",
        "indexing",
        index_reduce,
        methods=("index_reduce", "index_reduce_"),
        note="prod, mean, amax, amin; include_self",
        samples=_index_reduce_samples,
    ),
    OpEntry(
        "masked_scatter",
        "indexing",
        masked_scatter,
        functions=(torch.masked_scatter,),
        methods=("masked_scatter", "masked_scatter_"),
        note="a bool mask (a buffer or computed in forward()), broadcast",
        samples=_masked_scatter_samples,
    ),
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
