"""Attention (manual_bp.ops.attention): F.scaled_dot_product_attention, and
nn.MultiheadAttention and F.multi_head_attention_forward as a composite of the manual layers.

nn.MultiheadAttention (and so nn.TransformerEncoderLayer and DecoderLayer) is recorded whole:
its forward is F.multi_head_attention_forward between batch_first's transposes, and its row
is the function's between the same transposes. The function's rule follows torch's function
step by step: the in-projection (rows of the packed in_proj_weight, or
q/k/v_proj_weight for kdim/vdim), bias_k/bias_v, the heads, add_zero_attn, the masks merged
as torch merges them, then scaled_dot_product_attention (need_weights=False) or the explicit
softmax (need_weights=True, the weights averaged over heads or not), and out_proj.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.torch_version import TorchVersion

from manual_bp.ops.attention import (
    AttentionMask,
    AttentionWeights,
    InProjection,
    MultiheadSDPA,
    ScaledDotProductAttention,
)
from manual_bp.ops.graph import Constant
from manual_bp.ops.linalg import MatMul
from manual_bp.ops.linear import Linear
from manual_bp.ops.reductions import Mean
from manual_bp.ops.shape import Cat, Rearrange, Repeat, Reshape, Transpose
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import (
    Op,
    OpEntry,
    Param,
    Ref,
    Refusal,
    Sample,
    array,
    fused,
    number,
    param_arg,
    tensor,
)

#: torch ≥ 2.5 gives a query row whose every key is masked zeros in scaled_dot_product_
#: attention (its _safe_softmax); older torch gives NaN there, which we refuse.
EMPTY_ROWS = "zero" if TorchVersion(torch.__version__) >= (2, 5) else "refuse"


def _dropout_refused(p: float, what: str) -> None:
    if p > 0:
        raise ValueError(
            f"{what} applies dropout (p={p}): its mask is random, so no reference gradient "
            "exists; expected dropout 0 (for nn.MultiheadAttention and the Transformer "
            "layers: model.eval())"
        )


def scaled_dot_product_attention(
    query: Any,
    key: Any,
    value: Any,
    attn_mask: Any = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Op:
    """F.scaled_dot_product_attention; dropout_p > 0 is refused (F.sdpa applies it whatever
    the module's mode)."""
    _dropout_refused(number(dropout_p, "scaled_dot_product_attention (dropout_p)"), "F.sdpa")
    inputs = tuple(tensor(t, "scaled_dot_product_attention") for t in (query, key, value))
    if attn_mask is not None:
        inputs += (tensor(attn_mask, "scaled_dot_product_attention (attn_mask)"),)
    layer = ScaledDotProductAttention(
        has_mask=attn_mask is not None,
        is_causal=bool(is_causal),
        scale=None if scale is None else number(scale, "scaled_dot_product_attention (scale)"),
        enable_gqa=bool(enable_gqa),
        empty_rows=EMPTY_ROWS,
    )
    return Op(layer, inputs)


# --- nn.MultiheadAttention ---------------------------------------------------------------


def _heads(x: Any, length: int, batch: int, heads: int, head_dim: int) -> Op:
    """(T, N, E) → (N·H, T, hd), as torch's q.view(T, N·H, hd).transpose(0, 1)."""
    return Op(Transpose(0, 1), (Op(Reshape((length, batch * heads, head_dim)), (x,)),))


def _split_heads(x: Any, length: int, batch: int, heads: int, head_dim: int) -> Op:
    """(T, N, E) → (N, H, T, hd): torch's q.view(T, N·H, hd).transpose(0, 1) then
    .view(N, H, T, hd), as one node."""
    split = (length, batch, heads, head_dim)
    return Op(Rearrange(split, (1, 2, 0, 3), (batch, heads, length, head_dim)), (x,))


def multi_head_attention_forward(
    query: Any, key: Any, value: Any, *args: Any, **kwargs: Any
) -> Any:
    """F.multi_head_attention_forward, step by step as torch computes it (see the module's
    docstring); returns (attn_output, attn_weights or None)."""
    return _attention(query, key, value, *args, **kwargs, batch_first=False)


def _attention(
    query: Any,
    key: Any,
    value: Any,
    embed_dim_to_check: int,
    num_heads: int,
    in_proj_weight: Any,
    in_proj_bias: Any,
    bias_k: Any,
    bias_v: Any,
    add_zero_attn: bool,
    dropout_p: float,
    out_proj_weight: Any,
    out_proj_bias: Any,
    training: bool = True,
    key_padding_mask: Any = None,
    need_weights: bool = True,
    attn_mask: Any = None,
    use_separate_proj_weight: bool = False,
    q_proj_weight: Any = None,
    k_proj_weight: Any = None,
    v_proj_weight: Any = None,
    static_k: Any = None,
    static_v: Any = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
    *,
    batch_first: bool,
) -> tuple[Op, Op | None]:
    """F.multi_head_attention_forward's steps; `batch_first`: batched inputs and output are
    (N, T, E), transposed to and from the function's (T, N, E) as nn.MultiheadAttention's
    forward transposes them (one transpose for tensors passed twice)."""
    what = "multi_head_attention_forward"
    if static_k is not None or static_v is not None:
        raise UnsupportedModuleError(f"{what}: static_k / static_v are not supported")
    if training:
        _dropout_refused(
            number(dropout_p, f"{what} (dropout)"), "MultiheadAttention in training mode"
        )
    # (each check's message is formed only where it fails)
    q_in, k_in, v_in = tensor(query, what), tensor(key, what), tensor(value, what)
    batched = q_in.ndim == 3
    if not (q_in.ndim in (2, 3) and k_in.ndim == v_in.ndim == q_in.ndim):
        raise ValueError(
            f"{what}: expected query, key and value all 3-d (L, N, E) or all 2-d (L, E), got "
            f"shapes {q_in.shape}, {k_in.shape}, {v_in.shape}"
        )
    batch_first = batch_first and batched
    L, E = q_in.shape[int(batch_first)], q_in.shape[-1]
    N = q_in.shape[1 - int(batch_first)] if batched else 1
    S = k_in.shape[int(batch_first)]
    H = int(num_heads)
    if E != embed_dim_to_check:
        raise ValueError(f"{what}: expected embed_dim {embed_dim_to_check}, got {E}")
    if E % H != 0:
        raise ValueError(f"{what}: embed_dim {E} is not divisible by num_heads {H}")
    hd = E // H
    if not use_separate_proj_weight and k_in.shape != v_in.shape:
        raise ValueError(f"{what}: key shape {k_in.shape} does not match value shape {v_in.shape}")
    if is_causal and attn_mask is None:
        raise ValueError(
            f"{what}: is_causal=True needs the attn_mask it hints at (as torch requires)"
        )
    use_causal = bool(is_causal) and key_padding_mask is None and not need_weights
    if use_causal:
        attn_mask = None  # torch trusts the hint: scaled_dot_product_attention's is_causal

    def unbatch(x: Ref | Param, shape: tuple[int, ...]) -> Any:
        return x if batched else Op(Reshape(shape), (x,))

    q = unbatch(q_in, (L, 1, E))
    k = unbatch(k_in, (S, 1, k_in.shape[-1]))
    v = unbatch(v_in, (S, 1, v_in.shape[-1]))
    # (batch_first: each in-projection reads its (N, T, E) input as torch's (T, N, E))

    # in-projection: three row blocks of in_proj_weight, or the separate weights
    b = param_arg(in_proj_bias, what, "in_proj_bias", optional=True)
    b_all = array(b)
    blocks = [(0, E), (E, 2 * E), (2 * E, 3 * E)]
    projected = []
    if not use_separate_proj_weight:
        W = param_arg(in_proj_weight, what, "in_proj_weight")
        W_all = array(W)  # (read-only: the three layers share it, and the bias)
        names = fused(weight=W, bias=b)
        for x, rows, proj in zip((q, k, v), blocks, _PROJECTIONS, strict=True):
            layer = InProjection(W_all, b_all, rows, rows, batch_first=batch_first)
            projected.append(Op(layer, (x,), dict(names), name=proj))
    else:
        for x, w, rows, proj in zip(
            (q, k, v), (q_proj_weight, k_proj_weight, v_proj_weight), blocks, _PROJECTIONS,
            strict=True,
        ):  # fmt: skip
            Wx = param_arg(w, what, "q/k/v_proj_weight")
            layer = InProjection(array(Wx), b_all, None, rows, batch_first=batch_first)
            projected.append(Op(layer, (x,), fused(weight=Wx, bias=b), name=proj))
    qp, kp, vp = projected

    # masks, as given (checked as torch checks them)
    pad = 0
    masks: list[Ref | Param] = []
    if attn_mask is not None:
        m = tensor(attn_mask, f"{what} (attn_mask)")
        want = (L, S) if m.ndim == 2 else (N * H, L, S)
        if m.shape != want:
            raise ValueError(
                f"{what}: expected an attn_mask of shape {(L, S)} or {(N * H, L, S)}, got {m.shape}"
            )
        masks.append(m)
    if key_padding_mask is not None:
        kpm = tensor(key_padding_mask, f"{what} (key_padding_mask)")
        if kpm.shape != ((N, S) if batched else (S,)):
            raise ValueError(
                f"{what}: expected a key_padding_mask of shape {(N, S) if batched else (S,)}, "
                f"got {kpm.shape}"
            )
        masks.append(kpm if batched else Op(Reshape((1, S)), (kpm,)))

    # bias_k / bias_v: one more key and value, the same for every batch entry
    if bias_k is not None or bias_v is not None:
        if bias_k is None or bias_v is None:
            raise ValueError(f"{what}: bias_k and bias_v go together")
        bk = tensor(bias_k, f"{what} (bias_k)")
        bv = tensor(bias_v, f"{what} (bias_v)")
        kp = Op(Cat(0, 2), (kp, Op(Repeat((1, N, 1)), (bk,))))
        vp = Op(Cat(0, 2), (vp, Op(Repeat((1, N, 1)), (bv,))))
        pad += 1
    S_kv = S + pad
    # without weights or a zero key: the heads split, attended and merged in one node
    one_node = not need_weights and not add_zero_attn
    if add_zero_attn:  # a zero key and value appended after the heads split
        q_h = _heads(qp, L, N, H, hd)  # (N·H, L, hd)
        k_h = _heads(kp, S_kv, N, H, hd)
        v_h = _heads(vp, S_kv, N, H, hd)
        zeros = Op(Constant(np.zeros((N * H, 1, hd))), ())
        k_h = Op(Cat(1, 2), (k_h, zeros))
        v_h = Op(Cat(1, 2), (v_h, zeros))
        pad += 1
        S_kv += 1

        def four(x: Op, length: int) -> Op:
            return Op(Reshape((N, H, length, hd)), (x,))

        q4, k4, v4 = four(q_h, L), four(k_h, S_kv), four(v_h, S_kv)
    elif not one_node:  # (T, N, E) → (N, H, T, hd): the same three steps as one node
        q4 = _split_heads(qp, L, N, H, hd)
        k4 = _split_heads(kp, S_kv, N, H, hd)
        v4 = _split_heads(vp, S_kv, N, H, hd)
    merged = None
    if masks:
        merged = Op(
            AttentionMask(
                N,
                H,
                has_attn_mask=attn_mask is not None,
                has_key_padding_mask=key_padding_mask is not None,
                pad=pad,
            ),
            tuple(masks),
        )
    mask_in = (merged,) if merged is not None else ()
    weights = None
    if need_weights:  # the explicit softmax: torch gives NaN for a fully masked row (refused)
        P = Op(AttentionWeights(has_mask=merged is not None), (q4, k4, *mask_in))
        attn = Op(MatMul(), (P, v4))  # (N, H, L, hd)
        weights = Op(Mean(1), (P,)) if average_attn_weights else P
        if not batched:
            shape = (L, S_kv) if average_attn_weights else (H, L, S_kv)
            weights = Op(Reshape(shape), (weights,))
    else:
        attend = ScaledDotProductAttention(
            has_mask=merged is not None, is_causal=use_causal, empty_rows=EMPTY_ROWS
        )
        if not one_node:
            attn = Op(attend, (q4, k4, v4, *mask_in))
    if one_node:
        merged_heads = Op(MultiheadSDPA(H, attend), (qp, kp, vp, *mask_in))  # (L·N, E)
    else:
        merged_heads = Op(Rearrange((N, H, L, hd), (2, 0, 1, 3), (L * N, E)), (attn,))
    Wo = param_arg(out_proj_weight, what, "out_proj.weight")
    bo = param_arg(out_proj_bias, what, "out_proj.bias", optional=True)
    out = Op(
        Linear(array(Wo), array(bo)),
        (merged_heads,),
        fused(weight=Wo, bias=bo),
        name="out_proj",
        probe=0,
        probe_dims=(1, 0, 2) if batch_first else None,  # (the module's output is (N, L, E))
    )
    if batch_first:  # (L·N, E) → (N, L, E): torch's view as (L, N, E) and transpose, one node
        return Op(Rearrange((L, N, E), (1, 0, 2), (N, L, E)), (out,)), weights
    return Op(Reshape((L, N, E) if batched else (L, E)), (out,)), weights


def multihead_attention(
    query: Any,
    key: Any,
    value: Any,
    key_padding_mask: Any = None,
    need_weights: bool = True,
    attn_mask: Any = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
    **module: Any,
) -> tuple[Op, Op | None]:
    """nn.MultiheadAttention: its forward's F.multi_head_attention_forward between
    batch_first's transposes (its masks as given: the function canonicalises them as the
    module does)."""
    return _attention(
        query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
        attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal,
        **module,
    )  # fmt: skip


def _mha_module_args(m: nn.MultiheadAttention) -> dict[str, Any]:
    """The function's arguments as nn.MultiheadAttention.forward passes them: the separate
    q/k/v weights only where it has them (not _qkv_same_embed_dim), else the packed one."""
    packed, out_proj = m._qkv_same_embed_dim, m.out_proj
    return {
        "embed_dim_to_check": m.embed_dim,
        "num_heads": m.num_heads,
        "in_proj_weight": m.in_proj_weight,
        "in_proj_bias": m.in_proj_bias,
        "bias_k": m.bias_k,
        "bias_v": m.bias_v,
        "add_zero_attn": m.add_zero_attn,
        "dropout_p": m.dropout,
        "out_proj_weight": out_proj.weight,
        "out_proj_bias": out_proj.bias,
        "training": m.training,
        "use_separate_proj_weight": not packed,
        "q_proj_weight": None if packed else m.q_proj_weight,
        "k_proj_weight": None if packed else m.k_proj_weight,
        "v_proj_weight": None if packed else m.v_proj_weight,
        "batch_first": m.batch_first,
    }


#: the δ names of the three in-projections, under the attention module's name
_PROJECTIONS = ("q_proj", "k_proj", "v_proj")


# --- samples --------------------------------------------------------------------------------


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float64)


