"""Cumulative ops along one dim (torch.cumsum and kin), forward and backward side by side.

    CumSum          z_k = Σ_{j≤k} a_j              δ_i = Σ_{k≥i} δ_k          (a reversed cumsum)
    CumProd         z_k = Π_{j≤k} a_j              δ_i = Σ_{k≥i} δ_k Π_{j≤k, j≠i} a_j
    LogCumSumExp    z_k = log Σ_{j≤k} e^{a_j}      δ_i = Σ_{k≥i} δ_k e^{a_i − z_k}
    CumMax, CumMin  (running max, its index)      δ_i = Σ_k δ_k [index_k = i]

A 0-d input is a 1-entry vector (dim 0 or −1), as torch treats it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.base import TIE_RTOL, Array, Layer, Shape, _axis


def _reverse_cumsum(t: Array, d: int) -> Array:
    """Σ_{k≥i} t_k along axis d."""
    return np.flip(np.cumsum(np.flip(t, d), axis=d), d)


class _Scan(Layer):
    """A cumulative op along `dim`: the output has the input's shape."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = int(dim)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"

    def shape(self, in_shape: Shape) -> Shape:
        _axis(self.dim, max(len(in_shape), 1), "dim", in_shape)
        return tuple(in_shape)

    def _as_vector(self, a: Array) -> tuple[Array, int]:
        """a (a 0-d one as shape (1,)) and the wrapped dim."""
        x = a.reshape(1) if a.ndim == 0 else a
        return x, _axis(self.dim, x.ndim, "dim", a.shape)


class CumSum(_Scan):
    """z_k = Σ_{j≤k} a_j along dim;  δ_prev_i = Σ_{k≥i} δ_k (the cumsum of δ reversed)."""

    def forward(self, a: Array) -> tuple[Array, tuple[Shape, int]]:
        x, d = self._as_vector(a)
        return np.cumsum(x, axis=d).reshape(a.shape), (a.shape, d)

    def backward(self, delta: Array, cache: tuple[Shape, int]) -> tuple[Array, dict[str, Array]]:
        shape, d = cache
        g = delta.reshape(1) if delta.ndim == 0 else delta
        return _reverse_cumsum(g, d).reshape(shape), {}


class CumProd(_Scan):
    """z_k = Π_{j≤k} a_j along dim;  δ_prev_i = Σ_{k≥i} δ_k Π_{j≤k, j≠i} a_j.

    Where a slice has no zero that is Σ_{k≥i} δ_k z_k / a_i. At the slice's first zero a_{i₀}
    it is Σ_{k≥i₀} δ_k C_k, C the cumprod of the slice with that zero replaced by 1; after it,
    0 (every product still holds a_{i₀}), as torch's cumprod_backward."""

    def forward(self, a: Array) -> tuple[Array, tuple[Array, Array, int]]:
        x, d = self._as_vector(a)
        z = np.cumprod(x, axis=d)
        return z.reshape(a.shape), (x, z, d)

    def backward(self, delta: Array, cache: tuple[Array, Array, int]) -> tuple[Array, dict]:
        x, z, d = cache
        g = delta.reshape(x.shape)
        is_zero = x == 0
        pos = np.arange(x.shape[d]).reshape([-1 if k == d else 1 for k in range(x.ndim)])
        has_zero = is_zero.any(axis=d, keepdims=True)
        first = np.where(has_zero, np.argmax(is_zero, axis=d, keepdims=True), x.shape[d])
        with np.errstate(divide="ignore", invalid="ignore"):
            before = _reverse_cumsum(g * z, d) / x  # i < first zero: a_i ≠ 0
        C = np.cumprod(np.where(pos == first, 1.0, x), axis=d)
        at_zero = np.sum(np.where(pos >= first, g * C, 0.0), axis=d, keepdims=True)
        out = np.where(pos < first, before, np.where(pos == first, at_zero, 0.0))
        return out.reshape(delta.shape), {}


