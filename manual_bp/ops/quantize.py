"""Fake quantisation: the forward rounds onto a grid, the backward is straight through.

torch defines the derivative of its fake-quantize ops as the straight-through estimator of
Bengio et al. 2013 (derivatives.yaml: `fake_quantize_per_tensor_affine_cachemask`,
grad · mask): δ passes where the rounded value lies inside [quant_min, quant_max] and is
zero where it was clamped. The rounding is torch's CPU kernel's: the scale is a float32,
x / scale is x times the float32 reciprocal, rounded half to even, and the
last product (steps times the scale) is a float32 one per tensor, float64 per channel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape


def _grid(
    x: Array, scale: Array, zero_point: Array, qmin: int, qmax: int, product: type
) -> tuple[Array, Array]:
    """(z, inside): z = (clamp(zp + round(x · (1/s)), qmin, qmax) − zp) · s, s a float32 and
    the last product in `product` precision (torch's kernels: float32 per tensor, float64
    per channel)."""
    s = np.asarray(scale, dtype=np.float32)
    inv = (np.float32(1.0) / s).astype(np.float64)
    q = zero_point + np.rint(x * inv)
    inside = (q >= qmin) & (q <= qmax)
    steps = np.clip(q, qmin, qmax) - zero_point
    return (steps.astype(product) * s.astype(product)).astype(np.float64), inside


class FakeQuantize(Layer):
    """z = (clamp(zp + round(x / s), q_min, q_max) − zp) · s;  δ_prev = δ ⊙ [q_min ≤ zp +
    round(x / s) ≤ q_max] (straight through inside the range). Per tensor (`axis` None) or
    per channel along `axis` (scale and zero_point vectors of that dim's size)."""

    def __init__(
        self, scale: Any, zero_point: Any, quant_min: int, quant_max: int, axis: int | None = None
    ) -> None:
        super().__init__()
        self.scale = np.asarray(scale, dtype=np.float64)
        self.zero_point = np.asarray(zero_point, dtype=np.float64)
        self.quant_min, self.quant_max, self.axis = int(quant_min), int(quant_max), axis
        if self.quant_min > self.quant_max:
            raise ValueError(
                f"fake_quantize: expected quant_min <= quant_max, got {quant_min} and {quant_max}"
            )
        if np.any(self.scale <= 0):
            raise ValueError(f"fake_quantize: expected a positive scale, got {scale}")

    def __repr__(self) -> str:
        where = "per tensor" if self.axis is None else f"axis={self.axis}"
        return f"FakeQuantize({where}, [{self.quant_min}, {self.quant_max}])"

    def shape(self, in_shape: Shape) -> Shape:
        if self.axis is not None:
            n = in_shape[self.axis] if -len(in_shape) <= self.axis < len(in_shape) else None
            if n is None or self.scale.shape != (n,) or self.zero_point.shape != (n,):
                raise ValueError(
                    f"fake_quantize_per_channel_affine: expected scale and zero_point of shape "
                    f"({n},) (dim {self.axis} of {tuple(in_shape)}), got "
                    f"{self.scale.shape} and {self.zero_point.shape}"
                )
        return tuple(in_shape)

    def _params(self, ndim: int) -> tuple[Array, Array]:
        if self.axis is None:
            return self.scale, self.zero_point
        at = [1] * ndim
        at[self.axis] = -1
        return self.scale.reshape(at), self.zero_point.reshape(at)

    def forward(self, x: Array) -> tuple[Array, Array]:
        self.shape(x.shape)
        product = np.float32 if self.axis is None else np.float64
        z, inside = _grid(x, *self._params(x.ndim), self.quant_min, self.quant_max, product)
        return z, inside

    def backward(self, delta: Array, inside: Array) -> tuple[Array, dict]:
        return delta * inside, {}