def _sdpa_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    q, k, v = _randn(g, 2, 3, 4, 5), _randn(g, 2, 3, 6, 5), _randn(g, 2, 3, 6, 7)
    keep = torch.rand(4, 6, generator=g) < 0.7
    keep[:, 0] = True
    sdpa = F.scaled_dot_product_attention
    return [
        Sample("plain", (q, k, v), fn=sdpa),
        Sample(
            "causal, scale", (q, k, v), fn=lambda q, k, v: sdpa(q, k, v, is_causal=True, scale=0.3)
        ),
        Sample("bool mask", (q, k, v), fn=lambda q, k, v: sdpa(q, k, v, keep)),
        Sample(
            "a learned float mask",
            (q, k, v),
            fn=lambda q, k, v, bias: sdpa(q, k, v, bias),
            params={"bias": _randn(g, 3, 4, 6)},
        ),
        Sample(
            "grouped query heads",
            (_randn(g, 1, 4, 3, 2), _randn(g, 1, 2, 5, 2), _randn(g, 1, 2, 5, 3)),
            fn=lambda q, k, v: sdpa(q, k, v, enable_gqa=True),
        ),
    ]


def _sdpa_refusals() -> list[Refusal]:
    g = torch.Generator().manual_seed(1)
    q = _randn(g, 2, 4, 5)
    return [
        Refusal(
            "dropout",
            (q, q, q),
            ValueError,
            "random",
            fn=lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=0.1),
        ),
    ]


