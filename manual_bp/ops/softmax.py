"""Softmax, log-softmax and softmin along a dim, and the gated linear unit (GLU), forward and
backward side by side."""

from __future__ import annotations

import numpy as np

from manual_bp.ops.activations import _sigmoid
from manual_bp.ops.base import Array, Layer, Shape, _axis, _dim

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


class Softmin(_AlongDim):
    """p = softmax(−x);  δ_prev = −p ⊙ (δ − Σⱼ δⱼ pⱼ)."""

    def forward(self, x: Array) -> tuple[Array, tuple[Array, int]]:
        d = _softmax_dim(self.dim, x.ndim)
        e = np.exp(-x - (-x).max(axis=d, keepdims=True))
        p = e / e.sum(axis=d, keepdims=True)
        return p, (p, d)

    def backward(self, delta: Array, cache: tuple[Array, int]) -> tuple[Array, dict[str, Array]]:
        p, d = cache
        return -(p * (delta - (delta * p).sum(axis=d, keepdims=True))), {}


# --- gated linear unit ---------------------------------------------------------------


class GLU(Layer):
    """z = a ⊙ σ(b), (a, b) the halves of x along dim;  δ_a = δ σ(b),  δ_b = δ a σ(b)(1 − σ(b))
    (Dauphin et al. 2017, "Language Modeling with Gated Convolutional Networks")."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = int(dim)

    def __repr__(self) -> str:
        return f"GLU(dim={self.dim})"

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        if not in_shape:
            raise ValueError("glu: expected an input with at least one dim, got a 0-d tensor")
        d = _axis(self.dim, len(in_shape), "dim", in_shape)
        if in_shape[d] % 2:
            raise ValueError(
                f"glu: expected an even size along dim {self.dim} to halve, got shape {in_shape}"
            )
        return (*in_shape[:d], in_shape[d] // 2, *in_shape[d + 1 :])

    def forward(self, x: Array) -> tuple[Array, tuple[Array, Array, int]]:
        self.shape(x.shape)
        d = self.dim % x.ndim
        a, b = np.split(x, 2, axis=d)  # (…, n/2, …) each
        s = _sigmoid(b)
        return a * s, (a, s, d)

    def backward(
        self, delta: Array, cache: tuple[Array, Array, int]
    ) -> tuple[Array, dict[str, Array]]:
        a, s, d = cache
        return np.concatenate([delta * s, delta * a * s * (1.0 - s)], axis=d), {}
