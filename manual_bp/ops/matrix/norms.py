"""Matrix norms (fro, nuc, ±1, ±2, ±inf) and vector products (cross, cdist), the reverse-mode
formula written out beside each forward (Giles 2008, "An extended collection of matrix
derivative results for forward and reverse mode AD").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.arithmetic import _broadcast_shape, unbroadcast
from manual_bp.ops.base import TIE_RTOL, Array, Layer, Shape, _axis
from manual_bp.ops.matrix.inverse import _matrices

# --- matrix norms ---------------------------------------------------------------------------

MATRIX_ORDS = ("fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf)


class MatrixNorm(Layer):
    """‖A‖ over dims (d1, d2) (keepdim keeps them as size 1):
    fro: √Σ a²,  Ā = z̄ A / ‖A‖;   nuc: Σ σ,  Ā = z̄ U Vᵀ;   ±2: σ_max / σ_min,  Ā = z̄ u vᵀ;
    ±1: max / min over columns of Σ|a|,  Ā = z̄ sgn(A) on the chosen column; ±inf: the same over
    rows. A tied maximum (two columns, or two singular values) shares z̄ evenly (reported as
    a tie)."""

    def __init__(
        self, ord: Any = "fro", dim: tuple[int, int] = (-2, -1), keepdim: bool = False
    ) -> None:
        super().__init__()
        if ord not in MATRIX_ORDS:
            raise ValueError(f"matrix_norm: expected ord in {MATRIX_ORDS}, got {ord!r}")
        self.ord, self.dim, self.keepdim = ord, tuple(int(d) for d in dim), bool(keepdim)

    def __repr__(self) -> str:
        return f"MatrixNorm(ord={self.ord!r}, dim={self.dim}, keepdim={self.keepdim})"

    def _dims(self, in_shape: Shape) -> tuple[int, int]:
        _matrices(in_shape, "matrix_norm")
        d = tuple(_axis(k, len(in_shape), "dim", in_shape) for k in self.dim)
        if d[0] == d[1]:
            raise ValueError(f"matrix_norm: expected two different dims, got {self.dim}")
        return d  # type: ignore[return-value]

    def shape(self, in_shape: Shape) -> Shape:
        d = self._dims(in_shape)
        if self.keepdim:
            return tuple(1 if k in d else n for k, n in enumerate(in_shape))
        return tuple(n for k, n in enumerate(in_shape) if k not in d)

    def _moved(self, a: Array) -> Array:
        return np.moveaxis(a, self._dims(a.shape), (-2, -1))

    def _back(self, g: Array, a_shape: Shape) -> Array:
        """A gradient on the moved (…, m, n) layout, put back in a's layout."""
        return np.moveaxis(g, (-2, -1), self._dims(a_shape))

    def forward(self, a: Array) -> tuple[Array, Any]:
        A = self._moved(a)
        o = self.ord
        if o == "fro":
            z = np.sqrt(np.sum(A * A, axis=(-2, -1)))
        elif o in ("nuc", 2, -2):
            s = np.linalg.svd(A, compute_uv=False)
            z = s.sum(-1) if o == "nuc" else (s.max(-1) if o == 2 else s.min(-1))
        else:
            axis = -2 if abs(o) == 1 else -1  # 1: sums over rows (per column); inf: per row
            sums = np.abs(A).sum(axis=axis)
            z = sums.max(-1) if o > 0 else sums.min(-1)
        out = z
        if self.keepdim:
            d = sorted(self._dims(a.shape))
            out = np.expand_dims(z, tuple(d))
        return out, (a, z)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict]:
        a, z = cache
        A = self._moved(a)
        g = delta.reshape(z.shape)[..., None, None]
        o = self.ord
        if o == "fro":
            with np.errstate(invalid="ignore", divide="ignore"):
                gA = np.where(z[..., None, None] == 0, 0.0, g * A / z[..., None, None])
        elif o in ("nuc", 2, -2):
            U, s, Vh = np.linalg.svd(A, full_matrices=False)
            if o == "nuc":
                w = np.ones(s.shape)
            else:
                pick = s.max(-1, keepdims=True) if o == 2 else s.min(-1, keepdims=True)
                w = (s == pick).astype(np.float64)
                w = w / w.sum(-1, keepdims=True)
            gA = g * ((U * w[..., None, :]) @ Vh)
        else:
            axis = -2 if abs(o) == 1 else -1
            sums = np.abs(A).sum(axis=axis, keepdims=True)
            pick = (
                sums.max(-1 if axis == -2 else -2, keepdims=True)
                if o > 0
                else sums.min(-1 if axis == -2 else -2, keepdims=True)
            )
            chosen = (sums == pick).astype(np.float64)
            chosen = chosen / chosen.sum(axis=(-2, -1), keepdims=True)
            gA = g * np.sign(A) * chosen
        return self._back(gA, a.shape), {}

    def ties(self, a: Array) -> tuple[Array] | None:
        if self.ord == "fro":
            return None
        A = self._moved(a)
        tol = TIE_RTOL * float(np.max(np.abs(A), initial=0.0)) * max(A.shape[-2:])
        o = self.ord
        if o in ("nuc", 2, -2):
            s = np.linalg.svd(A, compute_uv=False)
            gaps = np.abs(s[..., :, None] - s[..., None, :])
            gaps = np.where(np.eye(s.shape[-1], dtype=bool), np.inf, gaps)
            near = np.any(gaps <= tol, axis=(-2, -1)) | (np.min(s, axis=-1) <= tol)
            mask = np.broadcast_to(near[..., None, None], A.shape)
        else:
            axis = -2 if abs(o) == 1 else -1
            sums = np.abs(A).sum(axis=axis, keepdims=True)
            other = -1 if axis == -2 else -2
            pick = sums.max(other, keepdims=True) if o > 0 else sums.min(other, keepdims=True)
            close = np.abs(sums - pick) <= tol
            tied = close & (close.sum(axis=other, keepdims=True) >= 2)
            mask = np.broadcast_to(tied, A.shape) | (np.abs(A) <= tol)
        return (self._back(np.array(mask), a.shape),)


