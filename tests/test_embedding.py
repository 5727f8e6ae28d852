"""Embedding and EmbeddingBag against torch.autograd in float64: named option cases, exact
cases with integer-valued weights (ties in max bags), sparse=True against torch's sparse
gradient made dense, a hypothesis property over bags and options, refusals as data, and
planted bugs that must fail."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import _compare
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from _layer_check import TOL, check_layer
from hypothesis import given
from hypothesis import strategies as st

from manual_bp.network import INPUT, Network, Node
from manual_bp.ops import embedding
from manual_bp.ops.arithmetic import Add
from manual_bp.ops.attention import ScaledDotProductAttention
from manual_bp.ops.embedding import Embedding, EmbeddingBag
from manual_bp.ops.graph import Parameter
from manual_bp.ops.linear import Linear
from manual_bp.ops.shape import Index

NUM, DIM = 6, 3


@dataclass(frozen=True)
class Case:
    id: str
    ids: Any
    options: dict[str, Any] = field(default_factory=dict)
    offsets: Any = None
    psw: bool = False  # per-sample weights (an input that gets a gradient)
    bag: bool = False  # EmbeddingBag, else Embedding
    integers: bool = False  # integer-valued weights and δ: exact, ties in max bags


CASES = [
    Case("tokens_2d", [[0, 2, 5], [1, 2, 2]]),
    Case("ids_1d_repeats", [3, 3, 3, 0]),
    Case("ids_0d", np.array(4)),
    Case("ids_empty", np.zeros((2, 0), dtype=np.int64)),
    Case("padding_idx", [[0, 2, 5], [1, 2, 2]], {"padding_idx": 2}),
    Case("padding_idx_negative", [[0, 2, 5], [1, 2, 2]], {"padding_idx": -1}),
    Case("scale_grad_by_freq", [[0, 2, 5], [1, 2, 2]], {"scale_grad_by_freq": True}),
    Case(
        "freq_and_padding", [[0, 2, 5], [1, 0, 2]], {"scale_grad_by_freq": True, "padding_idx": 0}
    ),
    Case("exact_integers", [[0, 2, 5], [1, 2, 2]], {"scale_grad_by_freq": True}, integers=True),
    Case("max_norm", [[0, 2, 5], [1, 2, 2]], {"max_norm": 1.0}),
    Case(
        "max_norm_p1_padding",
        [[0, 2, 5], [1, 2, 2]],
        {"max_norm": 1.2, "norm_type": 1.0, "padding_idx": 5},
    ),
    # --- EmbeddingBag ---
    Case("bag_2d_mean", [[0, 2, 5], [1, 2, 2]], bag=True),
    Case("bag_2d_sum", [[0, 2, 5], [1, 2, 2]], {"mode": "sum"}, bag=True),
    Case("bag_2d_max", [[0, 2, 5], [1, 2, 2]], {"mode": "max"}, bag=True),
    Case(
        "bag_offsets_empty_bag",
        [0, 1, 1, 2, 3, 0],
        {"mode": "sum"},
        offsets=[0, 3, 3],
        bag=True,
    ),
    Case("bag_offsets_mean", [0, 1, 1, 2, 3, 0, 5], offsets=[0, 2, 2, 6], bag=True),
    Case(
        "bag_include_last_offset",
        [0, 1, 1, 2, 3, 0],
        {"mode": "sum", "include_last_offset": True},
        offsets=[0, 3, 3, 6],
        bag=True,
    ),
    Case(
        "bag_max_ties_first_wins",
        [0, 1, 1, 2, 3, 0, 4, 4, 5],
        {"mode": "max"},
        offsets=[0, 3, 3, 6],
        bag=True,
        integers=True,
    ),
    Case(
        "bag_per_sample_weights",
        [0, 1, 1, 2, 3, 0],
        {"mode": "sum"},
        offsets=[0, 3, 3],
        psw=True,
        bag=True,
    ),
    Case(
        "bag_psw_padding",
        [[0, 1, 1], [2, 1, 0]],
        {"mode": "sum", "padding_idx": 1},
        psw=True,
        bag=True,
    ),
    Case("bag_mean_padding_all", [[1, 1], [0, 2]], {"padding_idx": 1}, bag=True),
    Case(
        "bag_max_norm_max",
        [0, 1, 1, 2, 3, 0],
        {"mode": "max", "max_norm": 0.8},
        offsets=[0, 3],
        bag=True,
    ),
    Case(
        "bag_max_norm_psw",
        [0, 1, 1, 2, 3, 0],
        {"mode": "sum", "max_norm": 1.0},
        offsets=[0, 3, 3],
        psw=True,
        bag=True,
    ),
    Case("bag_max_padding", [[1, 3], [1, 1]], {"mode": "max", "padding_idx": 1}, bag=True),
    Case(
        "bag_max_exact_padding",
        [[1, 3, 0], [2, 1, 4]],
        {"mode": "max", "padding_idx": -5},
        bag=True,
        integers=True,
    ),
]


def _make(case: Case, seed: int = 0) -> tuple[Any, list[np.ndarray], dict, Any]:
    rng = np.random.default_rng(seed)
    W = (
        rng.integers(-2, 3, (NUM, DIM)).astype(float)
        if case.integers
        else rng.standard_normal((NUM, DIM))
    )
    inputs = [np.asarray(case.ids, dtype=np.int64)]
    if case.offsets is not None:
        inputs.append(np.asarray(case.offsets, dtype=np.int64))
    if case.psw:
        inputs.append(rng.standard_normal(inputs[0].shape))
    if not case.bag:
        layer = Embedding(W, **case.options)

        def torch_fn(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            return F.embedding(ids, weight, **case.options)

    else:
        layer = EmbeddingBag(
            W,
            has_offsets=case.offsets is not None,
            has_per_sample_weights=case.psw,
            **case.options,
        )

        def torch_fn(ids: torch.Tensor, *rest: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            offsets = rest[0] if case.offsets is not None else None
            psw = rest[-1] if case.psw else None
            return F.embedding_bag(ids, weight, offsets, per_sample_weights=psw, **case.options)

    return layer, inputs, {"weight": torch.tensor(W)}, torch_fn


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_embedding_matches_torch(case: Case) -> None:
    layer, inputs, params, torch_fn = _make(case)
    tol = {"rtol": 0, "atol": 0} if case.integers else TOL
    check_layer(
        case.id, layer, inputs, torch_fn, params=params, tol=tol, integer_delta=case.integers
    )


@pytest.mark.parametrize("bag", [False, True], ids=["embedding", "embedding_bag"])
def test_sparse_gives_the_dense_gradient(bag: bool) -> None:
    """sparse=True: torch's gradient is a sparse COO tensor; ours is its dense value."""
    ids = torch.tensor([[0, 2, 2], [5, 2, 1]])
    module = (
        nn.EmbeddingBag(NUM, DIM, mode="sum", sparse=True)
        if bag
        else nn.Embedding(NUM, DIM, sparse=True)
    ).double()
    up = torch.randn(
        module(ids).shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    module(ids).backward(up)
    assert module.weight.grad.is_sparse
    W = module.weight.detach().numpy()
    layer = EmbeddingBag(W, "sum", sparse=True) if bag else Embedding(W, sparse=True)
    z, cache = layer.forward(ids.numpy())
    _, grads = layer.backward(up.numpy(), cache)
    np.testing.assert_allclose(
        grads["weight"], module.weight.grad.to_dense().numpy(), rtol=1e-12, atol=1e-14
    )


# --- a property over bags and options -----------------------------------------------------


@st.composite
def bag_cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(0, 8))
    ids = draw(st.lists(st.integers(0, NUM - 1), min_size=n, max_size=n))
    mode = draw(st.sampled_from(["sum", "mean", "max"]))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    last = draw(st.booleans())
    offsets = [0, *cuts, n] if last else [0, *cuts]
    options: dict[str, Any] = {"mode": mode, "include_last_offset": last}
    if draw(st.booleans()):
        options["padding_idx"] = draw(st.integers(-NUM, NUM - 1))
    return Case(
        f"bag {ids} {offsets} {options}",
        ids,
        options,
        offsets=offsets,
        psw=mode == "sum" and draw(st.booleans()),
        bag=True,
        integers=draw(st.booleans()),
    )


