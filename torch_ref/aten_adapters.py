"""Argument adapters of ATen ops whose row is reached under another spelling (the table
`_SPELLING` of torch_ref.lowering): each takes the ATen op's arguments and returns the
(args, kwargs) of the torch function whose row differentiates it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def embedding_bag(
    weight: Any,
    indices: Any,
    offsets: Any,
    scale_grad_by_freq: bool = False,
    mode: int = 0,
    sparse: bool = False,
    per_sample_weights: Any = None,
    include_last_offset: bool = False,
    padding_idx: int = -1,
) -> tuple[tuple, dict]:
    """aten._embedding_bag as F.embedding_bag (mode 0, 1, 2: sum, mean, max; padding_idx −1:
    none, as F.embedding_bag has already made a negative one positive)."""
    kwargs = {
        "scale_grad_by_freq": scale_grad_by_freq,
        "mode": ("sum", "mean", "max")[mode],
        "sparse": sparse,
        "per_sample_weights": per_sample_weights,
        "include_last_offset": include_last_offset,
        "padding_idx": None if padding_idx < 0 else padding_idx,
    }
    return (indices, weight, offsets), kwargs


def strided(x: Any, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
    """aten.as_strided(x, size, stride, offset) (and its copy) with the input's own geometry
    and its storage's values, which its row needs and a value of the record does not carry."""
    n = x.untyped_storage().nbytes() // x.element_size()
    fill = torch.as_strided(x.detach(), (n,), (1,), 0).double().numpy().copy()
    return (x, *args), {**kwargs, "_geometry": (tuple(x.stride()), x.storage_offset(), fill)}


def loss(*names: str) -> Callable[..., tuple[tuple, dict]]:
    """aten.<loss>(self, target, *options) as F.<loss>: the options by name, the reduction
    an enum in ATen (0, 1, 2: 'none', 'mean', 'sum')."""

    def adapt(x: Any, target: Any, *options: Any, **kwargs: Any) -> tuple[tuple, dict]:
        kwargs = {**dict(zip(names, options, strict=False)), **kwargs}
        if "reduction" in kwargs:
            kwargs["reduction"] = ("none", "mean", "sum")[kwargs["reduction"]]
        return (x, target), kwargs

    return adapt
