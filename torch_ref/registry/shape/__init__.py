"""Shape ops (manual_bp.ops.shape): δ_prev is δ moved back where the value came from.

The family's rows live in two modules: `reshaping` (x[...], cat, view and reshape, flatten,
squeeze and unsqueeze, permute, transpose, identity; and the samples the shape rows share)
and `arranging` (expand, repeat and tile, roll, flip, movedim, unflatten, the transposes,
triangles, narrow, select, index_select, gather, stack, split, chunk, unbind); ROWS joins them
in the order docs/ops.md lists them. Every rule is re-exported here."""

from __future__ import annotations

from torch_ref.registry.shape import arranging, reshaping
from torch_ref.registry.shape.arranging import (
    broadcast_to,
    chunk,
    expand,
    expand_as,
    flip,
    fliplr,
    flipud,
    gather,
    index_select,
    matrix_transpose,
    movedim,
    narrow,
    repeat,
    reverse_dims,
    roll,
    select,
    split,
    stack,
    swapaxes,
    t,
    tile,
    tril,
    triu,
    unbind,
    unflatten,
    view_as,
)
from torch_ref.registry.shape.reshaping import (
    IndexedBias,
    TokenGather,
    _index_arg,  # noqa: F401
    _index_tensor,  # noqa: F401
    cat,
    flatten,
    getitem,
    permute,
    reshape,
    reshape_method,
    same,
    sizes,
    squeeze,
    transpose,
    unsqueeze,
    wrap_dim,
)

#: the rows in the order docs/ops.md lists them
ROWS = [*reshaping.ROWS, *arranging.ROWS]

__all__ = [
    "IndexedBias",
    "TokenGather",
    "broadcast_to",
    "cat",
    "chunk",
    "expand",
    "expand_as",
    "flatten",
    "flip",
    "fliplr",
    "flipud",
    "gather",
    "getitem",
    "index_select",
    "matrix_transpose",
    "movedim",
    "narrow",
    "permute",
    "repeat",
    "reshape",
    "reshape_method",
    "reverse_dims",
    "roll",
    "same",
    "select",
    "sizes",
    "split",
    "squeeze",
    "stack",
    "swapaxes",
    "t",
    "tile",
    "transpose",
    "tril",
    "triu",
    "unbind",
    "unflatten",
    "unsqueeze",
    "view_as",
    "wrap_dim",
]
