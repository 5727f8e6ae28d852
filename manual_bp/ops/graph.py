"""Layers that wire the graph: a model tensor as a value, and one output of a multi-output layer.

    Parameter   z = θ                     ∂L/∂θ = δ          (x + self.pos_embedding)
    Constant    z = c                     (no gradient)      (a buffer, a fixed mask)
    Select(k)   z = a[k]                  δ_prev = (None, …, δ, …, None)

A Parameter is a leaf of the network: where a model's forward uses `self.cls_token` or
`self.layer_scale` as an operand (rather than as a layer's weight), its gradient is the δ that
reaches it, summed over every use by the network's backward like any other value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape


class Parameter(Layer):
    """z = θ, a model tensor used as an operand;  ∂L/∂θ = δ (summed over its uses)."""

    n_inputs = 0

    def __init__(self, value: Array) -> None:
        super().__init__()
        self.params["value"] = np.asarray(value)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.params['value'].shape})"

    def shape(self) -> Shape:
        return self.params["value"].shape

    def forward(self) -> tuple[Array, None]:
        return self.params["value"], None

    def backward(self, delta: Array, cache: None) -> tuple[tuple[()], dict[str, Array]]:
        return (), {"value": delta}


class Constant(Layer):
    """z = c, a tensor that carries no gradient (a buffer, a mask, integer indices)."""

    n_inputs = 0

    def __init__(self, value: Array) -> None:
        super().__init__()
        self.value = np.asarray(value)

    def __repr__(self) -> str:
        return f"Constant(shape={self.value.shape}, dtype={self.value.dtype})"

    def shape(self) -> Shape:
        return self.value.shape

    def forward(self) -> tuple[Array, None]:
        return self.value, None

    def backward(self, delta: Array, cache: None) -> tuple[tuple[()], dict[str, Array]]:
        return (), {}


class Select(Layer):
    """z = a[k], output k of a layer with several outputs;  δ_prev = δ at k, None elsewhere."""

    integer_inputs = True

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = int(k)

    def __repr__(self) -> str:
        return f"Select({self.k})"

    def shape(self, in_shapes: tuple[Shape, ...]) -> Shape:
        if not isinstance(in_shapes, tuple) or not all(isinstance(s, tuple) for s in in_shapes):
            raise ValueError(f"expected the outputs of a multi-output layer, got {in_shapes}")
        if not 0 <= self.k < len(in_shapes):
            raise ValueError(f"output {self.k} of a layer with {len(in_shapes)} outputs")
        return in_shapes[self.k]

    def forward(self, a: tuple[Array, ...]) -> tuple[Array, int]:
        return a[self.k], len(a)

    def backward(self, delta: Array, n: int) -> tuple[Any, dict[str, Array]]:
        return tuple(delta if i == self.k else None for i in range(n)), {}


class WeightInputs(Layer):
    """A weighted layer (Linear, Conv, Bilinear, Embedding, ...) whose weight and bias are
    values of the network (computed in forward: a pruning mask, a merged LoRA update, a
    standardised weight) rather than its own parameters:  z = layer_{W, b}(x…);  δ_x as the
    layer's, and δ_W = ∂L/∂W, δ_b = ∂L/∂b, the layer's own parameter gradients, handed back
    as input gradients.

    `make(weight, bias)` builds the layer for given arrays (bias None when absent). Inputs:
    the layer's own `n_x` inputs, W, and b when `has_bias`."""

    integer_inputs = True  # the layer's own inputs are checked by the layer (token ids)

    def __init__(self, make: Any, has_bias: bool, what: str = "layer", n_x: int = 1) -> None:
        super().__init__()
        self.make, self.has_bias, self.what, self.n_x = make, bool(has_bias), what, int(n_x)
        self.n_inputs = self.n_x + 1 + self.has_bias  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"WeightInputs({self.what}, bias={self.has_bias})"

    def _layer(self, w: Array, b: Array | None) -> Layer:
        return self.make(w, b if self.has_bias else None)

    def shape(self, *in_shapes: Shape) -> Shape:
        weights = [np.zeros(s) for s in in_shapes[self.n_x :]]
        layer = self._layer(weights[0], weights[1] if self.has_bias else None)
        return layer.shape(*in_shapes[: self.n_x])

    def forward(self, *inputs: Array) -> tuple[Array, Any]:
        xs, (w, *b) = inputs[: self.n_x], inputs[self.n_x :]
        layer = self._layer(w, b[0] if b else None)
        z, cache = layer.forward(*xs)
        return z, (layer, cache)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Any, ...], dict[str, Array]]:
        layer, inner = cache
        delta_x, grads = layer.backward(delta, inner)
        out = list(delta_x) if self.n_x > 1 else [delta_x]
        out.append(grads["weight"])
        if self.has_bias:
            out.append(grads["bias"])
        return tuple(out), {}
