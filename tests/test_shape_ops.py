"""The shape layers (indexing, expand, repeat, roll, flip, stack, split, unbind, gather, …)
against torch.autograd in float64: a table of named cases, the adjoint identity (each is
linear), a hypothesis property over random indexing expressions, refusals as data, and
planted bugs that must fail."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from _layer_check import TOL_EXACT, adjoint, check_layer
from hypothesis import given
from hypothesis import strategies as st

from manual_bp.ops.base import Layer
from manual_bp.ops.shape import (
    FROM_INPUT,
    Expand,
    Flip,
    Gather,
    Index,
    IndexSelect,
    MoveDim,
    Narrow,
    Permute,
    Rearrange,
    Repeat,
    Roll,
    SelectDim,
    Split,
    Stack,
    Tile,
    Transpose,
    Triangle,
    Unbind,
    Unflatten,
    chunk_sizes,
    split_sizes,
)
from torch_ref.registry.core import Op, Ref
from torch_ref.registry.shape import matrix_transpose, reverse_dims

IDX = np.array([0, 2, 1, 4])  # a buffer of indices
REPEATS = np.array([0, 2, 0, 0, 1])  # with repeats: their gradients add up
MASK = np.array([[True, False, True], [False, False, True]])
GATHER_IDX = np.array([[0, 0, 2], [1, 0, 0]])
# a Swin-style relative position index: (2·2)² pairs into a (2·2−1)² table
_coords = np.stack(np.meshgrid(np.arange(2), np.arange(2), indexing="ij")).reshape(2, -1)
_rel = (_coords[:, :, None] - _coords[:, None, :]).transpose(1, 2, 0) + 1
REL_POS = (_rel[..., 0] * 3 + _rel[..., 1]).reshape(-1)


@dataclass(frozen=True)
class Case:
    id: str
    layer: Callable[[], Layer]
    in_shapes: tuple[tuple[int, ...], ...]
    torch_fn: Callable[..., Any]
    unused: tuple[int, ...] = field(default=())
    index_inputs: tuple[np.ndarray, ...] = ()  # integer inputs after the floating ones


def t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x)


CASES = [
    # --- x[...] ---
    Case("int", lambda: Index(1), ((3, 4),), lambda x: x[1]),
    Case("negative_ints", lambda: Index((-1, 2)), ((3, 4),), lambda x: x[-1, 2]),
    Case("class_token", lambda: Index((slice(None), 0)), ((2, 5, 4),), lambda x: x[:, 0]),
    Case("last_k", lambda: Index((Ellipsis, slice(None, 2))), ((2, 3, 5),), lambda x: x[..., :2]),
    Case(
        "step_slice",
        lambda: Index((slice(None), slice(1, None, 2))),
        ((3, 6),),
        lambda x: x[:, 1::2],
    ),
    Case("clamped_slice", lambda: Index(slice(-100, 100)), ((3, 2),), lambda x: x[-100:100]),
    Case("empty_slice", lambda: Index(slice(5, 2)), ((3, 2),), lambda x: x[5:2]),
    Case("negative_bounds", lambda: Index(slice(-3, -1)), ((5, 2),), lambda x: x[-3:-1]),
    Case(
        "none_ellipsis_int",
        lambda: Index((None, Ellipsis, None, 0)),
        ((2, 3, 4),),
        lambda x: x[None, ..., None, 0],
    ),
    Case("ellipsis_alone", lambda: Index(Ellipsis), ((2, 3),), lambda x: x[...]),
    Case("index_array", lambda: Index(REPEATS), ((3, 4),), lambda x: x[t(REPEATS) % 3]),
    Case(
        "negative_index_array",
        lambda: Index((slice(None), np.array([-1, 0, -1]))),
        ((2, 3),),
        lambda x: x[:, t(np.array([-1, 0, -1]))],
    ),
    Case(
        "int_then_array_torch_order",
        lambda: Index((0, slice(None), IDX)),
        ((2, 3, 5),),
        lambda x: x[0, :, t(IDX)],
    ),
    Case(
        "arrays_adjacent",
        lambda: Index((slice(None), np.array([[0], [1]]), np.array([0, 2, 1]))),
        ((2, 3, 4),),
        lambda x: x[:, t(np.array([[0], [1]])), t(np.array([0, 2, 1]))],
    ),
    Case(
        "arrays_apart_go_first",
        lambda: Index((np.array([0, 1, 1]), slice(None), np.array([2, 0, 2]))),
        ((2, 3, 4),),
        lambda x: x[t(np.array([0, 1, 1])), :, t(np.array([2, 0, 2]))],
    ),
    Case(
        "array_2d",
        lambda: Index(np.array([[0, 1], [1, 1]])),
        ((2, 3),),
        lambda x: x[t(np.array([[0, 1], [1, 1]]))],
    ),
    Case("bool_mask_2d", lambda: Index(MASK), ((2, 3, 5),), lambda x: x[t(MASK)]),
    Case(
        "bool_mask_dim1",
        lambda: Index((slice(None), MASK[0])),
        ((2, 3, 5),),
        lambda x: x[:, t(MASK[0])],
    ),
    Case(
        "int_bool_slice",
        lambda: Index((0, MASK[0], slice(1, None))),
        ((2, 3, 5),),
        lambda x: x[0, t(MASK[0]), 1:],
    ),
    Case("zero_d_array_is_int", lambda: Index(np.array(1)), ((3, 4),), lambda x: x[t(np.array(1))]),
    Case("none_then_array", lambda: Index((None, IDX)), ((5, 2),), lambda x: x[None, t(IDX)]),
    Case(
        "empty_index_array",
        lambda: Index(np.array([], dtype=np.int64)),
        ((3, 2),),
        lambda x: x[t(np.array([], dtype=np.int64))],
    ),
    Case(
        "swin_relative_position_bias",
        lambda: Index(REL_POS),
        ((9, 2),),
        lambda table: table[t(REL_POS)],
    ),
    Case("zero_d_input_none", lambda: Index(None), ((),), lambda x: x[None]),
    # --- index arrays that are inputs (computed in forward(), token ids): no δ for them ---
    Case(
        "index_input",
        lambda: Index(FROM_INPUT),
        ((5, 3),),
        lambda x, i: x[i],
        index_inputs=(REPEATS,),
    ),
    Case(
        "index_input_after_slice",
        lambda: Index((slice(1, None), FROM_INPUT)),
        ((3, 5),),
        lambda x, i: x[1:, i],
        index_inputs=(IDX,),
    ),
    Case(
        "two_index_inputs_apart",
        lambda: Index((FROM_INPUT, slice(None), FROM_INPUT)),
        ((2, 3, 4),),
        lambda x, i, j: x[i, :, j],
        index_inputs=(np.array([[0], [1]]), np.array([3, 0, 3])),
    ),
    Case(
        "swin_computed_index",
        lambda: Index(FROM_INPUT),
        ((9, 2),),
        lambda table, i: table[i],
        index_inputs=(REL_POS,),
    ),
    Case(
        "index_select_input",
        lambda: IndexSelect(-1, FROM_INPUT),
        ((2, 5),),
        lambda x, i: x.index_select(-1, i),
        index_inputs=(REPEATS,),
    ),
    Case(
        "gather_input",
        lambda: Gather(1, FROM_INPUT),
        ((3, 4),),
        lambda x, i: x.gather(1, i),
        index_inputs=(GATHER_IDX,),
    ),
    # --- narrow, select, index_select, gather ---
    Case("narrow", lambda: Narrow(1, 1, 2), ((2, 4),), lambda x: x.narrow(1, 1, 2)),
    Case(
        "narrow_negative",
        lambda: Narrow(-1, -3, 2),
        ((2, 4),),
        lambda x: torch.narrow(x, -1, -3, 2),
    ),
    Case("narrow_empty_at_end", lambda: Narrow(0, 2, 0), ((2, 4),), lambda x: x.narrow(0, 2, 0)),
    Case("select", lambda: SelectDim(1, -1), ((2, 3, 4),), lambda x: x.select(1, -1)),
    Case(
        "index_select_repeats",
        lambda: IndexSelect(1, REPEATS),
        ((2, 3, 2),),
        lambda x: torch.index_select(x, 1, t(REPEATS) % 3),
    ),
    Case(
        "index_select_0d",
        lambda: IndexSelect(0, np.array(1)),
        ((3, 2),),
        lambda x: torch.index_select(x, 0, t(np.array(1))),
    ),
    Case(
        "gather_dim0",
        lambda: Gather(0, GATHER_IDX),
        ((3, 3),),
        lambda x: x.gather(0, t(GATHER_IDX)),
    ),
    Case(
        "gather_dim_last_smaller_index",
        lambda: Gather(-1, GATHER_IDX),
        ((3, 4),),
        lambda x: torch.gather(x, -1, t(GATHER_IDX)),
    ),
    # --- expand, repeat, tile ---
    Case("expand", lambda: Expand((2, -1, 4)), ((3, 1),), lambda x: x.expand(2, -1, 4)),
    Case("expand_to_zero", lambda: Expand((0, 3)), ((1, 3),), lambda x: x.expand(0, 3)),
    Case("expand_0d", lambda: Expand((2, 3)), ((),), lambda x: x.expand(2, 3)),
    Case(
        "class_token_expand",
        lambda: Expand((4, -1, -1)),
        ((1, 1, 3),),
        lambda x: x.expand(4, -1, -1),
    ),
    Case(
        "broadcast_to",
        lambda: Expand((2, 3, 4)),
        ((3, 1),),
        lambda x: torch.broadcast_to(x, (2, 3, 4)),
    ),
    Case("repeat", lambda: Repeat((2, 1, 3)), ((2, 3),), lambda x: x.repeat(2, 1, 3)),
    Case("repeat_zero", lambda: Repeat((0, 2)), ((2, 3),), lambda x: x.repeat(0, 2)),
    Case("tile_short_dims", lambda: Tile((2,)), ((2, 3),), lambda x: torch.tile(x, (2,))),
    Case("tile_long_dims", lambda: Tile((2, 1, 2)), ((3,),), lambda x: x.tile((2, 1, 2))),
    # --- roll, flip, movedim, unflatten, tril/triu, transposes ---
    Case(
        "roll_dims", lambda: Roll((1, -2), (0, 2)), ((3, 2, 4),), lambda x: x.roll((1, -2), (0, 2))
    ),
    Case("roll_flat", lambda: Roll(3), ((3, 2),), lambda x: torch.roll(x, 3)),
    Case(
        "roll_same_dim_twice",
        lambda: Roll((1, 1), (0, 0)),
        ((3, 2),),
        lambda x: x.roll((1, 1), (0, 0)),
    ),
    Case("roll_beyond_size", lambda: Roll(-7, -1), ((2, 3),), lambda x: x.roll(-7, -1)),
    Case(
        "swin_shift",
        lambda: Roll((-1, -1), (1, 2)),
        ((2, 4, 4, 3),),
        lambda x: torch.roll(x, (-1, -1), (1, 2)),
    ),
    Case("flip", lambda: Flip((0, -1)), ((2, 3, 4),), lambda x: x.flip((0, -1))),
    Case("movedim", lambda: MoveDim(1, -1), ((2, 3, 4),), lambda x: x.movedim(1, -1)),
    Case(
        "moveaxis_several",
        lambda: MoveDim((0, 1), (2, 0)),
        ((2, 3, 4, 5),),
        lambda x: torch.moveaxis(x, (0, 1), (2, 0)),
    ),
    Case(
        "unflatten", lambda: Unflatten(1, (2, -1)), ((2, 6, 3),), lambda x: x.unflatten(1, (2, -1))
    ),
    Case(
        "unflatten_heads",
        lambda: Unflatten(-1, (3, 2)),
        ((2, 6),),
        lambda x: x.unflatten(-1, (3, 2)),
    ),
    Case("tril", lambda: Triangle(False), ((3, 4),), torch.tril),
    Case("triu_diag1_batched", lambda: Triangle(True, 1), ((2, 4, 3),), lambda x: x.triu(1)),
    Case("tril_diag_minus2", lambda: Triangle(False, -2), ((4, 4),), lambda x: torch.tril(x, -2)),
    Case("swapaxes", lambda: Transpose(0, 2), ((2, 3, 4),), lambda x: x.swapaxes(0, 2)),
    Case("T_3d_reverses", lambda: Permute((2, 1, 0)), ((2, 3, 4),), lambda x: x.permute(2, 1, 0)),
    Case("mT", lambda: Transpose(-2, -1), ((2, 3, 4),), lambda x: x.mT),
    Case(
        "rearrange_split_heads",
        lambda: Rearrange((5, 2, 3, 4), (1, 2, 0, 3), (2, 3, 5, 4)),
        ((5, 2, 12),),
        lambda x: x.reshape(5, 6, 4).transpose(0, 1).reshape(2, 3, 5, 4),
    ),
    Case(
        "rearrange_merge_heads",
        lambda: Rearrange((2, 3, 5, 4), (2, 0, 1, 3), (10, 12)),
        ((2, 3, 5, 4),),
        lambda x: x.permute(2, 0, 1, 3).reshape(10, 12),
    ),
    # --- stack, split, chunk, unbind ---
    Case("stack", lambda: Stack(0, 3), ((2, 3),) * 3, lambda *x: torch.stack(x)),
    Case("stack_last", lambda: Stack(-1, 2), ((2, 3),) * 2, lambda *x: torch.stack(x, -1)),
    Case("split_size", lambda: Split(split_sizes(5, 2), 1), ((2, 5),), lambda x: x.split(2, 1)),
    Case(
        "split_sections_unused",
        lambda: Split((1, 3, 1), -1),
        ((2, 5),),
        lambda x: torch.split(x, [1, 3, 1], -1),
        unused=(1,),
    ),
    Case("chunk_fewer", lambda: Split(chunk_sizes(6, 4), 0), ((6, 2),), lambda x: x.chunk(4)),
    Case("chunk_qkv", lambda: Split(chunk_sizes(9, 3), -1), ((2, 9),), lambda x: x.chunk(3, -1)),
    Case("split_one_piece", lambda: Split((3,), 0), ((3, 2),), lambda x: x.split(3)[0]),
    Case("unbind", lambda: Unbind(0, 3), ((3, 2, 4),), lambda x: x.unbind(0)),
    Case("unbind_unused", lambda: Unbind(-1, 3), ((2, 3),), lambda x: torch.unbind(x, -1), (0, 2)),
    Case("unbind_one", lambda: Unbind(1, 1), ((2, 1),), lambda x: x.unbind(1)[0]),
]


def _inputs(case: Case, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in case.in_shapes] + list(case.index_inputs)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_shape_op_matches_torch(case: Case) -> None:
    check_layer(
        case.id, case.layer(), _inputs(case), case.torch_fn, tol=TOL_EXACT, unused=case.unused
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_shape_op_adjoint(case: Case) -> None:
    adjoint(case.id, case.layer(), _inputs(case))


@pytest.mark.parametrize(
    "n, spec, want",
    [
        (5, 2, (2, 2, 1)),
        (4, 2, (2, 2)),
        (0, 2, (0,)),
        (0, 0, (0,)),
        (3, 5, (3,)),
        (5, [1, 4], (1, 4)),
    ],
)
def test_split_sizes_as_torch(n: int, spec: Any, want: tuple[int, ...]) -> None:
    assert split_sizes(n, spec) == want
    assert tuple(p.shape[0] for p in torch.zeros(n).split(spec)) == want


@pytest.mark.parametrize("n, chunks", [(6, 4), (5, 3), (0, 3), (7, 7), (2, 5), (1, 1)])
def test_chunk_sizes_as_torch(n: int, chunks: int) -> None:
    want = tuple(p.shape[0] for p in torch.zeros(n).chunk(chunks))
    assert chunk_sizes(n, chunks) == want, f"chunk({n}, {chunks}): torch {want}"


# --- a property: random indexing expressions ---------------------------------------------


@st.composite
def index_item(draw: st.DrawFn, n: int) -> Any:
    """One item indexing a dim of size n: an int, a slice (any bounds, steps 1..3), an integer
    array (negative entries, repeats) or a bool mask."""
    kind = draw(st.sampled_from(["int", "slice", "array", "mask"]))
    if kind == "int":
        return draw(st.integers(-n, n - 1))
    if kind == "slice":
        bound = st.none() | st.integers(-n - 2, n + 2)
        return slice(draw(bound), draw(bound), draw(st.none() | st.integers(1, 3)))
    if kind == "array":
        entries = draw(st.lists(st.integers(-n, n - 1), max_size=3))
        return np.array(entries, dtype=np.int64)
    return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))


@st.composite
def index_cases(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[Any, ...]]:
    """A shape and an index into it: items for a leading run of dims, optionally '...' and
    items for a trailing run, None sprinkled between them."""
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    ndim = len(shape)
    head = draw(st.integers(0, ndim))
    dims: list[int | None] = list(range(head))
    if draw(st.booleans()):  # '...', then the last `tail` dims
        tail = draw(st.integers(0, ndim - head))
        dims += [None, *range(ndim - tail, ndim)]
    items: list[Any] = []
    for d in dims:
        if draw(st.integers(0, 4)) == 0:
            items.append(None)
        items.append(Ellipsis if d is None else draw(index_item(shape[d])))
    arrays = [i for i in items if isinstance(i, np.ndarray) and i.dtype != bool]
    masks = [i for i in items if isinstance(i, np.ndarray) and i.dtype == bool]
    lengths = {len(a) for a in arrays} | {int(m.sum()) for m in masks}
    if len(lengths - {1}) > 1:  # index arrays must broadcast together: keep their dims whole
        items = [slice(None) if isinstance(i, np.ndarray) else i for i in items]
    return shape, tuple(items)


@given(case=index_cases(), seed=st.integers(0, 2**16))
def test_index_property(case: tuple[tuple[int, ...], tuple[Any, ...]], seed: int) -> None:
    shape, index = case
    torch_index = tuple(torch.as_tensor(i) if isinstance(i, np.ndarray) else i for i in index)
    x = np.random.default_rng(seed).standard_normal(shape)
    check_layer(
        f"x{list(index)} of {shape}",
        Index(index),
        [x],
        lambda a: a[torch_index],
        tol=TOL_EXACT,
        seed=seed,
    )


# --- refusals: ValueError naming what was given, before any arithmetic -------------------


@dataclass(frozen=True)
class Refusal:
    id: str
    layer: Callable[[], Layer]
    in_shape: tuple[int, ...] | None  # None: the constructor raises
    match: str
    torch_fn: Callable[[torch.Tensor], Any] | None = None  # torch refuses it too


REFUSALS = [
    Refusal(
        "int_out_of_range", lambda: Index(3), (3, 2), "index 3 is out of bounds", lambda x: x[3]
    ),
    Refusal(
        "too_many_indices",
        lambda: Index((0, 0, 0)),
        (3, 2),
        "too many indices",
        lambda x: x[0, 0, 0],
    ),
    Refusal(
        "negative_step",
        lambda: Index(slice(None, None, -1)),
        None,
        "step greater than zero",
        lambda x: x[::-1],
    ),
    Refusal(
        "two_ellipses",
        lambda: Index((Ellipsis, Ellipsis)),
        None,
        "at most one Ellipsis",  # torch reads x[..., 0, ...] as x[..., 0]: undocumented
    ),
    Refusal(
        "float_index",
        lambda: Index(np.array([0.5])),
        None,
        "integers or bools",
        lambda x: x[torch.tensor([0.5])],
    ),
    Refusal("python_bool", lambda: Index(True), None, "bool"),
    Refusal(
        "array_out_of_range",
        lambda: Index(np.array([0, -4])),
        (3, 2),
        "index -4 is out of bounds",
        lambda x: x[torch.tensor([0, -4])],
    ),
    Refusal(
        "mask_shape",
        lambda: Index(np.array([True, False])),
        (3, 2),
        r"bool mask of shape \(2,\)",
        lambda x: x[torch.tensor([True, False])],
    ),
    Refusal(
        "arrays_do_not_broadcast",
        lambda: Index((np.array([0, 1]), np.array([0, 1, 0]))),
        (3, 2),
        "broadcast together",
        lambda x: x[torch.tensor([0, 1]), torch.tensor([0, 1, 0])],
    ),
    Refusal(
        "narrow_too_long",
        lambda: Narrow(0, 1, 3),
        (3, 2),
        r"length in \[0, 2\]",
        lambda x: x.narrow(0, 1, 3),
    ),
    Refusal(
        "narrow_start",
        lambda: Narrow(0, -4, 1),
        (3, 2),
        r"start in \[-3, 3\]",
        lambda x: x.narrow(0, -4, 1),
    ),
    Refusal(
        "select_out_of_range",
        lambda: SelectDim(1, 2),
        (3, 2),
        "index 2 is out of bounds",
        lambda x: x.select(1, 2),
    ),
    Refusal(
        "index_select_2d",
        lambda: IndexSelect(0, np.zeros((2, 2), dtype=np.int64)),
        None,
        "1-d or 0-d integer index",
        lambda x: x.index_select(0, torch.zeros(2, 2, dtype=torch.long)),
    ),
    Refusal(
        "gather_rank",
        lambda: Gather(0, np.array([0, 1])),
        (3, 2),
        "index of rank 2",
        lambda x: x.gather(0, torch.tensor([0, 1])),
    ),
    Refusal(
        "gather_too_large",
        lambda: Gather(0, np.zeros((2, 3), dtype=np.int64)),
        (3, 2),
        "no larger than the input",
        lambda x: x.gather(0, torch.zeros(2, 3, dtype=torch.long)),
    ),
    Refusal(
        "gather_index_range",
        lambda: Gather(1, np.array([[0, 2]])),
        (3, 2),
        "index 2 is out of bounds",
        lambda x: x.gather(1, torch.tensor([[0, 2]])),
    ),
    Refusal(
        "expand_non_one",
        lambda: Expand((3, 4)),
        (3, 2),
        "only size-1 dims stretch",
        lambda x: x.expand(3, 4),
    ),
    Refusal(
        "expand_too_few", lambda: Expand((2,)), (3, 2), "at least 2 sizes", lambda x: x.expand(2)
    ),
    Refusal(
        "expand_new_minus1",
        lambda: Expand((-1, 3, 2)),
        (3, 2),
        "new leading dims",
        lambda x: x.expand(-1, 3, 2),
    ),
    Refusal(
        "repeat_too_few", lambda: Repeat((2,)), (3, 2), "at least 2 repeats", lambda x: x.repeat(2)
    ),
    Refusal(
        "repeat_negative", lambda: Repeat((-1, 2)), None, "repeats >= 0", lambda x: x.repeat(-1, 2)
    ),
    Refusal(
        "roll_misaligned", lambda: Roll((1, 2)), None, "one shift per dim", lambda x: x.roll((1, 2))
    ),
    Refusal(
        "roll_dim_range", lambda: Roll(1, 2), (3, 2), r"dims in \[-2, 1\]", lambda x: x.roll(1, 2)
    ),
    Refusal(
        "flip_repeated", lambda: Flip((0, -2)), (3, 2), "distinct dims", lambda x: x.flip((0, -2))
    ),
    Refusal(
        "movedim_repeated",
        lambda: MoveDim((0, 1), (1, 1)),
        (3, 2),
        "distinct destination",
        lambda x: x.movedim((0, 1), (1, 1)),
    ),
    Refusal(
        "movedim_lengths",
        lambda: MoveDim((0, 1), 1),
        None,
        "as many source",
        lambda x: x.movedim((0, 1), 1),
    ),
    Refusal(
        "unflatten_sizes",
        lambda: Unflatten(1, (4, -1)),
        (3, 6),
        "cannot unflatten dim 1",
        lambda x: x.unflatten(1, (4, -1)),
    ),
    Refusal(
        "unflatten_empty",
        lambda: Unflatten(1, ()),
        None,
        "non-empty sizes",
        lambda x: x.unflatten(1, ()),
    ),
    Refusal("tril_1d", lambda: Triangle(False), (3,), "at least 2 dims", torch.tril),
    Refusal(
        "split_sum",
        lambda: Split((1, 1), 0),
        (3, 2),
        "summing to the size 3",
        lambda x: x.split([1, 1]),
    ),
    Refusal("split_empty", lambda: Split((), 0), None, "one or more piece sizes"),
    Refusal("unbind_size", lambda: Unbind(0, 2), (3, 2), "dim 0 of size 2"),
    Refusal("unbind_nothing", lambda: Unbind(0, 0), None, "size >= 1"),
]


def test_index_inputs_refused_as_torch_refuses() -> None:
    """An index input out of range, of floats, or a bool mask (its shape depends on values)."""
    x = np.zeros((3, 2))
    with pytest.raises(IndexError):
        torch.zeros(3, 2)[torch.tensor([3])]
    with pytest.raises(ValueError, match="index 3 is out of bounds"):
        Index(FROM_INPUT).forward(x, np.array([3]))
    with pytest.raises(ValueError, match="integer index input"):
        Index(FROM_INPUT).forward(x, np.array([0.0]))
    with pytest.raises(ValueError, match="depends on its values"):
        Index(FROM_INPUT).forward(x, np.array([True, False, True]))
    with pytest.raises(ValueError, match="1 index input"):
        Index(FROM_INPUT).shape((3, 2))
    with pytest.raises(ValueError, match="rank 2"):
        Gather(0, FROM_INPUT).shape((3, 2), (4,))


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: c.id)
def test_refusals(case: Refusal) -> None:
    if case.torch_fn is not None:
        with pytest.raises((RuntimeError, IndexError, ValueError, TypeError)):
            case.torch_fn(torch.zeros(case.in_shape or (3, 2)))
    if case.in_shape is None:
        with pytest.raises(ValueError, match=case.match):
            case.layer()
        return
    layer = case.layer()
    with pytest.raises(ValueError, match=case.match):
        layer.shape(case.in_shape)
    with pytest.raises(ValueError, match=case.match):  # forward checks before arithmetic
        layer.forward(np.zeros(case.in_shape))


def test_stack_refuses_shapes_that_differ() -> None:
    with pytest.raises(RuntimeError):
        torch.stack([torch.zeros(2, 3), torch.zeros(3, 2)])
    with pytest.raises(ValueError, match="one shape"):
        Stack(0, 2).shape((2, 3), (3, 2))
    with pytest.raises(ValueError, match=r"split size > 0"):
        split_sizes(3, 0)
    with pytest.raises(ValueError, match=r"chunks > 0"):
        chunk_sizes(3, 0)


# --- planted bugs: the checks above must catch each ---------------------------------------


def _assign_instead_of_add(self: Index, delta: np.ndarray, cache: Any) -> Any:
    in_shape, basic, advanced, mid_shape = cache
    g = np.zeros(mid_shape)
    g[advanced] = delta  # BUG: repeated indices keep one δ instead of their sum
    out = np.zeros(in_shape)
    out[basic] = g
    return out, {}


def _roll_forward_again(self: Roll, delta: np.ndarray, axes: Any) -> Any:
    return np.roll(delta, self.shifts if axes is not None else self.shifts[0], axes), {}  # BUG


def _repeat_mean(self: Repeat, delta: np.ndarray, in_shape: Any) -> Any:
    reps, padded = self._padded(in_shape)
    pairs = [s for r, n in zip(reps, padded, strict=True) for s in (r, n)]
    return delta.reshape(pairs).mean(axis=tuple(range(0, len(pairs), 2))).reshape(
        in_shape
    ), {}  # BUG


def _split_reversed(self: Split, delta: Any, cache: Any) -> Any:
    d, shapes = cache
    pieces = [np.zeros(s) if g is None else g for g, s in zip(delta, shapes, strict=True)]
    return np.concatenate(pieces[::-1], axis=d), {}  # BUG: pieces put back in the wrong order


def _numpy_int_rule(self: Index, in_shape: Any, arrays: Any = ()) -> Any:
    return self.index, None  # BUG: NumPy's own rule for ints among arrays (see Index)


@pytest.mark.parametrize(
    "case_id, cls, method, bug",
    [
        ("index_array", Index, "backward", _assign_instead_of_add),
        ("swin_relative_position_bias", Index, "backward", _assign_instead_of_add),
        ("int_then_array_torch_order", Index, "_plan", _numpy_int_rule),
        ("swin_shift", Roll, "backward", _roll_forward_again),
        ("repeat", Repeat, "backward", _repeat_mean),
        ("chunk_qkv", Split, "backward", _split_reversed),
    ],
)
def test_planted_bug_fails(
    case_id: str, cls: type, method: str, bug: Callable, monkeypatch
) -> None:
    case = next(c for c in CASES if c.id == case_id)
    monkeypatch.setattr(cls, method, bug)
    with pytest.raises(AssertionError):
        check_layer(
            case.id, case.layer(), _inputs(case), case.torch_fn, tol=TOL_EXACT, unused=case.unused
        )


# --- x.T and x.mT: the rules wait for the tracer to hand tensor attributes to the registry ---


@pytest.mark.filterwarnings("ignore:.*(deprecated|dimension other than 2)")
@pytest.mark.parametrize("shape", [(2, 3, 4), (3, 4), (4,), ()], ids=str)
@pytest.mark.parametrize("attr", ["T", "mT"])
def test_attribute_transposes_as_torch(attr: str, shape: tuple[int, ...]) -> None:
    """registry.shape's x.T (every dim reversed) and x.mT (the last two swapped) rules."""
    rule = reverse_dims if attr == "T" else matrix_transpose
    x = np.random.default_rng(0).standard_normal(shape)
    if attr == "mT" and len(shape) == 1:
        with pytest.raises(RuntimeError):
            _ = torch.zeros(shape).mT
        with pytest.raises(ValueError, match="at least 2 dims"):
            rule(Ref("x", shape))
        return
    op = rule(Ref("x", shape))
    if not isinstance(op, Op):  # x.T of a 0-d or 1-d tensor, x.mT of a 0-d one: x itself
        t = torch.as_tensor(x)
        assert op == Ref("x", shape) and torch.equal(getattr(t, attr), t)
        return
    check_layer(f"x.{attr} of {shape}", op.layer, [x], lambda t: getattr(t, attr), tol=TOL_EXACT)
