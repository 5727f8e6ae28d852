"""The per-call shortcuts of the small ops against the NumPy calls they stand for, bit for bit:
the normalisation mean (Σ ÷ n), zeros_like, attention's softmax when no row is masked,
Permute's inverse, broadcasting of equal shapes, the network's freeing plan and steps, the
class loss's move of the class axis (np.moveaxis), and the frozen classes' own __init__s."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from manual_bp.losses import CrossEntropyLoss, MSELoss
from manual_bp.losses.classification import _class_axis, _class_axis_to
from manual_bp.network import INPUT, Network, Node
from manual_bp.ops import Linear
from manual_bp.ops.activations import IDENTITY, Activation, get_activation
from manual_bp.ops.arithmetic import Add, _broadcast_shape, unbroadcast
from manual_bp.ops.attention import _weights
from manual_bp.ops.base import zeros_like
from manual_bp.ops.graph import Parameter
from manual_bp.ops.normalization.common import _mean
from manual_bp.ops.shape import Permute
from torch_ref.registry.core import Param, Ref


def _layouts(x: np.ndarray) -> dict[str, np.ndarray]:
    """The same values laid out four ways: C order, Fortran order, transposed, strided."""
    return {
        "C": np.ascontiguousarray(x),
        "F": np.asfortranarray(x),
        "transposed": np.ascontiguousarray(x.T).T,
        "strided": np.repeat(x, 2, axis=-1)[..., ::2],
    }


@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_mean_is_numpys_mean_and_var_bit_for_bit(shape: list[int], seed: int, data) -> None:
    x0 = np.random.default_rng(seed).standard_normal(shape) * 10.0 ** (seed % 7 - 3)
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    for layout, x in _layouts(x0).items():
        mu = _mean(x, axes)
        assert np.array_equal(mu, x.mean(axis=axes, keepdims=True)), (layout, axes)
        centred = x - mu
        var = _mean(centred * centred, axes)  # LayerNorm's variance
        assert np.array_equal(var, x.var(axis=axes, keepdims=True)), (layout, axes)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int64])
def test_mean_of_other_dtypes_is_numpys_own(dtype: type) -> None:
    x = (np.arange(24).reshape(2, 3, 4) * 7 + 3).astype(dtype)
    assert np.array_equal(_mean(x, (1, 2)), x.mean(axis=(1, 2), keepdims=True))
    assert _mean(x, (1, 2)).dtype == x.mean(axis=(1, 2), keepdims=True).dtype


def test_mean_over_no_entries_warns_as_numpy() -> None:
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning, match="Mean of empty"):
        assert np.isnan(_mean(np.zeros((2, 0)), (1,))).all()


@pytest.mark.parametrize("layout", ["C", "F", "transposed", "strided"])
def test_zeros_like_is_numpys(layout: str) -> None:
    a = _layouts(np.random.default_rng(0).standard_normal((5, 3)))[layout]
    for x in (a, a.astype(np.float32), a[:, 0], np.asarray(3.0)):
        z, ref = zeros_like(x), np.zeros_like(x)
        assert np.array_equal(z, ref) and z.dtype == ref.dtype and z.strides == ref.strides


def _softmax_with_masks(S: np.ndarray) -> np.ndarray:
    """The textbook form with every empty-row guard in place."""
    top = S.max(axis=-1, keepdims=True)
    empty = np.isneginf(top)
    e = np.exp(S - np.where(empty, 0.0, top))
    return np.where(empty, 0.0, e / np.where(empty, 1.0, e.sum(axis=-1, keepdims=True)))


@pytest.mark.parametrize("masked_row", [False, True])
def test_attention_weights_without_empty_rows_are_the_guarded_formula(masked_row: bool) -> None:
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal((2, 3, 5, 4)) * 4, rng.standard_normal((2, 3, 6, 4)) * 4
    m = np.ones((5, 6), dtype=bool)
    if masked_row:
        m[2] = False
    P, _ = _weights(q, k, m, 0.5, False, 1, (2, 3, 5, 6), "zero")
    S = np.where(m, 0.5 * (q @ np.swapaxes(k, -1, -2)), -np.inf)
    assert np.array_equal(P, _softmax_with_masks(S))


def test_permute_backward_is_the_argsort_inverse() -> None:
    delta = np.random.default_rng(2).standard_normal((2, 3, 4, 5))
    for dims in [(0, 1, 2, 3), (2, 0, 3, 1), (3, 2, 1, 0), (1, -1, 0, 2)]:
        perm = Permute(dims)._perm(delta.shape)
        back, _ = Permute(dims).backward(delta, perm)
        ref = delta.transpose(np.argsort(perm))
        assert back.shape == ref.shape and back.strides == ref.strides
        assert np.array_equal(back, ref)


@pytest.mark.parametrize(
    "shapes", [[(2, 3)], [(2, 3), (2, 3)], [(2, 1, 3), (4, 1)], [(), (3,)], [(0, 2), (1, 2)]]
)
def test_broadcast_of_equal_and_unequal_shapes(shapes: list[tuple[int, ...]]) -> None:
    out = _broadcast_shape(shapes)
    assert out == np.broadcast_shapes(*shapes)
    g = np.ones(out)
    for s in shapes:
        assert unbroadcast(g, s).shape == s
    assert unbroadcast(g, out) is g


def _kept_by_counting(net: Network) -> set[str]:
    """The values forward(trace=False) keeps, by the readers count it used to take per pass."""
    readers = dict.fromkeys((*net.inputs, *(n.name for n in net.nodes)), 0)
    for node in net.nodes:
        for i in node.inputs:
            readers[i] += 1
    reads_a = {n.name for n in net.nodes if n.act.grad_from_output is not None}
    kept = set(net.inputs)
    for node in net.nodes:
        kept.add(node.name)
        for name in (*node.inputs, node.name):
            readers[name] -= name in node.inputs
            if readers[name] == 0 and name != net.output and name not in reads_a:
                kept.discard(name)
    return kept


@given(st.lists(st.tuples(st.integers(0, 99), st.integers(0, 99), st.booleans()), max_size=8))
def test_freeing_plan_keeps_what_the_readers_count_kept(picks) -> None:
    rng = np.random.default_rng(0)
    tanh, relu = get_activation("tanh"), get_activation("relu")
    nodes, names = [Node("0", Linear(rng.standard_normal((3, 3))), (INPUT,), tanh)], [INPUT, "0"]
    for k, (i, j, add) in enumerate(picks, start=1):
        a, b = names[i % len(names)], names[j % len(names)]
        act = (tanh, relu)[k % 2]
        layer = Add() if add else Linear(rng.standard_normal((3, 3)))
        nodes.append(Node(str(k), layer, (a, b) if add else (a,), act))
        names.append(str(k))
    net = Network(nodes, output=names[-1])
    x = rng.standard_normal((2, 3))
    _, tape = net.forward(x, trace=False)
    assert set(tape.a) == _kept_by_counting(net)
    lean = net.loss_and_gradients(x, np.zeros((2, 3)), MSELoss(), trace=False)
    full = net.loss_and_gradients(x, np.zeros((2, 3)), MSELoss())
    assert lean.grads.keys() == full.grads.keys()
    assert all(np.array_equal(g, full.grads[k]) for k, g in lean.grads.items())


@given(
    st.lists(
        st.tuples(
            st.integers(0, 99), st.integers(0, 99), st.sampled_from(["linear", "add", "leaf"])
        ),
        max_size=8,
    )
)
def test_steps_are_what_they_say(picks) -> None:
    """What Network works out once per node (by set inclusion, by position), against the
    definitions in _Step: f′ from z, and every input a network input (a leaf is not)."""
    rng = np.random.default_rng(0)
    acts = (IDENTITY, get_activation("tanh"), get_activation("exp"))  # (none, from z, from a)
    names = ["x", "y"]
    nodes = []
    for k, (i, j, kind) in enumerate(picks):
        a, b = names[i % len(names)], names[j % len(names)]
        if kind == "leaf":
            layer, inputs = Parameter(rng.standard_normal(3)), ()
        else:
            layer = Add() if kind == "add" else Linear(rng.standard_normal((3, 3)))
            inputs = (a, b) if kind == "add" else (a,)
        nodes.append(Node(str(k), layer, inputs, acts[k % 3]))
        names.append(str(k))
    if not nodes:
        nodes.append(Node("0", Add(), ("x", "y")))
    net = Network(nodes, inputs=("x", "y"))
    for step, node in zip(net._steps, net.nodes, strict=True):
        assert step.node is node
        assert step.keeps_z == (node.act is not IDENTITY and node.act.grad_from_output is None)
        fed = bool(node.inputs) and all(s in ("x", "y") for s in node.inputs)
        assert step.fed_by_inputs == fed, node


def test_unweighted_target_weights_are_the_weighted_ones_with_weight_one() -> None:
    t = np.array([[0, 3, -100], [2, -100, 1]])
    unweighted = CrossEntropyLoss(ignore_index=-100)
    ones = CrossEntropyLoss(weight=np.ones(4), ignore_index=-100)
    for a, b in zip(unweighted._index_weights(4, t), ones._index_weights(4, t), strict=True):
        assert np.array_equal(a, b) and a.dtype == b.dtype


@pytest.mark.parametrize("shape", [(5,), (2, 5), (2, 5, 3), (2, 5, 3, 4)])
def test_class_axis_to_is_moveaxis(shape: tuple[int, ...]) -> None:
    A = np.random.default_rng(3).standard_normal(shape)
    for layout, a in _layouts(A).items():
        axis = _class_axis(a.ndim)
        moved, ref = _class_axis_to(a, axis), np.moveaxis(a, -1, axis)
        assert moved.shape == ref.shape and moved.strides == ref.strides, layout
        assert np.shares_memory(moved, a) and np.array_equal(moved, ref), layout


@pytest.mark.parametrize("cls", [Ref, Param, Node, Activation], ids=lambda c: c.__name__)
def test_a_hand_written_frozen_init_sets_every_field(cls) -> None:
    """Ref, Param, Node and Activation set their fields through __dict__ in an __init__ of
    their own (the dataclass's is slower): its parameters are the fields, in order, with the
    same defaults, and an object made by it equals one with every field given."""
    fields = dataclasses.fields(cls)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        default = f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty
        if f.default_factory is not dataclasses.MISSING:
            default = None  # (Activation's options: None, made {} inside)
        assert p.default == default, f.name
    values = [object() for _ in fields]
    made = cls(*values)
    assert all(getattr(made, f.name) is v for f, v in zip(fields, values, strict=True))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, fields[0].name, None)
