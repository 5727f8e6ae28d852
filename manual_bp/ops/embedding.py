"""Embedding lookups: rows of a weight table picked by integer ids, forward and backward
side by side, in torch's layout (weight (num_embeddings, embedding_dim)).

    Embedding      z[…] = W[ids[…]]                 ∂L/∂W[r] = Σ_{ids = r} δ  (÷ count(r))
    EmbeddingBag   z[b] = Σ/mean/max over bag b of (w·) W[ids]    ∂L/∂W: δ sent back the same way

The ids carry no gradient: backward returns None for them (the network skips it).

Options as torch has them, and where we stop:
- `padding_idx`: that row is looked up as usual but receives no gradient (Embedding), or its
  entries are left out of their bag (EmbeddingBag).
- `scale_grad_by_freq`: Embedding divides row r's gradient by how often r occurs in the ids.
  EmbeddingBag's is refused: torch's CPU kernel divides by counts that are not the ids'
  frequencies (ids [0, 1, 1, 2, 3, 0] in bags [0:3], [3:6]: rows 2 and 3, once each, are
  halved), so there is no formula to check it against.
- `max_norm`: torch first renormalises, in place and without gradient, each looked-up row
  whose `norm_type`-norm exceeds max_norm (row ·= max_norm / (norm + 1e-7)); the lookup reads
  the renormalised rows, and the gradient is the lookup's, with respect to the weight as it
  now is. Here the renormalisation is made on a copy (the layer's weight is left as given).
- `sparse=True`: the gradient given is the dense one. The values are the same; only
  torch's storage differs (a sparse COO tensor of the rows looked up, duplicates unsummed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape, zeros_like


def _ids(x: Array, num: int, what: str) -> Array:
    """x as integer ids in [0, num), else ValueError (torch: IndexError, or a dtype error)."""
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"expected integer ids for {what}, got dtype {x.dtype}")
    if x.size and (x.min() < 0 or x.max() >= num):
        bad = x[(x < 0) | (x >= num)].flat[0]
        raise ValueError(
            f"expected ids in [0, {num}) for {what} of {num} rows, got {bad} (torch: index out "
            "of range)"
        )
    return x


def _padding(padding_idx: int | None, num: int) -> int | None:
    """torch's padding_idx: negative counts from the end; must name a row."""
    if padding_idx is None:
        return None
    if not -num <= padding_idx < num:
        raise ValueError(f"expected padding_idx in [{-num}, {num}), got {padding_idx}")
    return padding_idx % num


def _renormed(W: Array, ids: Array, max_norm: float | None, norm_type: float) -> Array:
    """torch's embedding_renorm_ on a copy: each row among the ids whose norm exceeds max_norm
    scaled by max_norm / (norm + 1e-7); W itself when max_norm is None."""
    if max_norm is None:
        return W
    rows = np.unique(ids)
    norms = np.linalg.norm(W[rows], ord=norm_type, axis=1)
    out = W.copy()
    out[rows] *= np.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)[:, None]
    return out


class Embedding(Layer):
    """z[…] = W[ids[…]], W of shape (num_embeddings, embedding_dim);
    ∂L/∂W[r] = Σ of δ over the positions where ids = r (÷ that count with
    scale_grad_by_freq; 0 for padding_idx);  the ids get no δ."""

    reports_delta = True
    integer_inputs = True  # the ids

    def __init__(
        self,
        weight: Array,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        norm_type: float = 2.0,
    ) -> None:
        super().__init__()
        self.max_norm, self.norm_type = max_norm, float(norm_type)
        self.params["weight"] = np.asarray(weight, dtype=np.float64)
        if self.params["weight"].ndim != 2:
            raise ValueError(
                f"expected a weight of shape (num_embeddings, embedding_dim), got "
                f"{self.params['weight'].shape}"
            )
        self.padding_idx = _padding(padding_idx, self.params["weight"].shape[0])
        self.scale_grad_by_freq = bool(scale_grad_by_freq)
        self.sparse = bool(sparse)  # NOTE: the gradient is given dense (see the module's notes)

    def __repr__(self) -> str:
        num, dim = self.params["weight"].shape
        return f"Embedding({num}, {dim}, padding_idx={self.padding_idx})"

    def shape(self, ids_shape: Shape) -> Shape:
        return (*ids_shape, self.params["weight"].shape[1])

    def forward(self, ids: Array) -> tuple[Array, Array]:
        W = self.params["weight"]
        ids = _ids(ids, W.shape[0], "an embedding")
        return _renormed(W, ids, self.max_norm, self.norm_type)[ids], ids  # (*ids.shape, dim)

    def backward(self, delta: Array, ids: Array) -> tuple[None, dict[str, Array]]:
        return None, self.param_grads(delta, ids)

    def param_grads(self, delta: Array, ids: Array) -> dict[str, Array]:
        W = self.params["weight"]
        flat = ids.reshape(-1)
        rows = delta.reshape(-1, W.shape[1])  # (entries, dim)
        if self.scale_grad_by_freq:  # each entry's δ ÷ its id's count, as torch adds them
            rows = rows * (1.0 / np.bincount(flat)[flat])[:, None]
        dW = zeros_like(W)
        np.add.at(dW, flat, rows)  # rows looked up twice add up
        if self.padding_idx is not None:
            dW[self.padding_idx] = 0.0  # NOTE: torch skips the padding row's gradient
        return {"weight": dW}