class LogCumSumExp(_Scan):
    """z_k = log Σ_{j≤k} e^{a_j} along dim;  δ_prev_i = Σ_{k≥i} δ_k e^{a_i − z_k}, formed as
    e^{a_i + log Σ_{k≥i} δ⁺_k e^{−z_k}} − (the same of δ⁻): reversed logcumsumexps, no overflow
    (torch's logcumsumexp_backward splits δ the same way)."""

    def forward(self, a: Array) -> tuple[Array, tuple[Array, Array, int]]:
        x, d = self._as_vector(a)
        z = np.logaddexp.accumulate(x, axis=d)
        return z.reshape(a.shape), (x, z, d)

    def backward(self, delta: Array, cache: tuple[Array, Array, int]) -> tuple[Array, dict]:
        x, z, d = cache
        g = delta.reshape(x.shape)
        out = np.zeros(x.shape)
        with np.errstate(divide="ignore"):
            for sign in (1.0, -1.0):
                part = np.log(np.maximum(sign * g, 0.0)) - z  # log δ± − z (−inf where none)
                tail = np.flip(np.logaddexp.accumulate(np.flip(part, d), axis=d), d)
                out += sign * np.exp(x + tail)
        return out.reshape(delta.shape), {}


class CumMax(_Scan):
    """(z, i): z_k = max_{j≤k} a_j and its index (the latest of tied maxima, as torch's
    `a_k >= z_{k−1}`);  δ_prev = δ_z added up at the indices (the indices carry none)."""

    n_outputs = 2
    output_dtypes = ("float", "int")
    better: Any = staticmethod(np.greater_equal)
    accumulate: Any = np.maximum

    def shape(self, in_shape: Shape) -> tuple[Shape, Shape]:  # type: ignore[override]
        s = super().shape(in_shape)
        return s, s

    def forward(self, a: Array) -> tuple[tuple[Array, Array], tuple[Shape, Array, int]]:
        x, d = self._as_vector(a)
        z = type(self).accumulate.accumulate(x, axis=d)
        n = x.shape[d]
        pos = np.arange(n).reshape([-1 if k == d else 1 for k in range(x.ndim)])
        # the index of the running extreme: the latest k with a_k on it (a_k >= all before it)
        holds = (x == z) & type(self).better(
            x,
            np.concatenate([np.take(z, [0], axis=d), np.take(z, np.arange(n - 1), axis=d)], axis=d),
        )
        idx = np.maximum.accumulate(np.where(holds, pos, 0), axis=d)
        return (z.reshape(a.shape), idx.reshape(a.shape).astype(np.int64)), (a.shape, idx, d)

    def backward(self, delta: tuple[Array | None, Array | None], cache: Any) -> tuple[Array, dict]:
        shape, idx, d = cache
        out = np.zeros(idx.shape)
        if delta[0] is not None:
            grid = np.indices(idx.shape, sparse=True)
            at = tuple(idx if k == d else grid[k] for k in range(idx.ndim))
            np.add.at(out, at, delta[0].reshape(idx.shape))  # an index held k times adds up
        return out.reshape(shape), {}

    def ties(self, a: Array) -> tuple[Array]:
        """Entries that equal (within TIE_RTOL·max|a|) the running extreme before them, and the
        entries holding it: which of them torch's index names is decided by rounding."""
        x, d = self._as_vector(a)
        z = type(self).accumulate.accumulate(x, axis=d)
        tol = TIE_RTOL * float(np.max(np.abs(x), initial=0.0))
        on_top = np.abs(x - z) <= tol  # a_k is (about) the running extreme when it comes
        xk = np.moveaxis(x, d, -1)
        top = np.moveaxis(on_top, d, -1)
        pair = (np.abs(xk[..., :, None] - xk[..., None, :]) <= tol) & top[..., :, None]
        pair &= top[..., None, :]
        np.einsum("...ii->...i", pair)[...] = False
        return (np.moveaxis(pair.any(-1), -1, d).reshape(a.shape),)


class CumMin(CumMax):
    """(z, i): z_k = min_{j≤k} a_j and its index (the latest of tied minima);  δ as CumMax."""

    better = staticmethod(np.less_equal)
    accumulate = np.minimum