class Attend(nn.Module):
    """A model around nn.MultiheadAttention as people call it: self-attention (one input) or
    cross-attention (query, then key = value, or all three), masks as buffers, returning the
    output and, with `weights`, the attention weights flattened after it."""

    def __init__(
        self,
        mha: nn.MultiheadAttention,
        *,
        weights: bool = False,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        **call: Any,
    ) -> None:
        super().__init__()
        self.mha, self.weights, self.call = mha, weights, call
        self.register_buffer("attn_mask", attn_mask)
        self.register_buffer("key_padding_mask", key_padding_mask)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor | None = None, v: torch.Tensor | None = None
    ):
        k = q if k is None else k
        v = k if v is None else v
        masks = {"attn_mask": self.attn_mask, "key_padding_mask": self.key_padding_mask}
        out, w = self.mha(q, k, v, need_weights=self.weights, **masks, **self.call)
        return torch.cat([out.flatten(), w.flatten()]) if self.weights else out


def _mha(g: torch.Generator, *args: Any, **kwargs: Any) -> nn.MultiheadAttention:
    m = nn.MultiheadAttention(*args, dtype=torch.float64, **kwargs).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5, generator=g)
    return m


def _mha_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(2)
    x, y = _randn(g, 2, 5, 8), _randn(g, 2, 3, 8)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[1, -2:] = True
    seq_first = x.transpose(0, 1).contiguous()

    def mha(heads: int = 2, **kwargs: Any) -> nn.MultiheadAttention:
        return _mha(g, 8, heads, batch_first=True, **kwargs)

    return [
        Sample("self-attention, weights averaged", (x,), module=Attend(mha(), weights=True)),
        Sample("need_weights=False", (x,), module=Attend(mha())),
        Sample(
            "causal hint, key padding",
            (x,),
            module=Attend(mha(), attn_mask=causal, key_padding_mask=padding, is_causal=True),
        ),
        Sample("causal hint alone", (x,), module=Attend(mha(), attn_mask=causal, is_causal=True)),
        Sample(
            "float attn_mask, weights per head",
            (x,),
            module=Attend(
                mha(), weights=True, attn_mask=_randn(g, 5, 5), average_attn_weights=False
            ),
        ),
        Sample("cross-attention", (x, y), module=Attend(mha())),
        Sample(
            "kdim, vdim, no bias, seq-first, weights",
            (seq_first, _randn(g, 3, 2, 4), _randn(g, 3, 2, 6)),
            module=Attend(_mha(g, 8, 2, kdim=4, vdim=6, bias=False), weights=True),
        ),
        Sample(
            "bias_kv, zero_attn, padding",
            (x,),
            module=Attend(mha(4, add_bias_kv=True, add_zero_attn=True), key_padding_mask=padding),
        ),
        Sample("unbatched", (x[0],), module=Attend(mha(), weights=True)),
    ]


