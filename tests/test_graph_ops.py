"""The graph ops against torch.autograd in float64, alone and wired into a Network DAG."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import _compare
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _tolerances import TOLERANCES
from hypothesis import given
from hypothesis import strategies as st

from manual_bp.network import INPUT, Network, Node
from manual_bp.ops import (
    Add,
    AddConstant,
    Cat,
    Div,
    Layer,
    Linear,
    Mean,
    Mul,
    Permute,
    Reshape,
    Scale,
    Sub,
    Sum,
    Transpose,
    unbroadcast,
)
from manual_bp.ops.activations import get_activation
from manual_bp.ops.normalization import LayerNorm

#: one tolerance for every comparison with torch: max|manual − torch| ≤ atol + rtol·max|torch|
TOL = TOLERANCES["exact"]


def assert_close(check: str, where: str, got: np.ndarray, want: np.ndarray) -> None:
    """Fail naming the check, the case, the worst index and both values there."""
    _compare.assert_close(check, where, got, want, **TOL)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().copy()


# --- ops as a table: name → (layer, the same op in torch) --------------------------------

OPS: dict[str, Callable[..., tuple[Layer, Callable[..., torch.Tensor]]]] = {
    "add": lambda n=2: (Add(n), lambda *t: functools.reduce(operator.add, t)),
    "sub": lambda: (Sub(), operator.sub),
    "mul": lambda: (Mul(), operator.mul),
    "scale": lambda c: (Scale(c), lambda a: a * c),
    "div": lambda c: (Div(c), lambda a: a / c),
    "add_constant": lambda c: (AddConstant(c), lambda a: a + c),
    "cat": lambda dim, n: (Cat(dim, n), lambda *t: torch.cat(t, dim)),
    "mean": lambda dims, keepdim: (
        Mean(dims, keepdim),
        lambda a: torch.mean(a, dim=dims, keepdim=keepdim),
    ),
    "sum": lambda dims, keepdim: (
        Sum(dims, keepdim),
        lambda a: torch.sum(a, dim=dims, keepdim=keepdim),
    ),
    "reshape": lambda shape: (Reshape(shape), lambda a: a.reshape(shape)),
    "view": lambda shape: (Reshape(shape), lambda a: a.view(shape)),
    "permute": lambda dims: (Permute(dims), lambda a: a.permute(dims)),
    "transpose": lambda d0, d1: (Transpose(d0, d1), lambda a: a.transpose(d0, d1)),
}


@dataclass(frozen=True)
class OpCase:
    id: str
    op: str  # a key of OPS
    args: tuple[Any, ...]
    in_shapes: tuple[tuple[int, ...], ...]
    seed: int = 0


def check_op(case: OpCase) -> None:
    layer, torch_fn = OPS[case.op](*case.args)
    gen = torch.Generator().manual_seed(case.seed)
    xs = [
        torch.randn(s, generator=gen, dtype=torch.float64, requires_grad=True)
        for s in case.in_shapes
    ]
    out = torch_fn(*xs)
    up = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    out.backward(up)

    assert layer.shape(*case.in_shapes) == tuple(out.shape), (
        f"shape() [{case.id}]: {layer.shape(*case.in_shapes)}, torch {tuple(out.shape)}"
    )
    z, cache = layer.forward(*(_np(x) for x in xs))
    assert_close("forward z", case.id, z, _np(out))
    delta_prev, grads = layer.backward(_np(up), cache)
    assert grads == {}, f"graph op [{case.id}] returned parameter gradients {list(grads)}"
    if layer.n_inputs == 1:
        delta_prev = (delta_prev,)
    assert len(delta_prev) == len(xs), f"[{case.id}]: {len(delta_prev)} δ_prev for {len(xs)} inputs"
    for i, (d, x) in enumerate(zip(delta_prev, xs, strict=True)):
        assert_close(f"δ_prev of input {i}", case.id, d, _np(x.grad))


OP_CASES = [
    OpCase("add_nchw_plus_c11", "add", (), ((2, 3, 4, 5), (3, 1, 1))),
    OpCase("add_same_shape", "add", (), ((3, 4), (3, 4))),
    OpCase("add_both_broadcast", "add", (), ((2, 1, 4), (3, 1))),
    OpCase("add_0d_tensor", "add", (), ((2, 3), ())),
    OpCase("add_three_inputs", "add", (3,), ((2, 3), (3,), (2, 1))),
    OpCase("add_one_input", "add", (1,), ((2, 3),)),
    OpCase("sub_broadcast_right", "sub", (), ((2, 3, 4), (4,))),
    OpCase("sub_broadcast_left", "sub", (), ((1, 4), (3, 1))),
    OpCase("mul_channel_gate", "mul", (), ((2, 3, 4, 5), (2, 3, 1, 1))),
    OpCase("mul_same_shape", "mul", (), ((3, 4), (3, 4))),
    OpCase("scale", "scale", (2.5,), ((3, 4),)),
    OpCase("scale_negate", "scale", (-1.0,), ((3, 4),)),
    OpCase("div_by_constant", "div", (3.0,), ((2, 5),)),
    OpCase("div_by_sqrt_d", "div", (8**0.5,), ((2, 3, 8),)),
    OpCase("add_constant", "add_constant", (-1.5,), ((4,),)),
    OpCase("cat_dim0", "cat", (0, 2), ((2, 3), (4, 3))),
    OpCase("cat_dim1_three", "cat", (1, 3), ((2, 1, 4), (2, 3, 4), (2, 2, 4))),
    OpCase("cat_dim_minus1", "cat", (-1, 2), ((2, 3, 1), (2, 3, 5))),
    OpCase("cat_channels_nchw", "cat", (1, 2), ((2, 3, 2, 2), (2, 1, 2, 2))),
    OpCase("cat_one_input", "cat", (1, 1), ((2, 3),)),
    OpCase("cat_with_empty_part", "cat", (0, 2), ((0, 3), (2, 3))),
    OpCase("mean_dim1", "mean", (1, False), ((3, 4, 5),)),
    OpCase("mean_hw_keepdim", "mean", ((2, 3), True), ((2, 3, 4, 5),)),
    OpCase("mean_hw", "mean", ((2, 3), False), ((2, 3, 4, 5),)),
    OpCase("mean_negative_dims", "mean", ((-1, -3), False), ((2, 3, 4),)),
    OpCase("mean_all", "mean", (None, False), ((3, 4),)),
    OpCase("mean_all_keepdim", "mean", (None, True), ((3, 4),)),
    OpCase("mean_empty_dims_is_all", "mean", ((), False), ((3, 4),)),
    OpCase("mean_0d_dim0", "mean", (0, False), ((),)),
    OpCase("sum_dims", "sum", ((0, 2), False), ((2, 3, 4),)),
    OpCase("sum_keepdim", "sum", (-1, True), ((2, 3),)),
    OpCase("reshape_flat", "reshape", ((-1,),), ((2, 3, 4),)),
    OpCase("reshape_batch_minus1", "reshape", ((2, -1),), ((2, 3, 4),)),
    OpCase("reshape_minus1_first", "reshape", ((-1, 4, 1),), ((2, 3, 4),)),
    OpCase("reshape_to_0d", "reshape", ((),), ((1,),)),
    OpCase("reshape_empty", "reshape", ((3, 0),), ((0, 3),)),
    OpCase("reshape_empty_minus1", "reshape", ((-1, 3),), ((0, 3),)),
    OpCase("view_heads", "view", ((2, 5, 2, 3),), ((2, 5, 6),)),
    OpCase("permute_nchw_to_nhwc", "permute", ((0, 2, 3, 1),), ((2, 3, 4, 5),)),
    OpCase("permute_negative", "permute", ((-1, 0, 1),), ((2, 3, 4),)),
    OpCase("transpose_last_two", "transpose", (-2, -1), ((2, 3, 4),)),
    OpCase("transpose_same_dim", "transpose", (1, 1), ((2, 3),)),
]


@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: c.id)
def test_op_matches_torch(case: OpCase) -> None:
    check_op(case)


@pytest.mark.parametrize(
    "g_shape, shape, expected",
    [
        ((2, 3), (2, 3), [[1, 1, 1], [1, 1, 1]]),
        ((2, 3), (3,), [2, 2, 2]),
        ((2, 3), (2, 1), [[3], [3]]),
        ((2, 3), (), 6),
        ((2, 3), (1, 1), [[6]]),
    ],
    ids=["same", "leading", "inner_one", "scalar", "all_ones"],
)
def test_unbroadcast_sums_the_broadcast_axes(g_shape, shape, expected) -> None:
    got = unbroadcast(np.ones(g_shape), shape)
    assert got.shape == shape, f"unbroadcast to {shape}: shape {got.shape}"
    assert np.array_equal(got, expected), f"unbroadcast to {shape}: {got}, expected {expected}"


# --- a property over random shapes -------------------------------------------------------


@st.composite
def shapes(draw: st.DrawFn, *, min_ndim: int = 0, max_ndim: int = 4, max_side: int = 4) -> tuple:
    ndim = draw(st.integers(min_ndim, max_ndim))
    return tuple(draw(st.integers(1, max_side)) for _ in range(ndim))


@st.composite
def broadcast_partner(draw: st.DrawFn, shape: tuple) -> tuple:
    """A shape that broadcasts with `shape`: a suffix of it, some sides set to 1."""
    suffix = shape[draw(st.integers(0, len(shape))) :]
    return tuple(1 if draw(st.booleans()) else n for n in suffix)


@st.composite
def op_cases(draw: st.DrawFn) -> OpCase:
    op = draw(st.sampled_from(["add", "sub", "mul", "cat", "mean", "sum", "reshape", "permute"]))
    shape = draw(shapes(min_ndim=1))
    ndim = len(shape)
    if op in ("add", "sub", "mul"):
        other = draw(broadcast_partner(shape))
        in_shapes = (shape, other) if draw(st.booleans()) else (other, shape)
        args = ()
    elif op == "cat":
        n = draw(st.integers(1, 3))
        d = draw(st.integers(-ndim, ndim - 1))
        sides = [draw(st.integers(0, 3)) for _ in range(n)]
        in_shapes = tuple(shape[: d % ndim] + (s,) + shape[d % ndim + 1 :] for s in sides)
        args = (d, n)
    elif op in ("mean", "sum"):
        dims = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
        signed = tuple(d - ndim if draw(st.booleans()) else d for d in dims)
        in_shapes, args = (shape,), (signed or None, draw(st.booleans()))
    elif op == "reshape":
        target = list(draw(st.permutations(shape)))
        if draw(st.booleans()):
            target[draw(st.integers(0, ndim - 1))] = -1
        in_shapes, args = (shape,), (tuple(target),)
    else:
        in_shapes, args = (shape,), (tuple(draw(st.permutations(range(ndim)))),)
    seed = draw(st.integers(0, 2**16))
    return OpCase(f"{op}{args}{in_shapes}", op, args, in_shapes, seed)


@given(case=op_cases())
def test_op_property_random_shapes(case: OpCase) -> None:
    check_op(case)


# --- refusals: ValueError before arithmetic, where torch refuses too ----------------------


@dataclass(frozen=True)
class ErrorCase:
    id: str
    op: str
    args: tuple[Any, ...]
    in_shapes: tuple[tuple[int, ...], ...] | None  # None: the constructor raises
    match: str
    torch_refuses: bool = True  # False: torch computes garbage or accepts; we refuse


ERROR_CASES = [
    ErrorCase("add_no_broadcast", "add", (), ((2, 3), (4,)), "broadcast"),
    ErrorCase("add_wrong_count", "add", (3,), ((2, 3), (2, 3)), "3 inputs", torch_refuses=False),
    ErrorCase("add_zero_inputs", "add", (0,), None, "n_inputs >= 1", torch_refuses=False),
    ErrorCase("sub_no_broadcast", "sub", (), ((2, 3), (2,)), "broadcast"),
    ErrorCase("mul_no_broadcast", "mul", (), ((5, 1, 3), (2, 4)), "broadcast"),
    ErrorCase("div_by_zero", "div", (0.0,), None, "nonzero divisor", torch_refuses=False),
    ErrorCase("scale_by_nan", "scale", (float("nan"),), None, "finite", torch_refuses=False),
    ErrorCase("cat_sizes_differ", "cat", (1, 2), ((2, 3), (3, 3)), "equal except on dim 1"),
    ErrorCase("cat_dim_out_of_range", "cat", (2, 2), ((2, 3), (2, 3)), r"dim in \[-2, 1\]"),
    ErrorCase("cat_ranks_differ", "cat", (0, 2), ((2, 3), (3, 2, 1)), "one rank"),
    ErrorCase("cat_0d", "cat", (0, 2), ((), ()), "rank >= 1"),
    ErrorCase("cat_legacy_empty_1d", "cat", (0, 2), ((0,), (2, 3)), "legacy", torch_refuses=False),
    ErrorCase("mean_dim_out_of_range", "mean", (2, False), ((2, 3),), r"dims in \[-2, 1\]"),
    ErrorCase("mean_0d_dim1", "mean", (1, False), ((),), r"dims in \[-1, 0\]"),
    ErrorCase("mean_duplicate_dims", "mean", ((1, -1), False), ((2, 3),), "distinct"),
    ErrorCase(
        "mean_over_empty_axis", "mean", (1, False), ((2, 0),), "nonempty", torch_refuses=False
    ),
    ErrorCase("sum_duplicate_dims", "sum", ((0, 0), False), ((2, 3),), "distinct"),
    ErrorCase("reshape_wrong_numel", "reshape", ((4, 2),), ((2, 3),), "6 elements"),
    ErrorCase("reshape_indivisible", "reshape", ((4, -1),), ((6,),), "6 elements"),
    ErrorCase("reshape_two_minus1", "reshape", ((-1, -1),), ((2, 3),), "at most one -1"),
    ErrorCase("reshape_minus2", "reshape", ((-2, 3),), ((2, 3),), "sizes >= 0"),
    ErrorCase("reshape_ambiguous_0", "reshape", ((0, -1),), ((0,),), "ambiguous"),
    ErrorCase("permute_wrong_length", "permute", ((1, 0),), ((2, 3, 4),), "3-d input|2-d input"),
    ErrorCase("permute_duplicate", "permute", ((0, 0),), ((2, 3),), "permutation"),
    ErrorCase("permute_out_of_range", "permute", ((0, 2),), ((2, 3),), r"dims in \[-2, 1\]"),
    ErrorCase("transpose_out_of_range", "transpose", (0, 3), ((2, 3),), r"dim1 in \[-2, 1\]"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.id)
def test_refusals(case: ErrorCase) -> None:
    if case.in_shapes is None:
        with pytest.raises(ValueError, match=case.match):
            OPS[case.op](*case.args)
        return
    layer, torch_fn = OPS[case.op](*case.args)
    if case.torch_refuses:
        with pytest.raises((RuntimeError, ValueError, IndexError)):
            torch_fn(*(torch.zeros(s, dtype=torch.float64) for s in case.in_shapes))
    with pytest.raises(ValueError, match=case.match):
        layer.shape(*case.in_shapes)
    with pytest.raises(ValueError, match=case.match):  # forward checks before arithmetic
        layer.forward(*(np.zeros(s) for s in case.in_shapes))


# --- through a Network DAG: where a value fans out, its gradient is the sum of the routes ---


def _linear(rng: np.random.Generator, n_in: int, n_out: int) -> dict[str, np.ndarray]:
    return {
        "weight": rng.standard_normal((n_out, n_in)) / n_in**0.5,
        "bias": rng.standard_normal(n_out),
    }


@dataclass(frozen=True)
class DagCase:
    id: str
    build: Callable[[np.random.Generator, int], tuple[list[Node], Callable[..., dict]]]
    in_shape: tuple[int, ...]


def residual_on_input(rng: np.random.Generator, D: int) -> tuple[list[Node], Callable[..., dict]]:
    """out = x + relu(x Wᵀ + b): x feeds the Linear and the Add."""
    fc = _linear(rng, D, D)
    nodes = [
        Node("fc", Linear(**fc), (INPUT,), get_activation("relu")),
        Node("add", Add(), (INPUT, "fc")),
    ]

    def torch_forward(x: torch.Tensor, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        z = F.linear(x, p["fc.weight"], p["fc.bias"])
        return {"fc": z, "out": x + torch.relu(z)}

    return nodes, torch_forward


def residual_on_hidden(rng: np.random.Generator, D: int) -> tuple[list[Node], Callable[..., dict]]:
    """h = tanh(fc1 x); s = h + relu(fc2 h); out = fc3 s: h feeds fc2 and the Add."""
    fc1, fc2, fc3 = _linear(rng, D, D), _linear(rng, D, D), _linear(rng, D, 3)
    nodes = [
        Node("fc1", Linear(**fc1), (INPUT,), get_activation("tanh")),
        Node("fc2", Linear(**fc2), ("fc1",), get_activation("relu")),
        Node("add", Add(), ("fc1", "fc2")),
        Node("fc3", Linear(**fc3), ("add",)),
    ]

    def torch_forward(x: torch.Tensor, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        z1 = F.linear(x, p["fc1.weight"], p["fc1.bias"])
        h = torch.tanh(z1)
        z2 = F.linear(h, p["fc2.weight"], p["fc2.bias"])
        z3 = F.linear(h + torch.relu(z2), p["fc3.weight"], p["fc3.bias"])
        return {"fc1": z1, "fc2": z2, "fc3": z3, "out": z3}

    return nodes, torch_forward


def prenorm_block(rng: np.random.Generator, D: int) -> tuple[list[Node], Callable[..., dict]]:
    """A transformer-style block: out = mean over dim 1 of x + fc2(gelu(fc1(LayerNorm(x))))/2."""
    ln = {"weight": 1 + 0.1 * rng.standard_normal(D), "bias": 0.1 * rng.standard_normal(D)}
    fc1, fc2 = _linear(rng, D, 2 * D), _linear(rng, 2 * D, D)
    nodes = [
        Node("ln", LayerNorm(D, **ln), (INPUT,)),
        Node("fc1", Linear(**fc1), ("ln",), get_activation("gelu")),
        Node("fc2", Linear(**fc2), ("fc1",)),
        Node("half", Div(2.0), ("fc2",)),
        Node("add", Add(), (INPUT, "half")),
        Node("mean", Mean(1), ("add",)),
    ]

    def torch_forward(x: torch.Tensor, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        a = F.layer_norm(x, (D,), p["ln.weight"], p["ln.bias"])
        z1 = F.linear(a, p["fc1.weight"], p["fc1.bias"])
        z2 = F.linear(F.gelu(z1), p["fc2.weight"], p["fc2.bias"])
        return {"fc1": z1, "fc2": z2, "out": (x + z2 / 2.0).mean(1)}

    return nodes, torch_forward


def two_branches_cat(rng: np.random.Generator, D: int) -> tuple[list[Node], Callable[..., dict]]:
    """out = cat(relu(fc1 x), sigmoid(fc2 x) ⊙ x, dim=1): x feeds fc1, fc2 and the Mul."""
    fc1, fc2 = _linear(rng, D, 3), _linear(rng, D, D)
    nodes = [
        Node("fc1", Linear(**fc1), (INPUT,), get_activation("relu")),
        Node("fc2", Linear(**fc2), (INPUT,), get_activation("sigmoid")),
        Node("gate", Mul(), ("fc2", INPUT)),
        Node("cat", Cat(1, 2), ("fc1", "gate")),
    ]

    def torch_forward(x: torch.Tensor, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        z1 = F.linear(x, p["fc1.weight"], p["fc1.bias"])
        z2 = F.linear(x, p["fc2.weight"], p["fc2.bias"])
        return {"fc1": z1, "fc2": z2, "out": torch.cat([torch.relu(z1), torch.sigmoid(z2) * x], 1)}

    return nodes, torch_forward


DAG_CASES = [
    DagCase("residual_on_input", residual_on_input, (5, 4)),
    DagCase("residual_on_hidden", residual_on_hidden, (5, 4)),
    DagCase("prenorm_block", prenorm_block, (2, 3, 4)),
    DagCase("two_branches_cat", two_branches_cat, (5, 4)),
]


@pytest.mark.parametrize("case", DAG_CASES, ids=lambda c: c.id)
def test_network_dag_matches_torch(case: DagCase) -> None:
    rng = np.random.default_rng(3)
    nodes, torch_forward = case.build(rng, case.in_shape[-1])
    net = Network(nodes)
    x_np = rng.standard_normal(case.in_shape)

    params = {k: torch.tensor(v, requires_grad=True) for k, v in net.named_parameters().items()}
    x = torch.tensor(x_np, requires_grad=True)
    outs = torch_forward(x, params)
    for t in outs.values():
        t.retain_grad()
    up = rng.standard_normal(tuple(outs["out"].shape))
    outs["out"].backward(torch.tensor(up))

    assert net.shapes(case.in_shape)[net.output] == tuple(outs["out"].shape), case.id
    output, tape = net.forward(x_np)
    assert_close("output", case.id, output, _np(outs["out"]))
    gradients = net.backward(tape, up)
    assert_close("∂L/∂input", case.id, gradients.dL_dinput, _np(x.grad))
    grads = gradients.flat()
    assert set(grads) == set(params), f"param names [{case.id}]: {set(grads)} vs {set(params)}"
    for name, p in params.items():
        assert_close(f"∂L/∂{name}", case.id, grads[name], _np(p.grad))
    for name, z in outs.items():
        if name != "out":
            assert_close(f"δ of {name}", case.id, gradients.deltas[name], _np(z.grad))


def test_fan_out_gradient_is_the_sum_of_both_routes() -> None:
    """x → fc → relu → Add(x, ·): ∂L/∂x = δ_add (the skip) + δ_fc W (through the Linear)."""
    rng = np.random.default_rng(11)
    nodes, _ = residual_on_input(rng, 4)
    net = Network(nodes)
    x = rng.standard_normal((5, 4))
    up = rng.standard_normal((5, 4))
    _, tape = net.forward(x)
    gradients = net.backward(tape, up)
    skip = gradients.deltas["add"]
    through_fc = gradients.deltas["fc"] @ net.nodes[0].layer.params["weight"]
    assert_close(
        "∂L/∂x = skip + through fc", "residual_on_input", gradients.dL_dinput, skip + through_fc
    )
    assert np.abs(through_fc).max() > 0.1, "the route through fc should carry gradient here"
    assert np.array_equal(skip, up), "the skip route hands δ back unchanged"
