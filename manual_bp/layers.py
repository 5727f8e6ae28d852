"""Layers: each one a forward and its backward side by side, in torch's layouts.

A layer is a pair of functions with no hidden state:

    forward(*a_prev)        -> (z, cache)         z: the layer's output
    backward(delta, cache)  -> (delta_prev, grads)

`delta` is ∂L/∂z, `delta_prev` is ∂L/∂a_prev (a tuple for layers with several inputs),
`grads` maps torch's parameter names ("weight", "bias") to ∂L/∂θ. The cache holds exactly
what backward needs. Elementwise activations are not layers: the network applies
f and f′ around each layer (see manual_bp.network), which is where the δ recursion lives.

Every layer also has `shape(*in_shapes) -> out_shape`, the check run over the whole
network before any arithmetic; it raises ValueError with what was expected and given.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

Array = np.ndarray
Shape = tuple[int, ...]


class Layer:
    """Base of all layers: parameters by torch's names, and the forward/backward pair."""

    params: dict[str, Array]
    #: names of the parameters in the L2 penalty λ/2 Σ‖W‖² (weights of Linear and Conv).
    decayed: ClassVar[tuple[str, ...]] = ()
    #: layers whose δ = ∂L/∂z is part of a trace (Linear and Conv).
    reports_delta: ClassVar[bool] = False
    #: how many tensors forward takes (variadic layers such as Add and Cat set it per instance)
    n_inputs: int = 1

    def __init__(self) -> None:
        self.params = {}

    def shape(self, *in_shapes: Shape) -> Shape:
        raise NotImplementedError

    def forward(self, *a_prev: Array) -> tuple[Array, Any]:
        raise NotImplementedError

    def backward(self, delta: Array, cache: Any) -> tuple[Any, dict[str, Array]]:
        raise NotImplementedError

    def param_grads(self, delta: Array, cache: Any) -> dict[str, Array]:
        """∂L/∂θ alone, for a layer whose input needs no gradient (the network's input):
        autograd skips that product too. Layers with a cheaper way override this."""
        return self.backward(delta, cache)[1]

    def __repr__(self) -> str:
        return type(self).__name__


def _dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


# --- affine --------------------------------------------------------------------------


class Linear(Layer):
    """z = a Wᵀ + b, W of shape (out, in).  ∂L/∂W = δᵀ a,  ∂L/∂b = Σₙ δ,  δ_prev = δ W."""

    decayed = ("weight",)
    reports_delta = True

    def __init__(self, weight: Array, bias: Array | None = None) -> None:
        super().__init__()
        self.params["weight"] = np.asarray(weight, dtype=np.float64)
        if bias is not None:
            self.params["bias"] = np.asarray(bias, dtype=np.float64)

    def __repr__(self) -> str:
        out_features, in_features = self.params["weight"].shape
        return f"Linear({in_features} → {out_features}, bias={'bias' in self.params})"

    def shape(self, in_shape: Shape) -> Shape:
        out_features, in_features = self.params["weight"].shape
        if len(in_shape) == 0 or in_shape[-1] != in_features:
            raise ValueError(
                f"expected input (*, {in_features}) with {in_features} features, "
                f"got shape {tuple(in_shape)}"
            )
        return (*in_shape[:-1], out_features)

    def forward(self, a: Array) -> tuple[Array, Array]:
        z = a @ self.params["weight"].T
        if "bias" in self.params:
            z += self.params["bias"]  # z is fresh from the matmul: add in place
        return z, a

    def backward(self, delta: Array, a: Array) -> tuple[Array, dict[str, Array]]:
        return delta @ self.params["weight"], self.param_grads(delta, a)

    def param_grads(self, delta: Array, a: Array) -> dict[str, Array]:
        W = self.params["weight"]
        delta_rows = delta.reshape(-1, W.shape[0])  # (N·…, out): any leading dims are a batch
        grads = {"weight": delta_rows.T @ a.reshape(-1, W.shape[1])}
        if "bias" in self.params:
            grads["bias"] = delta_rows.sum(axis=0)
        return grads


# --- shape-only layers ---------------------------------------------------------------


class Identity(Layer):
    """z = a, δ_prev = δ. Also Dropout in eval mode, and the layer under a lone activation."""

    def shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def forward(self, a: Array) -> tuple[Array, None]:
        return a, None

    def backward(self, delta: Array, cache: None) -> tuple[Array, dict[str, Array]]:
        return delta, {}


class Flatten(Layer):
    """z = a reshaped with dims start..end merged, δ_prev = δ reshaped back."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def __repr__(self) -> str:
        return f"Flatten({self.start_dim}, {self.end_dim})"

    def shape(self, in_shape: Shape) -> Shape:
        ndim = max(len(in_shape), 1)
        start, end = _dim(self.start_dim, ndim), _dim(self.end_dim, ndim)
        if not (0 <= start < ndim and 0 <= end < ndim) or start > end:
            raise ValueError(
                f"cannot flatten dims {self.start_dim}..{self.end_dim} of an input of "
                f"shape {tuple(in_shape)}"
            )
        if len(in_shape) == 0:
            return (1,)
        merged = int(np.prod(in_shape[start : end + 1], dtype=np.int64))
        return (*in_shape[:start], merged, *in_shape[end + 1 :])

    def forward(self, a: Array) -> tuple[Array, Shape]:
        return a.reshape(self.shape(a.shape)), a.shape

    def backward(self, delta: Array, in_shape: Shape) -> tuple[Array, dict[str, Array]]:
        return delta.reshape(in_shape), {}


# --- softmax along a dim -------------------------------------------------------------


def _softmax_dim(dim: int | None, ndim: int) -> int:
    """torch's rule for Softmax(dim=None): dim 0 for 0-, 1- and 3-d inputs, else dim 1."""
    if dim is None:
        return 0 if ndim in (0, 1, 3) else 1
    return _dim(dim, ndim)


class _AlongDim(Layer):
    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"

    def shape(self, in_shape: Shape) -> Shape:
        ndim = len(in_shape)
        d = _softmax_dim(self.dim, ndim)
        if not 0 <= d < max(ndim, 1):
            raise ValueError(f"dim {self.dim} is out of range for an input of shape {in_shape}")
        return tuple(in_shape)


class LogSoftmax(_AlongDim):
    """z = x − log Σⱼ e^{xⱼ};  δ_prev = δ − softmax(x) Σⱼ δⱼ."""

    def forward(self, x: Array) -> tuple[Array, tuple[Array, int]]:
        d = _softmax_dim(self.dim, x.ndim)
        shifted = x - x.max(axis=d, keepdims=True)
        z = shifted - np.log(np.exp(shifted).sum(axis=d, keepdims=True))
        return z, (z, d)

    def backward(self, delta: Array, cache: tuple[Array, int]) -> tuple[Array, dict[str, Array]]:
        z, d = cache
        return delta - np.exp(z) * delta.sum(axis=d, keepdims=True), {}


class Softmax(_AlongDim):
    """p = e^{x} / Σⱼ e^{xⱼ};  δ_prev = p ⊙ (δ − Σⱼ δⱼ pⱼ)."""

    def forward(self, x: Array) -> tuple[Array, tuple[Array, int]]:
        d = _softmax_dim(self.dim, x.ndim)
        e = np.exp(x - x.max(axis=d, keepdims=True))
        p = e / e.sum(axis=d, keepdims=True)
        return p, (p, d)

    def backward(self, delta: Array, cache: tuple[Array, int]) -> tuple[Array, dict[str, Array]]:
        p, d = cache
        return p * (delta - (delta * p).sum(axis=d, keepdims=True)), {}