@given(case=bag_cases(), seed=st.integers(0, 2**16))
def test_embedding_bag_property(case: Case, seed: int) -> None:
    layer, inputs, params, torch_fn = _make(case, seed)
    exact = case.integers and not case.psw and case.options["mode"] != "mean"  # no division
    tol = {"rtol": 0, "atol": 0} if exact else TOL
    check_layer(
        case.id,
        layer,
        inputs,
        torch_fn,
        params=params,
        tol=tol,
        seed=seed,
        integer_delta=case.integers,
    )


# --- refusals --------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    id: str
    build: Any  # () -> layer (raises when `inputs` is None)
    inputs: tuple[Any, ...] | None
    match: str
    torch_fn: Any = None  # the same call in torch, which refuses too


W0 = np.zeros((NUM, DIM))
T0 = torch.zeros(NUM, DIM)


REFUSALS = [
    Refusal(
        "bag_scale_grad_by_freq",
        lambda: EmbeddingBag(W0, "mean", scale_grad_by_freq=True),
        None,
        "not the ids' frequencies",
    ),
    Refusal(
        "psw_with_mean",
        lambda: EmbeddingBag(W0, "mean", has_per_sample_weights=True),
        None,
        "only supported for mode 'sum'",
        lambda: F.embedding_bag(torch.tensor([[0]]), T0, per_sample_weights=torch.ones(1, 1)),
    ),
    Refusal("bag_mode", lambda: EmbeddingBag(W0, "min"), None, "mode 'sum', 'mean' or 'max'"),
    Refusal("weight_rank", lambda: Embedding(np.zeros(3)), None, "num_embeddings, embedding_dim"),
    Refusal(
        "padding_out_of_range",
        lambda: Embedding(W0, padding_idx=NUM),
        None,
        r"padding_idx in \[-6, 6\)",
        lambda: F.embedding(torch.tensor([0]), T0, padding_idx=NUM),
    ),
    Refusal(
        "float_ids",
        lambda: Embedding(W0),
        (np.array([0.0]),),
        "integer ids",
        lambda: F.embedding(torch.tensor([0.0]), T0),
    ),
    Refusal(
        "id_too_large",
        lambda: Embedding(W0),
        (np.array([0, NUM]),),
        "got 6",
        lambda: F.embedding(torch.tensor([0, NUM]), T0),
    ),
    Refusal(
        "id_negative",
        lambda: Embedding(W0),
        (np.array([-1]),),
        "got -1",
        lambda: F.embedding(torch.tensor([-1]), T0),
    ),
    Refusal(
        "offsets_not_from_0",
        lambda: EmbeddingBag(W0, has_offsets=True),
        (np.array([0, 1, 2]), np.array([1, 2])),
        "starting at 0",
        lambda: F.embedding_bag(torch.tensor([0, 1, 2]), T0, torch.tensor([1, 2])),
    ),
    Refusal(
        "offsets_beyond_ids",
        lambda: EmbeddingBag(W0, has_offsets=True),
        (np.array([0, 1, 2]), np.array([0, 4])),
        "got 4",
        lambda: F.embedding_bag(torch.tensor([0, 1, 2]), T0, torch.tensor([0, 4])),
    ),
    Refusal(
        "offsets_decreasing",  # torch computes a bag [2:1] from them; we refuse
        lambda: EmbeddingBag(W0, has_offsets=True),
        (np.array([0, 1, 2]), np.array([0, 2, 1])),
        "non-decreasing",
    ),
    Refusal(
        "last_offset_not_n",  # torch's CPU kernel ignores the last offset's value; we refuse
        lambda: EmbeddingBag(W0, has_offsets=True, include_last_offset=True),
        (np.array([0, 1, 2]), np.array([0, 2])),
        "ending at 3",
    ),
    Refusal(
        "1d_without_offsets",
        lambda: EmbeddingBag(W0),
        (np.array([0, 1, 2]),),
        "2-d ids",
        lambda: F.embedding_bag(torch.tensor([0, 1, 2]), T0),
    ),
    Refusal(
        "2d_with_offsets",
        lambda: EmbeddingBag(W0, has_offsets=True),
        (np.array([[0, 1]]), np.array([0])),
        "1-d ids and 1-d offsets",
        lambda: F.embedding_bag(torch.tensor([[0, 1]]), T0, torch.tensor([0])),
    ),
    Refusal(
        "psw_shape",
        lambda: EmbeddingBag(W0, "sum", has_per_sample_weights=True),
        (np.array([[0, 1]]), np.ones((1, 3))),
        "per_sample_weights of the ids' shape",
        lambda: F.embedding_bag(
            torch.tensor([[0, 1]]), T0, mode="sum", per_sample_weights=torch.ones(1, 3)
        ),
    ),
]


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: c.id)
def test_refusals(case: Refusal) -> None:
    if case.torch_fn is not None:
        with pytest.raises((RuntimeError, ValueError, IndexError, AssertionError)):
            case.torch_fn()
    if case.inputs is None:
        with pytest.raises(ValueError, match=case.match):
            case.build()
        return
    layer = case.build()
    with pytest.raises(ValueError, match=case.match):  # before any arithmetic
        layer.shape(*(np.shape(x) for x in case.inputs))
        layer.forward(*case.inputs)


