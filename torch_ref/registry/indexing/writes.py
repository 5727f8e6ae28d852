"""Writes by index (manual_bp.ops.scatter): x[idx] = v, index_put, scatter /
scatter_add / scatter_reduce, index_add / index_copy / index_fill / index_reduce,
masked_scatter.

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

from manual_bp.ops.scatter import IndexPut, MaskedScatter, MaskedWrite, Scatter
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Param, Ref, Refusal, Sample, number, tensor
from torch_ref.registry.shape import _index_arg, _index_tensor

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


def _set_row_slice(x: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(2, 2, 3, dtype=x.dtype)
    for i in range(2):
        out[i] = x[i : i + 1] * 2
    return out


def _setitem_samples() -> list[Sample]:
    x = _randn(0, 4, 3)
    return [
        Sample("y[:, 0] = 0", (x,), fn=_set_first_column),
        Sample(  # (kornia's crop_by_indices: a (1, C, h, w) slice into out[i])
            "a value with leading 1s (torch drops them)", (_randn(5, 2, 2, 3),), fn=_set_row_slice
        ),
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
]
