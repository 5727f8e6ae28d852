"""Scaled dot-product attention against torch.autograd in float64: named cases over every
option (masks bool and float and broadcast, is_causal with L ≠ S, scale, enable_gqa, batch
broadcasting, fully masked rows, the weights as a second output), a hypothesis property over
shapes and options, refusals as data, and planted bugs that must fail."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import _compare
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _layer_check import TOL, check_layer
from hypothesis import given
from hypothesis import strategies as st

from manual_bp.network import INPUT, Network, Node
from manual_bp.ops import attention
from manual_bp.ops.attention import ScaledDotProductAttention
from manual_bp.ops.graph import Select
from manual_bp.ops.linear import Linear
from manual_bp.ops.shape import Flatten, Rearrange, Split, Transpose, Unflatten


@dataclass(frozen=True)
class Case:
    id: str
    q: tuple[int, ...]
    k: tuple[int, ...]
    v: tuple[int, ...]
    mask: str | None = None  # "bool", "float", "float_inf" (some −∞), "bool_empty_row"
    mask_shape: tuple[int, ...] | None = None
    is_causal: bool = False
    scale: float | None = None
    enable_gqa: bool = False
    need_weights: bool = False
    unused: tuple[int, ...] = ()


def _mask(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if kind.startswith("bool"):
        m = rng.random(shape) < 0.6
        m[..., 0] = True  # every row sees a key ...
        if kind == "bool_empty_row":
            m[..., 1, :] = False  # ... but row 1, which sees none
        return m
    m = rng.standard_normal(shape)
    if kind == "float_inf":
        m[rng.random(shape) < 0.3] = -np.inf
        m[..., 0] = 0.0
        m[..., -1, :] = -np.inf  # a row of −∞ only: torch ≥ 2.5 gives it zeros
    return m


def _inputs(case: Case, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(s) for s in (case.q, case.k, case.v)]
    if case.mask is not None:
        xs.append(_mask(case.mask, case.mask_shape, rng))
    return xs


def _layer(case: Case) -> ScaledDotProductAttention:
    return ScaledDotProductAttention(
        has_mask=case.mask is not None,
        is_causal=case.is_causal,
        scale=case.scale,
        enable_gqa=case.enable_gqa,
        need_weights=case.need_weights,
    )


def _torch_fn(case: Case):
    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *mask: torch.Tensor) -> Any:
        m = mask[0] if mask else None
        if not case.need_weights:
            return F.scaled_dot_product_attention(
                q, k, v, m, is_causal=case.is_causal, scale=case.scale, enable_gqa=case.enable_gqa
            )
        # the weights too: softmax(scale·QKᵀ + M), as MultiheadAttention forms them
        scale = 1 / math.sqrt(q.shape[-1]) if case.scale is None else case.scale
        if case.enable_gqa:
            k = k.repeat_interleave(q.shape[-3] // k.shape[-3], -3)
            v = v.repeat_interleave(q.shape[-3] // v.shape[-3], -3)
        s = scale * q @ k.transpose(-1, -2)
        if case.is_causal:
            m = torch.ones(s.shape[-2:], dtype=torch.bool).tril()
        if m is not None:
            s = s.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else s + m
        p = torch.softmax(s, -1)
        return p @ v, p

    return sdpa


CASES = [
    Case("basic_4d", (2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7)),
    Case("3d", (2, 4, 5), (2, 6, 5), (2, 6, 3)),
    Case("2d", (4, 5), (6, 5), (6, 2)),
    Case("one_query", (2, 1, 5), (2, 6, 5), (2, 6, 5)),
    Case("one_key", (2, 4, 5), (2, 1, 5), (2, 1, 3)),
    Case("bool_mask_LS", (2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7), "bool", (4, 6)),
    Case("bool_key_padding", (2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7), "bool", (2, 1, 1, 6)),
    Case("bool_full", (2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7), "bool", (2, 3, 4, 6)),
    Case("float_mask_grad", (2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7), "float", (3, 4, 6)),
    Case("float_mask_batch", (2, 4, 5), (2, 6, 5), (2, 6, 3), "float", (2, 4, 6)),
    Case("float_mask_row_bias", (2, 4, 5), (2, 6, 5), (2, 6, 3), "float", (1, 6)),
    Case("float_mask_with_inf", (2, 4, 5), (2, 6, 5), (2, 6, 3), "float_inf", (2, 4, 6)),
    Case("bool_fully_masked_row", (2, 4, 5), (2, 6, 5), (2, 6, 3), "bool_empty_row", (4, 6)),
    Case("causal_square", (2, 3, 5, 4), (2, 3, 5, 4), (2, 3, 5, 4), is_causal=True),
    Case("causal_L_lt_S_top_left", (2, 3, 4), (2, 6, 4), (2, 6, 2), is_causal=True),
    Case("causal_L_gt_S", (2, 6, 4), (2, 3, 4), (2, 3, 2), is_causal=True),
    Case("scale", (2, 4, 5), (2, 6, 5), (2, 6, 3), scale=0.3),
    Case("scale_zero_uniform", (2, 4, 5), (2, 6, 5), (2, 6, 3), scale=0.0),
    Case("gqa", (2, 6, 4, 5), (2, 2, 3, 5), (2, 2, 3, 4), enable_gqa=True),
    Case("gqa_causal", (1, 4, 5, 3), (1, 1, 5, 3), (1, 1, 5, 2), is_causal=True, enable_gqa=True),
    Case("gqa_equal_heads", (2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7), enable_gqa=True),
    Case("batch_broadcast_kv", (2, 3, 4, 5), (1, 3, 6, 5), (3, 6, 7)),
    Case("batch_broadcast_q", (4, 5), (2, 3, 6, 5), (2, 3, 6, 7)),
    Case("empty_keys", (2, 4, 5), (2, 0, 5), (2, 0, 3)),
    Case("weights", (2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7), need_weights=True),
    Case("weights_masked", (2, 4, 5), (2, 6, 5), (2, 6, 3), "bool", (2, 4, 6), need_weights=True),
    Case("weights_only", (2, 4, 5), (2, 6, 5), (2, 6, 3), need_weights=True, unused=(0,)),
    Case("output_only", (2, 4, 5), (2, 6, 5), (2, 6, 3), need_weights=True, unused=(1,)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_sdpa_matches_torch(case: Case) -> None:
    check_layer(case.id, _layer(case), _inputs(case), _torch_fn(case), unused=case.unused)


def test_fully_masked_rows_are_zero_as_torch() -> None:
    """torch ≥ 2.5 gives a row with every key masked P = 0: O = 0 there, and no gradient."""
    case = next(c for c in CASES if c.id == "bool_fully_masked_row")
    q, k, v, m = _inputs(case)
    out = F.scaled_dot_product_attention(*(torch.tensor(x) for x in (q, k, v, m)))
    assert torch.all(out[:, 1] == 0), "this torch does not zero fully masked rows"
    z, _ = _layer(case).forward(q, k, v, m)
    assert np.all(z[:, 1] == 0)
    with pytest.raises(ValueError, match="every key masked"):
        ScaledDotProductAttention(has_mask=True, empty_rows="refuse").forward(q, k, v, m)


# --- a property over shapes and options ---------------------------------------------------


@st.composite
def sdpa_cases(draw: st.DrawFn) -> Case:
    L, S, E, Ev = (draw(st.integers(1, 4)) for _ in range(4))
    gqa = draw(st.booleans())
    hk = draw(st.integers(1, 2))
    hq = hk * draw(st.integers(1, 3)) if gqa else hk
    n = draw(st.integers(1, 2))
    q, k, v = (n, hq, L, E), (n, hk, S, E), (n, hk, S, Ev)
    mask = draw(st.sampled_from([None, "bool", "float", "causal"]))
    mask_shape = None
    if mask in ("bool", "float"):
        full = (n, hq, L, S)
        mask_shape = tuple(1 if draw(st.booleans()) else s for s in full)[draw(st.integers(0, 2)) :]
    scale = draw(st.none() | st.floats(0.05, 2.0))
    return Case(
        f"L{L} S{S} gqa{gqa} {mask} {mask_shape} scale={scale}",
        q,
        k,
        v,
        mask if mask != "causal" else None,
        mask_shape,
        is_causal=mask == "causal",
        scale=scale,
        enable_gqa=gqa,
        need_weights=draw(st.booleans()),
    )


@given(case=sdpa_cases(), seed=st.integers(0, 2**16))
def test_sdpa_property(case: Case, seed: int) -> None:
    check_layer(case.id, _layer(case), _inputs(case, seed), _torch_fn(case), seed=seed)


# --- refusals --------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    id: str
    options: dict[str, Any]
    shapes: tuple[tuple[int, ...], ...] | None  # None: the constructor raises
    match: str
    torch_refuses: bool = True


REFUSALS = [
    Refusal("dropout", {"dropout_p": 0.1}, None, "dropout whatever the module's mode", False),
    Refusal("mask_and_causal", {"has_mask": True, "is_causal": True}, None, "not both"),
    Refusal("nan_scale", {"scale": float("nan")}, None, "finite scale", False),
    Refusal("rank_1", {}, ((5,), (6, 5), (6, 2)), "at least 2 dims"),
    Refusal("E_differs", {}, ((4, 5), (6, 4), (6, 2)), r"key \(…, S, E\)"),
    Refusal("S_differs", {}, ((4, 5), (6, 5), (5, 2)), r"value \(…, S, Ev\)"),
    Refusal("heads_without_gqa", {}, ((1, 4, 3, 2), (1, 2, 3, 2), (1, 2, 3, 2)), "broadcast"),
    Refusal(
        "gqa_not_multiple",
        {"enable_gqa": True},
        ((1, 3, 3, 2), (1, 2, 3, 2), (1, 2, 3, 2)),
        "multiple of the key",
    ),
    Refusal(
        "mask_shape", {"has_mask": True}, ((4, 5), (6, 5), (6, 2), (4, 5)), "broadcasts to the"
    ),
]


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: c.id)
def test_refusals(case: Refusal) -> None:
    if case.torch_refuses:
        shapes = case.shapes or ((4, 5), (6, 5), (6, 2), (4, 6))
        xs = [torch.zeros(s) for s in shapes]
        opts = {k: v for k, v in case.options.items() if k != "has_mask"}
        if case.options.get("has_mask") and len(xs) < 4:
            xs.append(torch.zeros(4, 6, dtype=torch.bool))
        with pytest.raises((RuntimeError, ValueError)):
            F.scaled_dot_product_attention(*xs[:3], *xs[3:], **opts)
    if case.shapes is None:
        with pytest.raises(ValueError, match=case.match):
            ScaledDotProductAttention(**case.options)
        return
    layer = ScaledDotProductAttention(**case.options)
    with pytest.raises(ValueError, match=case.match):
        layer.shape(*case.shapes)
    with pytest.raises(ValueError, match=case.match):  # forward checks before arithmetic
        layer.forward(*(np.zeros(s) for s in case.shapes))


def test_integer_mask_refused() -> None:
    layer = ScaledDotProductAttention(has_mask=True)
    with pytest.raises(ValueError, match="bool or float attn_mask"):
        layer.forward(np.zeros((4, 5)), np.zeros((6, 5)), np.zeros((6, 2)), np.zeros((4, 6), int))


# --- planted bugs -----------------------------------------------------------------------


def _no_rowsum(P: np.ndarray, dP: np.ndarray) -> np.ndarray:
    return P * dP  # BUG: softmax's Jacobian without its rank-one term


def _bottom_right_causal(L: int, S: int) -> np.ndarray:  # BUG: the other alignment
    return np.tril(np.ones((L, S), dtype=bool), S - L)


def _tile_heads(d: np.ndarray, group: int) -> np.ndarray:  # BUG: heads grouped as tile, not repeat
    return d.reshape(*d.shape[:-3], group, d.shape[-3] // group, *d.shape[-2:]).sum(axis=-4)


@pytest.mark.parametrize(
    "case_id, name, bug",
    [
        ("causal_L_lt_S_top_left", "_causal", _bottom_right_causal),
        ("gqa", "_sum_groups", _tile_heads),
        ("3d", "_softmax_backward", _no_rowsum),
        ("float_mask_grad", "_softmax_backward", _no_rowsum),
    ],
)
def test_planted_bug_fails(case_id: str, name: str, bug: Any, monkeypatch) -> None:
    monkeypatch.setattr(attention, name, bug)
    case = next(c for c in CASES if c.id == case_id)
    with pytest.raises(AssertionError):
        check_layer(case.id, _layer(case), _inputs(case), _torch_fn(case))


# --- wired into a Network: nn.MultiheadAttention from these layers ---------------------------


def _mha_network(mha: torch.nn.MultiheadAttention, causal: bool) -> Network:
    """x (N, L, E) → packed in-projection → Split q, k, v (one layer, three outputs) → heads →
    attention → heads merged → out_proj: nn.MultiheadAttention's fast path, batch_first."""
    E, H = mha.embed_dim, mha.num_heads
    p = {k: v.detach().numpy().copy() for k, v in mha.named_parameters()}
    nodes = [
        Node("in_proj", Linear(p["in_proj_weight"], p["in_proj_bias"]), (INPUT,)),
        Node("qkv", Split((E, E, E), -1), ("in_proj",)),
    ]
    for k, name in enumerate("qkv"):
        nodes += [
            Node(name, Select(k), ("qkv",)),
            Node(f"{name}_heads", Unflatten(-1, (H, E // H)), (name,)),
            Node(f"{name}_t", Transpose(1, 2), (f"{name}_heads",)),  # (N, H, L, hd)
        ]
    nodes += [
        Node("attn", ScaledDotProductAttention(is_causal=causal), ("q_t", "k_t", "v_t")),
        Node("merge_t", Transpose(1, 2), ("attn",)),
        Node("merge", Flatten(2), ("merge_t",)),
        Node("out_proj", Linear(p["out_proj.weight"], p["out_proj.bias"]), ("merge",)),
    ]
    return Network(nodes)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_multihead_attention_as_a_network(causal: bool) -> None:
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(6, 2, batch_first=True, dtype=torch.float64).eval()
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(5, 5, dtype=torch.bool).triu(1) if causal else None
    out, _ = mha(x, x, x, need_weights=False, attn_mask=mask, is_causal=causal)
    up = torch.randn(out.shape, dtype=torch.float64)
    out.backward(up)

    net = _mha_network(mha, causal)
    z, tape = net.forward(x.detach().numpy())
    _compare.assert_close("output", "mha", z, out.detach().numpy(), **TOL)
    g = net.backward(tape, up.numpy())
    _compare.assert_close("∂L/∂x", "mha", g.dL_dinput, x.grad.numpy(), **TOL)
    grads = g.flat()
    for ours, theirs in [
        ("in_proj.weight", "in_proj_weight"),
        ("in_proj.bias", "in_proj_bias"),
        ("out_proj.weight", "out_proj.weight"),
        ("out_proj.bias", "out_proj.bias"),
    ]:
        want = dict(mha.named_parameters())[theirs].grad.numpy()
        _compare.assert_close(f"∂L/∂{theirs}", "mha", grads[ours], want, **TOL)


# --- the pieces of nn.MultiheadAttention: weights, in-projections, merged masks -------------


@pytest.mark.parametrize(
    "case_id, options, mask",
    [
        ("plain", {}, None),
        ("scale", {"scale": 0.7}, None),
        ("causal", {"is_causal": True}, None),
        ("bool_mask", {"has_mask": True}, "bool"),
        ("float_mask_grad", {"has_mask": True}, "float"),
    ],
)
def test_attention_weights_match_torch(case_id: str, options: dict, mask: str | None) -> None:
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 6, 5))
    inputs = [q, k] + ([_mask(mask, (2, 1, 4, 6), rng)] if mask else [])

    def torch_fn(q: torch.Tensor, k: torch.Tensor, *m: torch.Tensor) -> torch.Tensor:
        scale = options.get("scale", 1 / math.sqrt(q.shape[-1]))
        s = scale * q @ k.transpose(-1, -2)
        if options.get("is_causal"):
            s = s.masked_fill(~torch.ones(4, 6, dtype=torch.bool).tril(), float("-inf"))
        if m:
            s = s.masked_fill(~m[0], float("-inf")) if m[0].dtype == torch.bool else s + m[0]
        return torch.softmax(s, -1)

    check_layer(case_id, attention.AttentionWeights(**options), inputs, torch_fn)


def test_attention_weights_refuse_a_fully_masked_row() -> None:
    q, k = np.zeros((2, 3)), np.zeros((4, 3))
    m = np.ones((2, 4), dtype=bool)
    m[1] = False
    s = torch.zeros(2, 4).masked_fill(~torch.tensor(m), float("-inf"))
    assert torch.isnan(torch.softmax(s, -1)[1]).all(), "torch's softmax gives NaN there"
    with pytest.raises(ValueError, match="every key masked"):
        attention.AttentionWeights(has_mask=True).forward(q, k, m)


@pytest.mark.parametrize(
    "case_id, weight_rows, bias_rows, w_shape, b_shape",
    [
        ("packed_q", (0, 4), (0, 4), (12, 4), (12,)),
        ("packed_v", (8, 12), (8, 12), (12, 4), (12,)),
        ("separate_k_proj", None, (4, 8), (4, 3), (12,)),
        ("no_bias", (4, 8), None, (12, 4), None),
    ],
)
def test_in_projection_matches_torch(case_id, weight_rows, bias_rows, w_shape, b_shape) -> None:
    rng = np.random.default_rng(1)
    W = rng.standard_normal(w_shape)
    b = rng.standard_normal(b_shape) if b_shape else None
    x = rng.standard_normal((5, 2, w_shape[1]))
    params = {"weight": torch.tensor(W)} | ({"bias": torch.tensor(b)} if b is not None else {})
    w_sl = slice(*weight_rows) if weight_rows else slice(None)
    b_sl = slice(*bias_rows) if bias_rows else slice(None)

    def torch_fn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
        return F.linear(x, weight[w_sl], None if bias is None else bias[b_sl])

    layer = attention.InProjection(W, b, weight_rows, bias_rows)
    check_layer(case_id, layer, [x], torch_fn, params=params)
    with pytest.raises(ValueError, match="features"):
        layer.shape((5, w_shape[1] + 1))


def _torch_merged_mask(N: int, H: int, attn, kpm, pad: int) -> torch.Tensor:
    """nn.MultiheadAttention's own steps: _canonical_mask, kpm view/expand/reshape, the sum,
    F.pad for bias_kv / zero_attn, as (N, H, L, S)."""

    def canonical(m: torch.Tensor) -> torch.Tensor:
        if m.dtype == torch.bool:
            return torch.zeros_like(m, dtype=torch.float64).masked_fill_(m, float("-inf"))
        return m

    a = None if attn is None else canonical(attn)
    k = None if kpm is None else canonical(kpm)
    if a is not None and a.dim() == 2:
        a = a.unsqueeze(0)
    if a is not None:
        a = F.pad(a, (0, pad))
    if k is not None:
        k = F.pad(k, (0, pad))
        S = k.shape[-1]
        k = k.view(N, 1, 1, S).expand(-1, H, -1, -1).reshape(N * H, 1, S)
        a = k if a is None else a + k
    a = a.expand(N * H, -1, -1)  # a 2-d attn_mask alone: one for every batch and head
    return a.reshape(N, H, -1, a.shape[-1])


@pytest.mark.parametrize(
    "case_id, attn, kpm, pad",
    [
        ("bool_2d", "bool2", None, 0),
        ("float_3d_grad", "float3", None, 0),
        ("kpm_bool", None, "bool", 0),
        ("kpm_float_grad", None, "float", 1),
        ("both_bool", "bool2", "bool", 0),
        ("float_2d_and_kpm_bool_pad2", "float2", "bool", 2),
        ("bool_3d_and_kpm_float", "bool3", "float", 1),
    ],
)
def test_attention_mask_matches_torch(case_id: str, attn, kpm, pad: int) -> None:
    rng = np.random.default_rng(2)
    N, H, L, S = 2, 3, 4, 5
    shapes = {"2": (L, S), "3": (N * H, L, S)}
    inputs = []
    if attn:
        shape = shapes[attn[-1]]
        inputs.append(
            rng.random(shape) < 0.3 if attn.startswith("bool") else rng.standard_normal(shape)
        )
    if kpm:
        inputs.append(rng.random((N, S)) < 0.3 if kpm == "bool" else rng.standard_normal((N, S)))

    def torch_fn(*masks: torch.Tensor) -> torch.Tensor:
        a = masks[0] if attn else None
        k = masks[-1] if kpm else None
        return _torch_merged_mask(N, H, a, k, pad)

    layer = attention.AttentionMask(
        N, H, has_attn_mask=bool(attn), has_key_padding_mask=bool(kpm), pad=pad
    )
    check_layer(case_id, layer, inputs, torch_fn)


@pytest.mark.parametrize(
    "case_id, L, S, mask, causal",
    [
        ("self", 5, 5, None, False),
        ("cross_float_mask", 4, 6, "float", False),
        ("bool_mask", 5, 5, "bool", False),
        ("causal", 5, 5, None, True),
    ],
)
def test_multihead_sdpa_matches_torch_and_its_steps(case_id, L, S, mask, causal) -> None:
    """MultiheadSDPA against torch's view-transpose steps around F.sdpa, and bit-equal to the
    nodes it stands for: a Rearrange per split, ScaledDotProductAttention, a Rearrange merge."""
    N, H, hd = 2, 3, 4
    E = H * hd
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((T, N, E)) for T in (L, S, S)]
    if mask is not None:
        xs.append(_mask(mask, (N, H, L, S), rng))
    sdpa = ScaledDotProductAttention(has_mask=mask is not None, is_causal=causal)
    layer = attention.MultiheadSDPA(H, sdpa)

    def torch_fn(q, k, v, *m):
        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(x.shape[0], N * H, hd).transpose(0, 1).view(N, H, x.shape[0], hd)

        mask_t = m[0] if m else None  # (bool: True takes part, as the layer's)
        o = F.scaled_dot_product_attention(split(q), split(k), split(v), mask_t, is_causal=causal)
        return o.permute(2, 0, 1, 3).reshape(L * N, E)

    check_layer(case_id, layer, xs, torch_fn)

    splits = [
        Rearrange((x.shape[0], N, H, hd), (1, 2, 0, 3), (N, H, x.shape[0], hd)) for x in xs[:3]
    ]
    merge = Rearrange((N, H, L, hd), (2, 0, 1, 3), (L * N, E))
    heads = [s.forward(x) for s, x in zip(splits, xs, strict=False)]
    o, cache = sdpa.forward(*(h for h, _ in heads), *xs[3:])
    z, merge_cache = merge.forward(o)
    fused_z, fused_cache = layer.forward(*xs)
    np.testing.assert_array_equal(fused_z, z)
    delta = rng.standard_normal(z.shape)
    d_heads, _ = sdpa.backward(merge.backward(delta, merge_cache)[0], cache)
    steps = [s.backward(d, c)[0] for s, d, (_, c) in zip(splits, d_heads, heads, strict=False)]
    fused = layer.backward(delta, fused_cache)[0]
    for k, (got, want) in enumerate(zip(fused, [*steps, *d_heads[3:]], strict=True)):
        assert (got is None) == (want is None), f"[{case_id}] δ of input {k}"
        if want is not None:
            np.testing.assert_array_equal(got, want, err_msg=f"[{case_id}] δ of input {k}")