def test_scale_grad_by_freq_of_embedding_bag_is_not_the_frequency() -> None:
    """Why EmbeddingBag's scale_grad_by_freq is refused: rows 2 and 3 occur once each, and
    torch halves their gradient."""
    W = torch.zeros(4, 2, dtype=torch.float64, requires_grad=True)
    out = F.embedding_bag(
        torch.tensor([0, 1, 1, 2, 3, 0]),
        W,
        torch.tensor([0, 3]),
        mode="sum",
        scale_grad_by_freq=True,
    )
    out.backward(torch.ones_like(out))
    assert W.grad[2, 0].item() == 0.5 and W.grad[3, 0].item() == 0.5, W.grad


# --- planted bugs -------------------------------------------------------------------------


def _last_wins(rows: np.ndarray, top: np.ndarray, bag: np.ndarray) -> np.ndarray:
    entry = np.where(rows == top[bag], np.arange(len(rows))[:, None], -1)
    last = np.full(top.shape, -1)
    np.maximum.at(last, bag, entry)  # BUG: the last entry to reach the max wins
    return last


def _padding_row_kept(self: Embedding, delta: np.ndarray, ids: np.ndarray) -> dict:
    padding, self.padding_idx = self.padding_idx, None
    try:
        return _ORIGINAL(self, delta, ids)  # BUG: the padding row gets its gradient
    finally:
        self.padding_idx = padding


