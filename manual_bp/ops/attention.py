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
from manual_bp.ops.base import Array, Layer, Shape


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
        if not all(np.issubdtype(x.dtype, np.floating) for x in (q, k, v)):
            raise ValueError(
                f"expected floating query, key and value, got {q.dtype}, {k.dtype}, {v.dtype}"
            )
        m = mask[0] if mask else None
        if m is not None and not (m.dtype == bool or np.issubdtype(m.dtype, np.floating)):
            raise ValueError(f"expected a bool or float attn_mask, got dtype {m.dtype}")
        scale = 1.0 / math.sqrt(q.shape[-1]) if self.scale is None else self.scale
        Kr = np.repeat(k, group, axis=-3) if group > 1 else k  # (…, H, S, E): a key per query head
        Vr = np.repeat(v, group, axis=-3) if group > 1 else v
        S = scale * (q @ np.swapaxes(Kr, -1, -2))  # (…, L, S)
        keep = None  # where S is not masked to −∞ (bool and causal masks)
        if m is not None and m.dtype == bool:
            keep = np.broadcast_to(m, scores_shape)
        elif m is not None:
            S = S + m
        if self.is_causal:
            keep = np.broadcast_to(_causal(*scores_shape[-2:]), scores_shape)
        if keep is not None:
            S = np.where(keep, S, -np.inf)
        top = S.max(axis=-1, keepdims=True) if S.shape[-1] else np.full((*S.shape[:-1], 1), -np.inf)
        empty = np.isneginf(top)  # rows whose every key is masked
        if self.empty_rows == "refuse" and empty.any():
            raise ValueError(
                f"{int(empty.sum())} query row(s) have every key masked: this torch gives NaN "
                "there, so there is no gradient to compare"
            )
        e = np.exp(S - np.where(empty, 0.0, top))
        P = np.where(empty, 0.0, e / np.where(empty, 1.0, e.sum(axis=-1, keepdims=True)))
        O = P @ Vr  # (…, L, Ev)
        float_mask = m.shape if m is not None and m.dtype != bool else None
        cache = (q, Kr, Vr, P, scale, group, (k.shape, v.shape), float_mask)
        return ((O, P) if self.need_weights else O), cache

    def backward(self, delta: Any, cache: Any) -> tuple[tuple[Array | None, ...], dict]:
        q, Kr, Vr, P, scale, group, (k_shape, v_shape), float_mask = cache
        dO, dP_out = delta if self.need_weights else (delta, None)
        dO = np.zeros((*P.shape[:-1], Vr.shape[-1])) if dO is None else dO
        dV = np.swapaxes(P, -1, -2) @ dO  # δV = Pᵀ δO
        dP = dO @ np.swapaxes(Vr, -1, -2)  # δP = δO Vᵀ
        if dP_out is not None:
            dP = dP + dP_out
        dS = _softmax_backward(P, dP)
        dQ = scale * (dS @ Kr)  # δQ = scale · δS K
        dK = scale * (np.swapaxes(dS, -1, -2) @ q)  # δK = scale · δSᵀ Q
        if group > 1:  # each key head served `group` query heads: their δ add up
            dK = _sum_groups(dK, group)
            dV = _sum_groups(dV, group)
        deltas: list[Array | None] = [
            unbroadcast(dQ, q.shape),
            unbroadcast(dK, k_shape),
            unbroadcast(dV, v_shape),
        ]
        if self.has_mask:  # a bool mask carries no gradient; a float one gets δS
            deltas.append(None if float_mask is None else unbroadcast(dS, float_mask))
        return tuple(deltas), {}


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
