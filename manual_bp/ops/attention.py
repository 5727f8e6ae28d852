"""Scaled dot-product attention, forward and backward side by side, in torch's layout.

    S = scale · Q Kᵀ + M        (M: 0/−∞ from a bool mask or the causal mask, or a float mask)
    P = softmax(S) along keys,  O = P V

    δV = Pᵀ δO,  δP = δO Vᵀ,  δS = P ⊙ (δP − rowsum(δP ⊙ P)),
    δQ = scale · δS K,  δK = scale · δSᵀ Q,  δM = δS (a float mask that carries gradient)

Layouts are F.scaled_dot_product_attention's: Q (…, L, E), K (…, S, E), V (…, S, Ev), O
(…, L, Ev), batch dims broadcast; with enable_gqa, K and V have fewer heads (dim −3), each
repeated for a group of query heads (repeat_interleave), and their δ is summed over the group.

A row whose every key is masked: torch ≥ 2.5 gives it P = 0 (so O = 0 and no gradient), its
`_safe_softmax`; older torch gives NaN. `empty_rows="zero"` follows the former, `"refuse"`
raises a ValueError instead (for a torch that would give NaN).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from manual_bp.ops.arithmetic import _broadcast_shape, unbroadcast
from manual_bp.ops.base import Array, Layer, Shape, zeros_like


def _causal(L: int, S: int) -> Array:
    """torch's is_causal mask: query i sees keys j ≤ i, aligned at the top left (not the
    bottom right) when L ≠ S."""
    return np.tril(np.ones((L, S), dtype=bool))


class ScaledDotProductAttention(Layer):
    """O = softmax(scale · Q Kᵀ + M) V (F.scaled_dot_product_attention);
    δV = Pᵀ δO, δS = P ⊙ (δP − rowsum(δP ⊙ P)) with δP = δO Vᵀ, δQ = scale · δS K,
    δK = scale · δSᵀ Q, δM = δS for a float mask.

    Inputs: q, k, v, and the mask when has_mask (bool: True takes part; float: added to S).
    need_weights: a second output, P (the attention weights, as MultiheadAttention returns
    them before averaging), whose δ adds to δP.
    """

    integer_inputs = True  # a bool mask (q, k and v are checked to be floating)

    def __init__(
        self,
        *,
        has_mask: bool = False,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        scale: float | None = None,
        enable_gqa: bool = False,
        need_weights: bool = False,
        empty_rows: str = "zero",
    ) -> None:
        super().__init__()
        if dropout_p != 0.0:
            raise ValueError(
                f"expected dropout_p = 0, got {dropout_p}: scaled_dot_product_attention applies "
                "dropout whatever the module's mode, so its result is random and no reference "
                "gradient exists (pass dropout_p=0.0 or put the model in eval mode for "
                "nn.MultiheadAttention)"
            )
        if has_mask and is_causal:
            raise ValueError("expected an attn_mask or is_causal=True, not both (torch refuses)")
        if scale is not None and not math.isfinite(scale):
            raise ValueError(f"expected a finite scale, got {scale}")
        if empty_rows not in ("zero", "refuse"):
            raise ValueError(f"expected empty_rows 'zero' or 'refuse', got {empty_rows!r}")
        self.has_mask, self.is_causal, self.scale = bool(has_mask), bool(is_causal), scale
        self.enable_gqa, self.need_weights, self.empty_rows = enable_gqa, need_weights, empty_rows
        self.n_inputs = 3 + self.has_mask  # type: ignore[misc]  # set per instance
        self.n_outputs = 2 if need_weights else 1  # type: ignore[misc]

    def __repr__(self) -> str:
        opts = [
            "mask" if self.has_mask else "",
            "causal" if self.is_causal else "",
            f"scale={self.scale}" if self.scale is not None else "",
            "gqa" if self.enable_gqa else "",
            "need_weights" if self.need_weights else "",
        ]
        return f"ScaledDotProductAttention({', '.join(o for o in opts if o)})"

    def _shapes(self, q: Shape, k: Shape, v: Shape, *mask: Shape) -> tuple[Shape, Shape, int]:
        """(the scores' shape (…, L, S), the output's shape, the query heads per key head)."""
        q, k, v = tuple(q), tuple(k), tuple(v)
        if min(len(q), len(k), len(v)) < 2:
            raise ValueError(
                f"expected query, key and value of at least 2 dims, got shapes {q}, {k}, {v}"
            )
        if q[-1] != k[-1] or k[-2] != v[-2]:
            raise ValueError(
                f"expected query (…, L, E), key (…, S, E), value (…, S, Ev), got shapes {q}, "
                f"{k}, {v}"
            )
        group = 1
        if self.enable_gqa:
            if min(len(q), len(k), len(v)) < 3 or k[-3] != v[-3] or q[-3] % k[-3]:
                raise ValueError(
                    "expected query heads (dim -3) a multiple of the key and value heads for "
                    f"enable_gqa, got shapes {q}, {k}, {v}"
                )
            group = q[-3] // k[-3]
            k = (*k[:-3], q[-3], *k[-2:])
            v = (*v[:-3], q[-3], *v[-2:])
        try:
            batch = _broadcast_shape((q[:-2], k[:-2], v[:-2]))
        except ValueError:
            raise ValueError(
                f"expected query, key and value batch dims that broadcast, got shapes {q}, {k}, "
                f"{v} (enable_gqa={self.enable_gqa})"
            ) from None
        scores = (*batch, q[-2], k[-2])
        if mask:
            (m,) = mask
            if len(m) > len(scores) or _try_broadcast(m, scores) != scores:
                raise ValueError(
                    f"expected an attn_mask that broadcasts to the scores' shape {scores}, got "
                    f"{tuple(m)}"
                )
        return scores, (*batch, q[-2], v[-1]), group

    def shape(self, *in_shapes: Shape) -> Any:
        if len(in_shapes) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} inputs, got {len(in_shapes)}")
        scores, out, _ = self._shapes(*in_shapes)
        return (out, scores) if self.need_weights else out

    def forward(self, q: Array, k: Array, v: Array, *mask: Array) -> tuple[Any, Any]:
        scores_shape, _, group = self._shapes(q.shape, k.shape, v.shape, *(m.shape for m in mask))
        if not (q.dtype.kind == k.dtype.kind == v.dtype.kind == "f"):
            raise ValueError(
                f"expected floating query, key and value, got {q.dtype}, {k.dtype}, {v.dtype}"
            )
        m = mask[0] if mask else None
        scale = 1.0 / math.sqrt(q.shape[-1]) if self.scale is None else self.scale
        P, Kr = _weights(q, k, m, scale, self.is_causal, group, scores_shape, self.empty_rows)
        Vr = np.repeat(v, group, axis=-3) if group > 1 else v
        O = P @ Vr  # (…, L, Ev)
        float_mask = m.shape if m is not None and m.dtype != bool else None
        cache = (q, Kr, Vr, P, scale, group, (k.shape, v.shape), float_mask)
        return ((O, P) if self.need_weights else O), cache

    def backward(self, delta: Any, cache: Any) -> tuple[tuple[Array | None, ...], dict]:
        q, Kr, Vr, P, scale, group, (k_shape, v_shape), float_mask = cache
        dO, dP_out = delta if self.need_weights else (delta, None)
        dO = np.zeros((*P.shape[:-1], Vr.shape[-1])) if dO is None else dO
        dV = P.swapaxes(-1, -2) @ dO  # δV = Pᵀ δO
        dP = dO @ Vr.swapaxes(-1, -2)  # δP = δO Vᵀ
        if dP_out is not None:
            dP = dP + dP_out
        if group > 1:  # each key head served `group` query heads: their δ add up
            dV = _sum_groups(dV, group)
        dQ, dK, dM = _weights_backward(dP, P, q, Kr, scale, group, k_shape, float_mask)
        deltas: list[Array | None] = [dQ, dK, unbroadcast(dV, v_shape)]
        if self.has_mask:  # a bool mask carries no gradient; a float one gets δS
            deltas.append(dM)
        return tuple(deltas), {}


def _weights(
    q: Array,
    k: Array,
    m: Array | None,
    scale: float,
    is_causal: bool,
    group: int,
    scores_shape: Shape,
    empty_rows: str,
) -> tuple[Array, Array]:
    """P = softmax(scale · Q Kᵀ + M) along keys, and K with its heads repeated for their
    query groups. Rows with every key masked get P = 0, or a ValueError (empty_rows)."""
    if m is not None and not (m.dtype == bool or np.issubdtype(m.dtype, np.floating)):
        raise ValueError(f"expected a bool or float attn_mask, got dtype {m.dtype}")
    Kr = np.repeat(k, group, axis=-3) if group > 1 else k  # (…, H, S, E): a key per query head
    S = scale * (q @ Kr.swapaxes(-1, -2))  # (…, L, S)
    keep = None  # where S is not masked to −∞ (bool and causal masks)
    if m is not None and m.dtype == bool:
        keep = np.broadcast_to(m, scores_shape)
    elif m is not None:
        S = S + m
    if is_causal:
        keep = np.broadcast_to(_causal(*scores_shape[-2:]), scores_shape)
    if keep is not None:
        S = np.where(keep, S, -np.inf)
    top = S.max(axis=-1, keepdims=True) if S.shape[-1] else np.full((*S.shape[:-1], 1), -np.inf)
    empty = top == -np.inf  # rows whose every key is masked
    if not empty.any():
        e = np.exp(S - top)
        return e / e.sum(axis=-1, keepdims=True), Kr
    if empty_rows == "refuse":
        raise ValueError(
            f"{int(empty.sum())} query row(s) have every key masked: torch gives NaN there, so "
            "there is no gradient to compare"
        )
    e = np.exp(S - np.where(empty, 0.0, top))
    return np.where(empty, 0.0, e / np.where(empty, 1.0, e.sum(axis=-1, keepdims=True))), Kr


def _weights_backward(
    dP: Array,
    P: Array,
    q: Array,
    Kr: Array,
    scale: float,
    group: int,
    k_shape: Shape,
    float_mask: Shape | None,
) -> tuple[Array, Array, Array | None]:
    """δQ = scale · δS K,  δK = scale · δSᵀ Q,  δM = δS, with δS = softmax's backward of δP."""
    dS = _softmax_backward(P, dP)
    dQ = scale * (dS @ Kr)  # δQ = scale · δS K
    dK = scale * (dS.swapaxes(-1, -2) @ q)  # δK = scale · δSᵀ Q
    if group > 1:  # each key head served `group` query heads: their δ add up
        dK = _sum_groups(dK, group)
    dM = None if float_mask is None else unbroadcast(dS, float_mask)
    return unbroadcast(dQ, q.shape), unbroadcast(dK, k_shape), dM