def _winners(rows: Array, top: Array, bag: Array) -> Array:
    """For each bag and dim, the entry whose value is the bag's max: the first in the bag on a
    tie, as torch's kernel (it replaces its running max only on a strict >)."""
    n = len(rows)
    entry = np.where(rows == top[bag], np.arange(n)[:, None], n)  # (entries, dim)
    first = np.full(top.shape, n)
    np.minimum.at(first, bag, entry)
    return first


class EmbeddingBag(Layer):
    """z[b] = the sum, mean or max over the entries i of bag b of w_i · W[ids_i] (w: the
    per-sample weights, sum mode only; entries equal to padding_idx left out; an empty bag
    gives 0);  ∂L/∂W[r] = Σ over entries with ids = r of w_i δ[b] (÷ |bag| for mean; max:
    δ[b, d] to the row that won dim d, the first in the bag on a tie, as torch),
    δ_w_i = ⟨δ[b], W[ids_i]⟩.

    Inputs: ids (B, N) (each row a bag), or 1-d ids and their bags' offsets; then the
    per-sample weights when has_per_sample_weights. Ids and offsets get no δ.

    No ties(): the max compares the weight's own entries, copied exactly from torch's, so
    no rounding can decide which entry wins (an exact tie goes to the first, as torch).
    """

    reports_delta = True
    integer_inputs = True  # the ids and offsets

    def __init__(
        self,
        weight: Array,
        mode: str = "mean",
        *,
        has_offsets: bool = False,
        has_per_sample_weights: bool = False,
        include_last_offset: bool = False,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        norm_type: float = 2.0,
    ) -> None:
        super().__init__()
        self.max_norm, self.norm_type = max_norm, float(norm_type)
        if mode not in ("sum", "mean", "max"):
            raise ValueError(f"expected mode 'sum', 'mean' or 'max', got {mode!r}")
        if scale_grad_by_freq:
            raise ValueError(
                "scale_grad_by_freq is not supported for EmbeddingBag: torch's kernel scales "
                "rows by counts that are not the ids' frequencies, so there is no reference "
                "to check against"
            )
        if has_per_sample_weights and mode != "sum":
            raise ValueError(f"per_sample_weights are only supported for mode 'sum', got {mode!r}")
        self.params["weight"] = np.asarray(weight, dtype=np.float64)
        if self.params["weight"].ndim != 2:
            raise ValueError(
                f"expected a weight of shape (num_embeddings, embedding_dim), got "
                f"{self.params['weight'].shape}"
            )
        self.mode, self.has_offsets = mode, bool(has_offsets)
        self.has_psw, self.include_last_offset = bool(has_per_sample_weights), include_last_offset
        self.padding_idx = _padding(padding_idx, self.params["weight"].shape[0])
        self.sparse = bool(sparse)  # NOTE: the gradient is given dense (see the module's notes)
        self.n_inputs = 1 + self.has_offsets + self.has_psw  # type: ignore[misc]

    def __repr__(self) -> str:
        num, dim = self.params["weight"].shape
        return f"EmbeddingBag({num}, {dim}, mode={self.mode!r}, padding_idx={self.padding_idx})"

    def _bags(self, ids_shape: Shape, offsets_shape: Shape | None) -> int:
        if offsets_shape is None:
            if len(ids_shape) != 2:
                raise ValueError(
                    f"expected 2-d ids (bags, entries) without offsets, got shape {ids_shape}"
                )
            return ids_shape[0]
        if len(ids_shape) != 1 or len(offsets_shape) != 1:
            raise ValueError(
                f"expected 1-d ids and 1-d offsets, got shapes {ids_shape} and {offsets_shape}"
            )
        return offsets_shape[0] - 1 if self.include_last_offset else offsets_shape[0]

    def shape(self, *in_shapes: Shape) -> Shape:
        if len(in_shapes) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} inputs, got {len(in_shapes)}")
        ids_shape = tuple(in_shapes[0])
        offsets_shape = tuple(in_shapes[1]) if self.has_offsets else None
        if self.has_psw and tuple(in_shapes[-1]) != ids_shape:
            raise ValueError(
                f"expected per_sample_weights of the ids' shape {ids_shape}, got "
                f"{tuple(in_shapes[-1])}"
            )
        return (self._bags(ids_shape, offsets_shape), self.params["weight"].shape[1])

    def _bag_of(self, ids: Array, offsets: Array | None) -> tuple[Array, int]:
        """Each entry's bag (entries in order), and the number of bags."""
        if offsets is None:
            B, N = ids.shape
            return np.repeat(np.arange(B), N), B
        offsets = _ids(offsets, ids.shape[0] + 1, "the offsets")
        n = ids.shape[0]
        B = len(offsets) - 1 if self.include_last_offset else len(offsets)
        ends = offsets[1:] if self.include_last_offset else np.append(offsets[1:], n)
        starts_ok = len(offsets) == 0 or offsets[0] == 0
        last_ok = not self.include_last_offset or len(offsets) > 0 and offsets[-1] == n
        bad = not starts_ok or not last_ok or bool(np.any(np.diff(offsets) < 0))
        if bad:
            raise ValueError(
                f"expected offsets starting at 0, non-decreasing, up to the {n} ids"
                f"{' and ending at ' + str(n) if self.include_last_offset else ''}, got "
                f"{offsets.tolist()}"
            )
        return np.repeat(np.arange(B), ends - offsets[:B]), B

    def forward(self, ids: Array, *rest: Array) -> tuple[Array, Any]:
        W = self.params["weight"]
        self.shape(ids.shape, *(r.shape for r in rest))
        offsets = rest[0] if self.has_offsets else None
        psw = rest[-1] if self.has_psw else None
        ids = _ids(ids, W.shape[0], "an embedding bag")
        W = _renormed(W, ids, self.max_norm, self.norm_type)
        bag, B = self._bag_of(ids, offsets)
        ids = ids.reshape(-1)
        keep = ids != self.padding_idx if self.padding_idx is not None else np.ones(len(ids), bool)
        ids, bag = ids[keep], bag[keep]
        rows = W[ids]  # (entries, dim)
        if psw is not None:
            rows = rows * psw.reshape(-1)[keep, None]
        z = np.zeros((B, W.shape[1]))
        count = np.bincount(bag, minlength=B)
        first = None
        if self.mode == "max":
            top = np.full((B, W.shape[1]), -np.inf)
            np.maximum.at(top, bag, rows)
            first = _winners(rows, top, bag)
            z = np.where(count[:, None] > 0, top, 0.0)
        else:
            np.add.at(z, bag, rows)
            if self.mode == "mean":
                z /= np.maximum(count, 1)[:, None]
        return z, (ids, bag, keep, count, first, psw, W)

    def backward(self, delta: Array, cache: Any) -> tuple[Any, dict[str, Array]]:
        ids, bag, keep, count, first, psw, W = cache
        deltas: list[Array | None] = [None] * (1 + self.has_offsets)
        if self.has_psw:
            d_psw = np.zeros(keep.shape)
            d_psw[keep] = np.einsum("nd,nd->n", delta[bag], W[ids])  # δ_w = ⟨δ[b], W[id]⟩
            deltas.append(d_psw.reshape(psw.shape))
        grads = self.param_grads(delta, cache)
        return (deltas[0] if self.n_inputs == 1 else tuple(deltas)), grads

    def param_grads(self, delta: Array, cache: Any) -> dict[str, Array]:
        ids, bag, keep, count, first, psw, W = cache
        dW = zeros_like(W)
        if self.mode == "max":
            won = count > 0  # (B,): an empty bag sends nothing back
            cols = np.broadcast_to(np.arange(W.shape[1]), first.shape)
            np.add.at(dW, (ids[first[won]], cols[won]), delta[won])
            return {"weight": dW}
        per_entry = delta[bag]  # (entries, dim): each entry's bag's δ
        if self.mode == "mean":  # each entry's share, δ · (1 / |bag|), as torch scales it
            per_entry = per_entry * (1.0 / count[bag])[:, None]
        if psw is not None:
            per_entry = per_entry * psw.reshape(-1)[keep, None]
        np.add.at(dW, ids, per_entry)
        return {"weight": dW}
