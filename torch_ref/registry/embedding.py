"""Embedding lookups (manual_bp.ops.embedding): nn.Embedding / F.embedding and
nn.EmbeddingBag / F.embedding_bag, with integer ids as inputs (they carry no gradient).

sparse=True gives the dense gradient (torch's sparse COO gradient holds the same values);
max_norm renormalises the looked-up rows first, as torch does (in the twin's weight, in place;
the manual layer on a copy); EmbeddingBag's scale_grad_by_freq is refused (torch's counts are
not the ids' frequencies).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.ops.embedding import Embedding, EmbeddingBag
from torch_ref.registry.core import (
    Op,
    OpEntry,
    Ref,
    Refusal,
    Sample,
    tensor,
    weighted,
)


def _ids(x: Any, what: str) -> Any:
    ids = tensor(x, what)
    floating = ids.dtype == "float" if isinstance(ids, Ref) else ids.tensor.is_floating_point()
    if floating:
        raise ValueError(f"{what}: expected integer ids (Long or Int), got a floating tensor")
    return ids


def embedding(
    input: Any,
    weight: Any,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Op:
    """F.embedding / nn.Embedding: an Embedding layer holding a copy of the weight."""

    def make(w: Any, b: Any) -> Embedding:
        return Embedding(w, padding_idx, max_norm, scale_grad_by_freq, sparse, norm_type)

    return weighted(make, "embedding", (_ids(input, "embedding"),), weight)


def embedding_bag(
    input: Any,
    weight: Any,
    offsets: Any = None,
    max_norm: float | None = None,
    norm_type: float = 2,
    scale_grad_by_freq: bool = False,
    mode: str = "mean",
    sparse: bool = False,
    per_sample_weights: Any = None,
    include_last_offset: bool = False,
    padding_idx: int | None = None,
) -> Op:
    """F.embedding_bag: an EmbeddingBag layer holding a copy of the weight (or, computed in
    forward, taking it as an input); its inputs are the ids, the offsets (if any) and the
    per-sample weights (if any)."""

    def make(w: Any, b: Any) -> EmbeddingBag:
        return EmbeddingBag(
            w,
            mode,
            has_offsets=offsets is not None,
            has_per_sample_weights=per_sample_weights is not None,
            include_last_offset=include_last_offset,
            padding_idx=padding_idx,
            max_norm=max_norm,
            scale_grad_by_freq=scale_grad_by_freq,
            sparse=sparse,
            norm_type=norm_type,
        )

    inputs = [_ids(input, "embedding_bag")]
    if offsets is not None:
        inputs.append(_ids(offsets, "embedding_bag (offsets)"))
    if per_sample_weights is not None:
        inputs.append(tensor(per_sample_weights, "embedding_bag (per_sample_weights)"))
    return weighted(make, "embedding_bag", tuple(inputs), weight)


def embedding_bag_module(
    input: Any, offsets: Any = None, per_sample_weights: Any = None, **module: Any
) -> Op:
    """nn.EmbeddingBag's forward(input, offsets, per_sample_weights) with its attributes."""
    return embedding_bag(input, offsets=offsets, per_sample_weights=per_sample_weights, **module)


# --- samples --------------------------------------------------------------------------------


def _embedding_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([[0, 2, 5, 2], [1, 1, 3, 0]])
    return [
        Sample("module", (ids,), module=nn.Embedding(6, 3).double()),
        Sample(
            "a table computed in forward (scaled)",
            (ids,),
            fn=lambda i, w: F.embedding(i, w * 3.0, padding_idx=1),
            params={"w": torch.randn(6, 3, generator=g, dtype=torch.float64)},
        ),
        Sample(
            "padding_idx, scale_grad_by_freq",
            (ids,),
            module=nn.Embedding(6, 3, padding_idx=2, scale_grad_by_freq=True).double(),
        ),
        Sample(
            "max_norm: the rows over it renormalised first (in the twin's weight, in place)",
            (ids,),
            module=nn.Embedding(6, 3, max_norm=1.0).double(),
        ),
        Sample(
            "max_norm, norm_type 1, padding_idx",
            (ids,),
            module=nn.Embedding(6, 3, max_norm=1.5, norm_type=1.0, padding_idx=5).double(),
        ),
        Sample(
            "function",
            (ids,),
            fn=lambda ids, w: F.embedding(ids, w, padding_idx=-1),
            params={"w": torch.randn(6, 3, generator=g, dtype=torch.float64)},
        ),
    ]


def _embedding_refusals() -> list[Refusal]:
    ids = torch.tensor([[0, 2]])
    return [
        Refusal(
            "float ids",
            (ids.double(),),
            ValueError,
            "integer ids",
            module=nn.Embedding(6, 3).double(),
        ),
    ]