def _softmax_backward(P: Array, dP: Array) -> Array:
    """δS = P ⊙ (δP − rowsum(δP ⊙ P)): softmax's Jacobian (diag P − P Pᵀ) applied to δP."""
    return P * (dP - (dP * P).sum(axis=-1, keepdims=True))


def _try_broadcast(a: Shape, b: Shape) -> Shape | None:
    try:
        return _broadcast_shape((a, b))
    except ValueError:
        return None


def _sum_groups(d: Array, group: int) -> Array:
    """(…, H·g … ) → (…, H, …): the sum over each group of g consecutive heads (dim −3)."""
    return d.reshape(*d.shape[:-3], d.shape[-3] // group, group, *d.shape[-2:]).sum(axis=-3)


# --- the pieces of nn.MultiheadAttention that scaled_dot_product_attention is not -------------


class AttentionWeights(Layer):
    """P = softmax(scale · Q Kᵀ + M) along keys (the weights nn.MultiheadAttention returns
    with need_weights);  δS = P ⊙ (δP − rowsum(δP ⊙ P)),  δQ = scale · δS K,
    δK = scale · δSᵀ Q,  δM = δS for a float mask.

    A row with every key masked is refused: torch's softmax gives NaN there."""

    integer_inputs = True  # a bool mask (q and k are checked to be floating)

    def __init__(
        self, *, has_mask: bool = False, is_causal: bool = False, scale: float | None = None
    ) -> None:
        super().__init__()
        self.sdpa = ScaledDotProductAttention(has_mask=has_mask, is_causal=is_causal, scale=scale)
        self.has_mask = self.sdpa.has_mask
        self.n_inputs = 2 + self.has_mask  # type: ignore[misc]  # set per instance

    def __repr__(self) -> str:
        return repr(self.sdpa).replace("ScaledDotProductAttention", "AttentionWeights")

    def _scores(self, q: Shape, k: Shape, *mask: Shape) -> Shape:
        """The scores' shape (…, L, S): the checks of attention with a value of one column."""
        v = (*k[:-1], 1) if len(k) >= 2 else k
        return self.sdpa._shapes(q, k, v, *mask)[0]

    def shape(self, *in_shapes: Shape) -> Shape:
        if len(in_shapes) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} inputs, got {len(in_shapes)}")
        return self._scores(*in_shapes)

    def forward(self, q: Array, k: Array, *mask: Array) -> tuple[Array, Any]:
        scores_shape = self._scores(q.shape, k.shape, *(m.shape for m in mask))
        if not all(np.issubdtype(x.dtype, np.floating) for x in (q, k)):
            raise ValueError(f"expected floating query and key, got {q.dtype}, {k.dtype}")
        m = mask[0] if mask else None
        scale = 1.0 / math.sqrt(q.shape[-1]) if self.sdpa.scale is None else self.sdpa.scale
        P, _ = _weights(q, k, m, scale, self.sdpa.is_causal, 1, scores_shape, "refuse")
        float_mask = m.shape if m is not None and m.dtype != bool else None
        return P, (q, k, P, scale, float_mask)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array | None, ...], dict]:
        q, k, P, scale, float_mask = cache
        dQ, dK, dM = _weights_backward(delta, P, q, k, scale, 1, k.shape, float_mask)
        return ((dQ, dK, dM) if self.has_mask else (dQ, dK)), {}


