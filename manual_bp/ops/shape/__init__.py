"""Shape layers: identity, flatten, reshape, permute, transpose and cat; δ_prev is δ moved back.

The family lives in four modules, re-exported here:

| module    | what lives there                                                              |
|-----------|-------------------------------------------------------------------------------|
| `core`    | identity, flatten, reshape, permute, transpose, rearrange                     |
| `index`   | one Index layer for x[...], narrow, select, index_select and gather           |
| `arrange` | expand, repeat, tile, roll, flip, movedim, unflatten, triangles and diagonals |
| `pieces`  | several tensors in or out: cat, stack, split and chunk, unbind                |
"""

from __future__ import annotations

from manual_bp.ops.shape.arrange import (
    DiagEmbed,
    Diagonal,
    Expand,
    Flip,
    MoveDim,
    Repeat,
    Roll,
    Tile,
    Triangle,
    Unflatten,
)
from manual_bp.ops.shape.core import Flatten, Identity, Permute, Rearrange, Reshape, Transpose
from manual_bp.ops.shape.index import (
    FROM_INPUT,
    Gather,
    Index,
    IndexItem,
    IndexSelect,
    Narrow,
    SelectDim,
)
from manual_bp.ops.shape.pieces import Cat, Split, Stack, Unbind, chunk_sizes, split_sizes

__all__ = [
    "Cat",
    "DiagEmbed",
    "Diagonal",
    "Expand",
    "FROM_INPUT",
    "Flatten",
    "Flip",
    "Gather",
    "Identity",
    "Index",
    "IndexItem",
    "IndexSelect",
    "MoveDim",
    "Narrow",
    "Permute",
    "Rearrange",
    "Repeat",
    "Reshape",
    "Roll",
    "SelectDim",
    "Split",
    "Stack",
    "Tile",
    "Transpose",
    "Triangle",
    "Unbind",
    "Unflatten",
    "chunk_sizes",
    "split_sizes",
]