class FunctionalAttend(nn.Module):
    """F.multi_head_attention_forward called directly, as a model written with torch's
    functional API calls it (sequence first), on an nn.MultiheadAttention's tensors."""

    def __init__(self, mha: nn.MultiheadAttention, **call: Any) -> None:
        super().__init__()
        self.mha, self.call = mha, call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mha
        out, w = F.multi_head_attention_forward(
            x, x, x, m.embed_dim, m.num_heads, m.in_proj_weight, m.in_proj_bias, m.bias_k,
            m.bias_v, m.add_zero_attn, m.dropout, m.out_proj.weight, m.out_proj.bias,
            training=m.training, **self.call,
        )  # fmt: skip
        return out if w is None else torch.cat([out.flatten(), w.flatten()])


def _mha_function_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(3)
    x = _randn(g, 5, 2, 8)  # (L, N, E)
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[0, -1:] = True
    return [
        Sample("called directly", (x,), module=FunctionalAttend(_mha(g, 8, 2), need_weights=False)),
        Sample(
            "called directly, key padding, weights",
            (x,),
            module=FunctionalAttend(_mha(g, 8, 4), key_padding_mask=padding),
        ),
        Sample(
            "called directly, bias_kv and zero_attn",
            (x,),
            module=FunctionalAttend(_mha(g, 8, 2, add_bias_kv=True, add_zero_attn=True)),
        ),
    ]