def _bag_function_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(2)
    w = torch.randn(6, 3, generator=g, dtype=torch.float64)
    ids = torch.tensor([0, 2, 5, 2, 1, 1, 3])
    psw = torch.rand(7, generator=g, dtype=torch.float64)
    bag = F.embedding_bag
    return [
        Sample("2-d ids, mean", (ids[:6].view(3, 2),), fn=lambda i, w: bag(i, w), params={"w": w}),
        Sample(
            "offsets, max",
            (ids, torch.tensor([0, 2, 2, 5])),
            fn=lambda i, o, w: bag(i, w, o, mode="max"),
            params={"w": w},
        ),
        Sample(
            "per-sample weights (their gradient too)",
            (ids, torch.tensor([0, 4]), psw),
            fn=lambda i, o, p, w: bag(i, w, o, mode="sum", per_sample_weights=p),
            params={"w": w},
        ),
        Sample(
            "a table computed in forward, offsets, max",
            (ids, torch.tensor([0, 3, 3])),
            fn=lambda i, o, w: bag(i, w.tanh() * 2, o, mode="max"),
            params={"w": w},
        ),
        Sample(
            "torch.embedding_bag (what F.embedding_bag calls), mean",
            (ids, torch.tensor([0, 2, 5])),
            fn=lambda i, o, w: torch.embedding_bag(w, i, o, False, 1)[0],
            params={"w": w},
        ),
    ]


def _bag_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(1)
    ids = torch.tensor([0, 2, 5, 2, 1, 1, 3])
    offsets = torch.tensor([0, 3, 3])
    psw = torch.rand(7, generator=g, dtype=torch.float64)
    return [
        Sample("2-d, mean", (ids[:6].view(2, 3),), module=nn.EmbeddingBag(6, 3).double()),
        Sample("offsets, sum", (ids, offsets), module=nn.EmbeddingBag(6, 3, mode="sum").double()),
        Sample("offsets, max", (ids, offsets), module=nn.EmbeddingBag(6, 3, mode="max").double()),
        Sample(
            "max_norm, max (the winners among the renormalised rows)",
            (ids, offsets),
            module=nn.EmbeddingBag(6, 3, mode="max", max_norm=0.8).double(),
        ),
        Sample(
            "max_norm, per-sample weights",
            (ids, offsets, psw),
            module=nn.EmbeddingBag(6, 3, mode="sum", max_norm=1.0).double(),
        ),
        Sample(
            "per-sample weights, padding_idx",
            (ids, offsets, psw),
            module=nn.EmbeddingBag(6, 3, mode="sum", padding_idx=1).double(),
        ),
        Sample(
            "function, include_last_offset",
            (ids, torch.tensor([0, 3, 3, 7])),
            fn=lambda ids, off, w: F.embedding_bag(
                ids, w, off, mode="sum", include_last_offset=True
            ),
            params={"w": torch.randn(6, 3, generator=g, dtype=torch.float64)},
        ),
    ]


def _bag_refusals() -> list[Refusal]:
    ids = torch.tensor([[0, 2]])
    return [
        Refusal(
            "scale_grad_by_freq",
            (ids,),
            ValueError,
            "frequencies",
            module=nn.EmbeddingBag(6, 3, scale_grad_by_freq=True).double(),
        ),
    ]


ROWS = [
    OpEntry(
        "embedding",
        "embedding",
        embedding,
        functions=(F.embedding,),
        modules=(nn.Embedding,),
        module_args=(
            "weight",
            "padding_idx",
            "max_norm",
            "norm_type",
            "scale_grad_by_freq",
            "sparse",
        ),
        note="integer ids of any shape, padding_idx, scale_grad_by_freq; sparse=True gives the "
        "dense gradient; max_norm (the looked-up rows renormalised first, as torch does)",
        samples=_embedding_samples,
        refusals=_embedding_refusals,
    ),
    OpEntry(
        "embedding_bag",
        "embedding",
        embedding_bag,
        functions=(F.embedding_bag,),
        note="sum, mean, max (first index wins a tie), offsets, include_last_offset, "
        "per_sample_weights, padding_idx, max_norm; scale_grad_by_freq refused",
        samples=_bag_function_samples,
    ),
    OpEntry(
        "EmbeddingBag",
        "embedding",
        embedding_bag_module,
        modules=(nn.EmbeddingBag,),
        module_args=(
            "weight",
            "max_norm",
            "norm_type",
            "scale_grad_by_freq",
            "mode",
            "sparse",
            "include_last_offset",
            "padding_idx",
        ),
        note="as embedding_bag",
        samples=_bag_samples,
        refusals=_bag_refusals,
    ),
]
