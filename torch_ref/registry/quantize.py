"""Fake quantisation (quantisation-aware training): torch's fake-quantize ops, whose
gradient torch defines as straight through inside the range (manual_bp.ops.quantize).
The per-channel op is not here: torch runs it on float32 scales only, which the float64
twin cannot hand it."""

from __future__ import annotations

from typing import Any

import torch

from manual_bp.ops.quantize import FakeQuantize
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Param, Ref, Sample, number, tensor


def _qparam(v: Any, what: str) -> Any:
    """A scale or zero point: a number, or a tensor of the model that is not trained."""
    if isinstance(v, Param) and not v.trainable:
        return v.array()
    if isinstance(v, (Ref, Param)):
        raise UnsupportedModuleError(
            f"{what}: a scale or zero point that carries gradient is not supported "
            "(torch's fake_quantize gives it none); use a buffer or a number"
        )
    return number(v, what)


def fake_quantize_per_tensor_affine(
    input: Any, scale: Any, zero_point: Any, quant_min: int, quant_max: int
) -> Op:
    what = "fake_quantize_per_tensor_affine"
    layer = FakeQuantize(_qparam(scale, what), _qparam(zero_point, what), quant_min, quant_max)
    return Op(layer, (tensor(input, what),))


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _samples() -> list[Sample]:
    x = _randn(0, 3, 4, 5)
    return [
        Sample(
            "int8, inside and clamped",
            (x,),
            fn=lambda x: torch.fake_quantize_per_tensor_affine(x * 3, 0.05, 2, -128, 127),
        ),
        Sample(
            "uint4-like range, 0-d tensor qparams",
            (x,),
            fn=lambda x: torch.fake_quantize_per_tensor_affine(
                x, torch.tensor(0.25), torch.tensor(3), 0, 15
            ),
        ),
    ]


ROWS = [
    OpEntry(
        "fake_quantize_per_tensor_affine",
        "quantize",
        fake_quantize_per_tensor_affine,
        functions=(torch.fake_quantize_per_tensor_affine,),
        note="straight through inside [quant_min, quant_max], zero where clamped (as torch)",
        samples=_samples,
    ),
]