# --- vector products ----------------------------------------------------------------------


class Cross(Layer):
    """z = a × b along dim (size 3; a and b broadcast);  ā = b × z̄,  b̄ = z̄ × a."""

    n_inputs = 2

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = int(dim)

    def __repr__(self) -> str:
        return f"Cross(dim={self.dim})"

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        out = _broadcast_shape((a_shape, b_shape))
        d = _axis(self.dim, len(out), "dim", out)
        if len(a_shape) != len(b_shape) or out[d] != 3 or a_shape[d] != 3 or b_shape[d] != 3:
            raise ValueError(
                f"cross: expected inputs of one rank with size 3 at dim {self.dim}, got shapes "
                f"{tuple(a_shape)} and {tuple(b_shape)}"
            )
        return out

    def forward(self, a: Array, b: Array) -> tuple[Array, Any]:
        out = self.shape(a.shape, b.shape)
        d = _axis(self.dim, len(out), "dim", out)
        return np.cross(a, b, axis=d), (a, b, d)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, Array], dict]:
        a, b, d = cache
        ga = np.cross(b, delta, axis=d)
        gb = np.cross(delta, a, axis=d)
        return (unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)), {}


def _distance(d: Array, p: float) -> Array:
    """‖d‖_p over the last axis (p = 0 counts the nonzeros)."""
    ad = np.abs(d)
    if p == 0:
        return (ad != 0).sum(-1).astype(np.float64)
    if p == np.inf:
        return ad.max(-1)
    if p == 1:
        return ad.sum(-1)
    if p == 2:
        return np.sqrt((d * d).sum(-1))
    return (ad**p).sum(-1) ** (1.0 / p)


