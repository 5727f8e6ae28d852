"""Writes by index (manual_bp.ops.scatter) and diagonals (manual_bp.ops.shape):
x[idx] = v, index_put, scatter / scatter_add / scatter_reduce, index_add / index_copy /
index_fill / index_reduce, masked_scatter, take_along_dim, repeat_interleave; diagonal,
diag_embed, diag, trace, adjoint.

An in-place write is its out-of-place twin: `x[idx] = v` is "x with x[idx] replaced by v"
(the overwritten entries get zero gradient, v the gradient gathered from where it went), and
the capture rebinds x to the result. Index tensors are buffers of the model or integer
tensors computed in forward(); they carry no gradient.

The family's rows live in two modules: `writes` (x[idx] = v, index_put, the scatter and
index_* families, masked_scatter) and `gathers` (take_along_dim, repeat_interleave, the
diagonals, and the *_copy forms of views); ROWS joins them in the order docs/ops.md lists
them. Every rule is re-exported here.
"""

from __future__ import annotations

from torch_ref.registry.indexing import gathers, writes
from torch_ref.registry.indexing.gathers import (
    adjoint,
    diag,
    diag_embed,
    diagonal,
    repeat_interleave,
    take_along_dim,
    trace,
)
from torch_ref.registry.indexing.writes import (
    index_add,
    index_copy,
    index_fill,
    index_put,
    index_reduce,
    masked_scatter,
    scatter,
    scatter_add,
    scatter_reduce,
    setitem,
)

#: the rows in the order docs/ops.md lists them
ROWS = [*writes.ROWS, *gathers.ROWS]

__all__ = [
    "adjoint",
    "diag",
    "diag_embed",
    "diagonal",
    "index_add",
    "index_copy",
    "index_fill",
    "index_put",
    "index_reduce",
    "masked_scatter",
    "repeat_interleave",
    "scatter",
    "scatter_add",
    "scatter_reduce",
    "setitem",
    "take_along_dim",
    "trace",
]