def _mha_refusals() -> list[Refusal]:
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    train = nn.MultiheadAttention(8, 2, dropout=0.1, batch_first=True, dtype=torch.float64)
    return [Refusal("dropout in training", (x,), ValueError, "random", module=Attend(train))]


ROWS = [
    OpEntry(
        "scaled_dot_product_attention",
        "attention",
        scaled_dot_product_attention,
        functions=(F.scaled_dot_product_attention,),
        note="attn_mask (bool or float, broadcast; a float mask gets its gradient), is_causal "
        "(top-left), scale, enable_gqa; dropout_p > 0 refused (random)",
        samples=_sdpa_samples,
        refusals=_sdpa_refusals,
    ),
    OpEntry(
        "MultiheadAttention",
        "attention",
        multihead_attention,
        modules=(nn.MultiheadAttention,),
        module_args=_mha_module_args,
        note="nn.MultiheadAttention (in nn.TransformerEncoderLayer/DecoderLayer too): packed "
        "or separate q/k/v weights (kdim, vdim), bias on/off, batch_first, key_padding_mask, "
        "attn_mask, is_causal, need_weights (averaged or not), add_bias_kv, add_zero_attn; "
        "eval or dropout 0",
        samples=_mha_samples,
        refusals=_mha_refusals,
    ),
    OpEntry(
        "multi_head_attention_forward",
        "attention",
        multi_head_attention_forward,
        functions=(F.multi_head_attention_forward,),
        note="the function, called directly (or by an nn.MultiheadAttention whose forward is "
        "replaced): everything the module row takes",
        samples=_mha_function_samples,
        refusals=_mha_refusals,
    ),
]


def canonical_mask(
    mask: Any,
    mask_name: str = "",
    other_type: Any = None,
    other_name: str = "",
    target_type: Any = None,
    check_other: bool = True,
) -> Any:
    """F._canonical_mask: the mask as given (None stays None); the attention layers read a
    bool mask (True: masked out) as −∞ and add a float one, as torch's canonical form does."""
    return None if mask is None else tensor(mask, "_canonical_mask")


ROWS.append(
    OpEntry(
        "_canonical_mask",
        "attention",
        canonical_mask,
        functions=(F._canonical_mask,),
        note="key_padding_mask and attn_mask given as model inputs",
    )
)