def _distance_grad(d: Array, z: Array, p: float) -> Array:
    """∂‖d‖_p/∂d: d/z (p = 2), sgn d (p = 1), sgn d |d|^{p−1} / z^{p−1} (other p; 0 where
    d = 0 for p < 1), sgn d on the largest |d| (p = inf), 0 (p = 0); 0 wherever z = 0."""
    zz = z[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        if p == 0:
            dz = np.zeros(d.shape)
        elif p == 1:
            dz = np.sign(d)
        elif p == 2:
            dz = d / zz
        elif p == np.inf:
            dz = np.sign(d) * (np.abs(d) == zz)
        else:
            dz = np.sign(d) * np.abs(d) ** (p - 1) / zz ** (p - 1)
            if p < 1:
                dz = np.where(d == 0, 0.0, dz)
    return np.where(zz == 0, 0.0, dz)


class Cdist(Layer):
    """z_ij = ‖x1_i − x2_j‖_p over batches of row vectors x1 (*, P, M), x2 (*, R, M);
    with d = x1_i − x2_j:  x̄1_i = Σ_j z̄_ij ∂z/∂d,  x̄2_j = −Σ_i z̄_ij ∂z/∂d, where
    ∂z/∂d = d/z (p = 2), sgn d (p = 1), sgn d |d|^{p−1} / z^{p−1} (other p), sgn d on the
    largest |d| (p = inf), 0 (p = 0) — 0 wherever z = 0 (torch's _cdist_backward)."""

    n_inputs = 2

    def __init__(self, p: float = 2.0) -> None:
        super().__init__()
        if not p >= 0:
            raise ValueError(f"cdist: expected p >= 0, got {p}")
        self.p = float(p)

    def __repr__(self) -> str:
        return f"Cdist(p={self.p})"

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        if len(a_shape) < 2 or len(b_shape) < 2 or a_shape[-1] != b_shape[-1]:
            raise ValueError(
                f"cdist: expected x1 (*, P, M) and x2 (*, R, M), got {tuple(a_shape)} and "
                f"{tuple(b_shape)}"
            )
        batch = _broadcast_shape((a_shape[:-2], b_shape[:-2]))
        return (*batch, a_shape[-2], b_shape[-2])

    def forward(self, a: Array, b: Array) -> tuple[Array, Any]:
        self.shape(a.shape, b.shape)
        d = a[..., :, None, :] - b[..., None, :, :]  # (*, P, R, M)
        z = _distance(d, self.p)
        return z, (a.shape, b.shape, d, z)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, Array], dict]:
        a_shape, b_shape, d, z = cache
        dz = _distance_grad(d, z, self.p)
        g = delta[..., None] * dz  # (*, P, R, M)
        return (unbroadcast(g.sum(-2), a_shape), unbroadcast(-g.sum(-3), b_shape)), {}

    def ties(self, a: Array, b: Array) -> tuple[Array, Array]:
        """Where a distance is (nearly) 0, or (p = inf) two coordinates tie for the largest."""
        d = a[..., :, None, :] - b[..., None, :, :]
        scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
        tol = TIE_RTOL * max(scale, 1e-300)
        near0 = np.all(np.abs(d) <= tol, axis=-1, keepdims=True)
        mask = np.broadcast_to(near0, d.shape) | (np.abs(d) <= tol if self.p <= 1 else False)
        if self.p == np.inf:
            ad = np.abs(d)
            close = np.abs(ad - ad.max(-1, keepdims=True)) <= tol
            mask = mask | (close & (close.sum(-1, keepdims=True) >= 2))
        ma = unbroadcast(mask.any(-2).astype(np.float64), a.shape) > 0
        mb = unbroadcast(mask.any(-3).astype(np.float64), b.shape) > 0
        return ma, mb


class Pdist(Layer):
    """z_k = ‖x_i − x_j‖_p over the pairs i < j of the rows of x (N, M), in row-major order
    (F.pdist);  x̄_i += z̄_k ∂z/∂d, x̄_j −= z̄_k ∂z/∂d, ∂z/∂d as cdist's (torch's
    _pdist_backward)."""

    def __init__(self, p: float = 2.0) -> None:
        super().__init__()
        if not p >= 0:
            raise ValueError(f"pdist: expected p >= 0, got {p}")
        self.p = float(p)

    def __repr__(self) -> str:
        return f"Pdist(p={self.p})"

    def shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 2:
            raise ValueError(f"pdist: expected x of shape (N, M), got {tuple(in_shape)}")
        n = in_shape[0]
        return (n * (n - 1) // 2,)

    def forward(self, x: Array) -> tuple[Array, Any]:
        self.shape(x.shape)
        i, j = np.triu_indices(x.shape[0], 1)
        d = x[i] - x[j]  # (K, M)
        z = _distance(d, self.p)
        return z, (x.shape, i, j, d, z)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict]:
        shape, i, j, d, z = cache
        g = delta[:, None] * _distance_grad(d, z, self.p)
        out = np.zeros(shape)
        np.add.at(out, i, g)
        np.add.at(out, j, -g)
        return out, {}

    def ties(self, x: Array) -> tuple[Array]:
        """Rows at (nearly) zero distance, or (p = inf) with two coordinates tied largest."""
        i, j = np.triu_indices(x.shape[0], 1)
        d = x[i] - x[j]
        tol = TIE_RTOL * max(float(np.max(np.abs(x), initial=0.0)), 1e-300)
        pair = np.all(np.abs(d) <= tol, axis=-1)
        if self.p <= 1:
            pair |= np.any(np.abs(d) <= tol, axis=-1)
        if self.p == np.inf:
            ad = np.abs(d)
            pair |= (np.abs(ad - ad.max(-1, keepdims=True)) <= tol).sum(-1) >= 2
        mask = np.zeros(x.shape, dtype=bool)
        mask[i[pair]] = True
        mask[j[pair]] = True
        return (mask,)