class InProjection(Layer):
    """z = a W[rows]ᵀ + b[rows]: one of the query, key, value projections of
    nn.MultiheadAttention, rows of its packed in_proj_weight (or the whole of q_proj_weight,
    its bias rows of in_proj_bias);  δ_prev = δ W[rows],  ∂L/∂W[rows] = δᵀ a (0 elsewhere),
    ∂L/∂b[rows] = Σ δ.

    batch_first: a is (N, L, E) and z torch's (L, N, out): a is read transposed, as
    nn.MultiheadAttention(batch_first=True) transposes its inputs before projecting them
    (one node where a Transpose before it would be another), and δ_prev goes back (N, L, E)."""

    reports_delta = True

    def __init__(
        self,
        weight: Array,
        bias: Array | None = None,
        weight_rows: tuple[int, int] | None = None,
        bias_rows: tuple[int, int] | None = None,
        *,
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        self.batch_first = bool(batch_first)
        self.params["weight"] = np.asarray(weight, dtype=np.float64)
        if bias is not None:
            self.params["bias"] = np.asarray(bias, dtype=np.float64)
        self.weight_rows = slice(*weight_rows) if weight_rows else slice(None)
        self.bias_rows = slice(*bias_rows) if bias_rows else slice(None)
        W = self.params["weight"]
        if W.ndim != 2 or (rows := W[self.weight_rows].shape[0]) == 0:
            raise ValueError(f"expected a 2-d weight with rows {weight_rows}, got {W.shape}")
        if bias is not None and self.params["bias"][self.bias_rows].shape != (rows,):
            raise ValueError(
                f"expected bias rows {bias_rows} as many as the weight rows {weight_rows}, got "
                f"a bias of shape {self.params['bias'].shape}"
            )

    def __repr__(self) -> str:
        rows = self.weight_rows
        first = ", batch_first" if self.batch_first else ""
        return f"InProjection(rows {rows.start}:{rows.stop}, bias={'bias' in self.params}{first})"

    def shape(self, in_shape: Shape) -> Shape:
        W = self.params["weight"]
        out_features = len(range(*self.weight_rows.indices(W.shape[0])))  # W[rows].shape[0]
        in_features = W.shape[1]
        if self.batch_first and len(in_shape) != 3:
            raise ValueError(f"expected a batch-first input (N, L, E), got shape {tuple(in_shape)}")
        if len(in_shape) == 0 or in_shape[-1] != in_features:
            raise ValueError(
                f"expected input (*, {in_features}) with {in_features} features, got shape "
                f"{tuple(in_shape)}"
            )
        if self.batch_first:
            return (in_shape[1], in_shape[0], out_features)
        return (*in_shape[:-1], out_features)

    def forward(self, a: Array) -> tuple[Array, Array]:
        self.shape(a.shape)
        if self.batch_first:
            a = a.swapaxes(0, 1)  # (N, L, E) → (L, N, E), a view
        z = a @ self.params["weight"][self.weight_rows].T
        if "bias" in self.params:
            z += self.params["bias"][self.bias_rows]
        return z, a

    def backward(self, delta: Array, a: Array) -> tuple[Array, dict[str, Array]]:
        dL_da = delta @ self.params["weight"][self.weight_rows]
        if self.batch_first:
            dL_da = dL_da.swapaxes(0, 1)  # back to the input's (N, L, E)
        return dL_da, self.param_grads(delta, a)

    def param_grads(self, delta: Array, a: Array) -> dict[str, Array]:
        W = self.params["weight"]
        rows = delta.reshape(-1, delta.shape[-1])  # (N·…, out): leading dims are a batch
        dW = zeros_like(W)
        dW[self.weight_rows] = rows.T @ a.reshape(-1, W.shape[1])
        grads = {"weight": dW}
        if "bias" in self.params:
            db = zeros_like(self.params["bias"])
            db[self.bias_rows] = rows.sum(axis=0)
            grads["bias"] = db
        return grads


def split_heads(x: Array, heads: int) -> Array:
    """(T, N, H·hd) → (N, H, T, hd), laid out afresh: torch's x.view(T, N·H, hd).transpose(0, 1)
    then .view(N, H, T, hd)."""
    T, N, E = x.shape
    return np.ascontiguousarray(x.reshape(T, N, heads, E // heads).transpose(1, 2, 0, 3))


def merge_heads(o: Array) -> Array:
    """(N, H, T, hd) → (T, N, H·hd), laid out afresh: split_heads undone."""
    N, H, T, hd = o.shape
    return np.ascontiguousarray(o.transpose(2, 0, 1, 3)).reshape(T, N, H * hd)


class MultiheadSDPA(Layer):
    """nn.MultiheadAttention's heads around scaled_dot_product_attention: q (L, N, E),
    k (S, N, E), v (S, N, E) as the in-projections give them, each split into H heads
    (N, H, T, hd), attended (ScaledDotProductAttention), the heads merged back as (L·N, E);
    δ moved back through the merge, attention's backward, then each split.

    One node where a Rearrange per split and one for the merge would be four more; the numbers
    are the same (a split or merge only moves entries)."""

    integer_inputs = True  # a bool mask (as ScaledDotProductAttention)

    def __init__(self, heads: int, attend: ScaledDotProductAttention) -> None:
        super().__init__()
        if attend.need_weights or attend.enable_gqa:
            raise ValueError(f"expected attention without weights or gqa, got {attend!r}")
        self.heads, self.attend = int(heads), attend
        self.n_inputs = attend.n_inputs  # type: ignore[misc]  # set per instance

    def __repr__(self) -> str:
        return f"MultiheadSDPA({self.heads} heads, {self.attend!r})"

    def shape(self, *in_shapes: Shape) -> Shape:
        if len(in_shapes) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} inputs, got {len(in_shapes)}")
        H = self.heads
        split = []
        for x in in_shapes[:3]:
            if len(x) != 3 or x[1] != in_shapes[0][1] or x[2] % H:
                raise ValueError(
                    f"expected q, k, v of shape (T, N, E) with E a multiple of {H} heads, got "
                    f"shapes {tuple(map(tuple, in_shapes[:3]))}"
                )
            split.append((x[1], H, x[0], x[2] // H))
        N, _, L, hd = self.attend.shape(*split, *in_shapes[3:])
        return (L * N, H * hd)

    def forward(self, q: Array, k: Array, v: Array, *mask: Array) -> tuple[Array, Any]:
        heads = [split_heads(x, self.heads) for x in (q, k, v)]  # (N, H, T, hd)
        o, cache = self.attend.forward(*heads, *mask)
        o = merge_heads(o)  # (L, N, E)
        return o.reshape(-1, o.shape[-1]), (cache, q.shape[:2])

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array | None, ...], dict]:
        cache, (L, N) = cache
        deltas, _ = self.attend.backward(split_heads(delta.reshape(L, N, -1), self.heads), cache)
        dq, dk, dv, *dM = deltas
        return (merge_heads(dq), merge_heads(dk), merge_heads(dv), *dM), {}


def canonical_mask(m: Array) -> Array:
    """torch's F._canonical_mask: a bool mask (True: masked out) as 0 / −∞, a float one as is."""
    return np.where(m, -np.inf, 0.0) if m.dtype == bool else m


class AttentionMask(Layer):
    """M = attn_mask + key_padding_mask as nn.MultiheadAttention merges them, (N, H, L, S)
    (bool masks as 0 / −∞: True masks out, unlike scaled_dot_product_attention's), with `pad`
    columns of 0 appended (add_bias_kv, add_zero_attn);  δ of a float mask: δM summed over
    what it was broadcast along, its pad columns dropped; a bool mask gets None.

    Inputs: attn_mask ((L, S) or (N·H, L, S)) when has_attn_mask, then key_padding_mask
    ((N, S)) when has_key_padding_mask."""

    integer_inputs = True  # bool masks

    def __init__(
        self,
        batch: int,
        heads: int,
        *,
        has_attn_mask: bool,
        has_key_padding_mask: bool,
        pad: int = 0,
    ) -> None:
        super().__init__()
        if not (has_attn_mask or has_key_padding_mask):
            raise ValueError("expected an attn_mask or a key_padding_mask to merge, got neither")
        self.batch, self.heads, self.pad = int(batch), int(heads), int(pad)
        self.has_attn, self.has_kpm = bool(has_attn_mask), bool(has_key_padding_mask)
        self.n_inputs = self.has_attn + self.has_kpm  # type: ignore[misc]  # set per instance

    def __repr__(self) -> str:
        parts = ["attn_mask"] * self.has_attn + ["key_padding_mask"] * self.has_kpm
        return f"AttentionMask({' + '.join(parts)}, pad={self.pad})"

    def shape(self, *in_shapes: Shape) -> Shape:
        if len(in_shapes) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} inputs, got {len(in_shapes)}")
        N, H = self.batch, self.heads
        L = S = None
        if self.has_attn:
            a = tuple(in_shapes[0])
            if len(a) not in (2, 3) or len(a) == 3 and a[0] != N * H:
                raise ValueError(
                    f"expected an attn_mask of shape (L, S) or ({N * H}, L, S), got {a}"
                )
            L, S = a[-2:]
        if self.has_kpm:
            k = tuple(in_shapes[-1])
            if len(k) != 2 or k[0] != N or S is not None and k[1] != S:
                raise ValueError(
                    f"expected a key_padding_mask of shape ({N}, {S if S is not None else 'S'}), "
                    f"got {k}"
                )
            S = k[1]
        return (N, H, 1 if L is None else L, S + self.pad)

    def forward(self, *masks: Array) -> tuple[Array, Any]:
        out = self.shape(*(m.shape for m in masks))
        N, H, L, S = out[0], out[1], out[2], out[3] - self.pad
        M = np.zeros(out)  # (N, H, L, S + pad): the pad columns stay 0
        shapes = []
        for k, m in enumerate(masks):
            if not (m.dtype == bool or np.issubdtype(m.dtype, np.floating)):
                raise ValueError(f"expected bool or float masks, got dtype {m.dtype}")
            is_attn = self.has_attn and k == 0
            c = canonical_mask(m)
            if is_attn:
                M[..., :S] += c.reshape(N, H, L, S) if c.ndim == 3 else c
            else:
                M[..., :S] += c[:, None, None, :]
            shapes.append((is_attn, m.shape if m.dtype != bool else None))
        return M, (shapes, S)

    def backward(self, delta: Array, cache: Any) -> tuple[Any, dict[str, Array]]:
        shapes, S = cache
        d = delta[..., :S]
        deltas: list[Array | None] = []
        for is_attn, shape in shapes:
            if shape is None:  # a bool mask
                deltas.append(None)
            elif is_attn:
                deltas.append(d.reshape(shape) if len(shape) == 3 else d.sum(axis=(0, 1)))
            else:
                deltas.append(d.sum(axis=(1, 2)))
        return (deltas[0] if self.n_inputs == 1 else tuple(deltas)), {}