def _freq_ignored(self: Embedding, delta: np.ndarray, ids: np.ndarray) -> dict:
    scale, self.scale_grad_by_freq = self.scale_grad_by_freq, False
    try:
        return _ORIGINAL(self, delta, ids)  # BUG: no division by the count
    finally:
        self.scale_grad_by_freq = scale


_ORIGINAL = Embedding.param_grads


@pytest.mark.parametrize(
    "case_id, target, name, bug",
    [
        ("bag_max_ties_first_wins", embedding, "_winners", _last_wins),
        ("padding_idx", Embedding, "param_grads", _padding_row_kept),
        ("scale_grad_by_freq", Embedding, "param_grads", _freq_ignored),
    ],
)
def test_planted_bug_fails(case_id: str, target: Any, name: str, bug: Any, monkeypatch) -> None:
    monkeypatch.setattr(target, name, bug)
    case = next(c for c in CASES if c.id == case_id)
    layer, inputs, params, torch_fn = _make(case)
    with pytest.raises(AssertionError):
        check_layer(
            case.id, layer, inputs, torch_fn, params=params, tol=TOL, integer_delta=case.integers
        )


# --- wired into a Network: token and position embeddings under causal attention ---------------


def test_gpt_style_block_as_a_network() -> None:
    """ids → wte(ids) + wpe[:T] (a model tensor, sliced) → causal attention → head: the integer
    input gets no δ, the embedding table and the sliced parameter get theirs."""
    rng = np.random.default_rng(0)
    V, T_max, D, T = 7, 8, 4, 5
    wte, wpe = rng.standard_normal((V, D)), rng.standard_normal((T_max, D))
    head_w, head_b = rng.standard_normal((V, D)), rng.standard_normal(V)
    ids = rng.integers(0, V, (2, T))
    nodes = [
        Node("wte", Embedding(wte), (INPUT,)),
        Node("wpe", Parameter(wpe), ()),
        Node("pos", Index(slice(0, T)), ("wpe",)),
        Node("x", Add(), ("wte", "pos")),
        Node("attn", ScaledDotProductAttention(is_causal=True), ("x", "x", "x")),
        Node("head", Linear(head_w, head_b), ("attn",)),
    ]
    net = Network(nodes)
    up = rng.standard_normal((2, T, V))
    z, tape = net.forward(ids)
    g = net.backward(tape, up)

    p = {
        k: torch.tensor(v, requires_grad=True)
        for k, v in dict(wte=wte, wpe=wpe, w=head_w, b=head_b).items()
    }
    x = F.embedding(torch.tensor(ids), p["wte"]) + p["wpe"][:T]
    out = F.linear(F.scaled_dot_product_attention(x, x, x, is_causal=True), p["w"], p["b"])
    out.backward(torch.tensor(up))
    _compare.assert_close("output", "gpt", z, out.detach().numpy(), **TOL)
    assert g.dL_dinputs == {}, "integer token ids carry no gradient"
    grads = g.flat()
    for ours, theirs in [
        ("wte.weight", "wte"),
        ("wpe.value", "wpe"),
        ("head.weight", "w"),
        ("head.bias", "b"),
    ]:
        _compare.assert_close(f"∂L/∂{theirs}", "gpt", grads[ours], p[theirs].grad.numpy(), **TOL)
