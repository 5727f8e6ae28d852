"""Inverse, solves and determinants of a batch of matrices (torch.linalg), the reverse-mode
formula written out beside each forward (Giles 2008, "An extended collection of matrix
derivative results for forward and reverse mode AD").

    Inv            Z = A⁻¹                   Ā = −Zᵀ Z̄ Zᵀ
    Solve          X = A⁻¹ B                 B̄ = A⁻ᵀ X̄,  Ā = −B̄ Xᵀ
    Det            d = det A                 Ā = d̄ · cof(A)   (cof(A) = d A⁻ᵀ, by the SVD)
    SlogDet        (sign, log|det A|)        Ā = l̄ A⁻ᵀ
    SolveTriangular X = T⁻¹ B or B T⁻¹       B̄ = T⁻ᵀ X̄,  Ā = −B̄ Xᵀ (on the triangle read)

The shape checks and helpers (·ᵀ of the last two dims, diag, degenerate spectra) that
the other linear-algebra modules share are here too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.arithmetic import _broadcast_shape, unbroadcast
from manual_bp.ops.base import TIE_RTOL, Array, Layer, Shape


def _T(a: Array) -> Array:
    return np.swapaxes(a, -1, -2)


def _square(shape: Shape, what: str) -> None:
    shape = tuple(shape)
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(
            f"{what}: expected a batch of square matrices (*, n, n), got shape {shape}"
        )


def _matrices(shape: Shape, what: str) -> None:
    if len(shape) < 2:
        raise ValueError(
            f"{what}: expected a batch of matrices (*, m, n), got shape {tuple(shape)}"
        )


def _diag(v: Array) -> Array:
    """A batch of vectors (*, k) as diagonal matrices (*, k, k)."""
    out = np.zeros((*v.shape, v.shape[-1]))
    k = np.arange(v.shape[-1])
    out[..., k, k] = v
    return out


def _degenerate(values: Array, what: str) -> None:
    """Refuse a (nearly) repeated value: the vectors are not unique there."""
    scale = float(np.max(np.abs(values), initial=0.0))
    gaps = np.abs(values[..., :, None] - values[..., None, :])
    k = values.shape[-1]
    gaps = np.where(np.eye(k, dtype=bool), np.inf, gaps)
    if np.any(gaps <= TIE_RTOL * max(scale, 1.0)):
        kind = "singular values" if what == "svd" else "eigenvalues"
        raise ValueError(
            f"{what}: the input has (nearly) repeated {kind} (gap {float(np.min(gaps)):.3g}); "
            "the vectors are not unique there and their gradient is not defined (torch's is "
            "inf or NaN)"
        )


# --- inverse, solve, determinants --------------------------------------------------------


class Inv(Layer):
    """Z = A⁻¹;  Ā = −Zᵀ Z̄ Zᵀ."""

    def shape(self, in_shape: Shape) -> Shape:
        _square(in_shape, "inv")
        return tuple(in_shape)

    def forward(self, a: Array) -> tuple[Array, Array]:
        self.shape(a.shape)
        z = np.linalg.inv(a)
        return z, z

    def backward(self, delta: Array, z: Array) -> tuple[Array, dict]:
        zt = _T(z)
        return -(zt @ delta @ zt), {}


def _solve_shapes(a_shape: Shape, b_shape: Shape) -> tuple[bool, Shape]:
    """torch.linalg.solve's rule: B a batch of vectors when B is 1-d or B.shape = A.shape[:-1]
    (so B (*, n) with A (*, n, n)); the output shape."""
    _square(a_shape, "solve")
    a_shape, b_shape = tuple(a_shape), tuple(b_shape)
    n = a_shape[-1]
    vector = len(b_shape) == 1 or (len(b_shape) == len(a_shape) - 1 and b_shape == a_shape[:-1])
    if vector:
        if b_shape[-1] != n:
            raise ValueError(
                f"solve: expected B of size {n} for A of shape {a_shape}, got {b_shape}"
            )
        batch = _broadcast_shape((a_shape[:-2], b_shape[:-1]))
        return True, (*batch, n)
    if len(b_shape) < 2 or b_shape[-2] != n:
        raise ValueError(f"solve: expected B of shape (*, {n}, k) or (*, {n}), got {b_shape}")
    batch = _broadcast_shape((a_shape[:-2], b_shape[:-2]))
    return False, (*batch, n, b_shape[-1])


class Solve(Layer):
    """X = A⁻¹ B (B a batch of vectors or matrices, batch dims broadcast);
    B̄ = A⁻ᵀ X̄,  Ā = −B̄ Xᵀ (linalg_solve_backward), each summed over its broadcast dims."""

    n_inputs = 2

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        return _solve_shapes(a_shape, b_shape)[1]

    def forward(self, a: Array, b: Array) -> tuple[Array, Any]:
        vector, out = _solve_shapes(a.shape, b.shape)
        B = b[..., None] if vector else b
        batch = out[:-1] if vector else out[:-2]
        A = np.broadcast_to(a, (*batch, *a.shape[-2:]))
        B = np.broadcast_to(B, (*batch, *B.shape[-2:]))
        X = np.linalg.solve(A, B)
        return (X[..., 0] if vector else X), (A, X, vector, a.shape, b.shape)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, Array], dict]:
        A, X, vector, a_shape, b_shape = cache
        gX = delta[..., None] if vector else delta
        gB = np.linalg.solve(_T(A), gX)
        gA = -(gB @ _T(X))
        gB = gB[..., 0] if vector else gB
        return (unbroadcast(gA, a_shape), unbroadcast(gB, b_shape)), {}


def _cofactor(a: Array) -> Array:
    """cof(A) = det(A) A⁻ᵀ, formed from the SVD A = U diag(s) Vᵀ as
    det(U) det(V) U diag(Π_{j≠i} s_j) Vᵀ: defined for a singular A too (as torch's det backward)."""
    u, s, vt = np.linalg.svd(a)
    k = s.shape[-1]
    others = np.stack([np.prod(np.delete(s, i, axis=-1), axis=-1) for i in range(k)], -1)
    sign = np.linalg.det(u) * np.linalg.det(vt)
    return sign[..., None, None] * ((u * others[..., None, :]) @ vt)


class Det(Layer):
    """d = det A;  Ā = d̄ · cof(A) = d̄ d A⁻ᵀ (the cofactor from the SVD: a singular A too)."""

    def shape(self, in_shape: Shape) -> Shape:
        _square(in_shape, "det")
        return tuple(in_shape[:-2])

    def forward(self, a: Array) -> tuple[Array, Array]:
        self.shape(a.shape)
        return np.linalg.det(a), a

    def backward(self, delta: Array, a: Array) -> tuple[Array, dict]:
        return np.asarray(delta)[..., None, None] * _cofactor(a), {}


class SlogDet(Layer):
    """(sign, log|det A|);  Ā = l̄ A⁻ᵀ (the sign carries no gradient). As `logdet`: z = log det A
    (NaN for det < 0, −inf for det = 0, as torch's), Ā = z̄ A⁻ᵀ."""

    def __init__(self, logdet: bool = False) -> None:
        super().__init__()
        self.logdet = bool(logdet)
        self.n_outputs = 1 if self.logdet else 2  # type: ignore[misc]

    def __repr__(self) -> str:
        return "LogDet" if self.logdet else "SlogDet"

    def shape(self, in_shape: Shape) -> Any:
        _square(in_shape, "slogdet")
        out = tuple(in_shape[:-2])
        return out if self.logdet else (out, out)

    def forward(self, a: Array) -> tuple[Any, Array]:
        self.shape(a.shape)
        sign, logabs = np.linalg.slogdet(a)
        if self.logdet:
            with np.errstate(invalid="ignore"):
                return np.where(sign < 0, np.nan, logabs), a
        return (sign, logabs), a

    def backward(self, delta: Any, a: Array) -> tuple[Array, dict]:
        g = delta if self.logdet else delta[1]
        if g is None:
            return np.zeros(a.shape), {}
        return np.asarray(g)[..., None, None] * _T(np.linalg.inv(a)), {}


class SolveTriangular(Layer):
    """X = T⁻¹ B (left) or B T⁻¹ (right), T the upper or lower triangle of A (its diagonal 1
    when unitriangular; the rest of A is not read);  left: B̄ = T⁻ᵀ X̄, Ā = −B̄ Xᵀ;  right:
    B̄ = X̄ T⁻ᵀ, Ā = −Xᵀ B̄;  Ā kept on the triangle read (without its diagonal when
    unitriangular), each summed over broadcast batch dims."""

    n_inputs = 2

    def __init__(self, upper: bool, left: bool = True, unitriangular: bool = False) -> None:
        super().__init__()
        self.upper, self.left, self.unitriangular = bool(upper), bool(left), bool(unitriangular)

    def __repr__(self) -> str:
        return (
            f"SolveTriangular(upper={self.upper}, left={self.left}, "
            f"unitriangular={self.unitriangular})"
        )

    def shape(self, a_shape: Shape, b_shape: Shape) -> Shape:
        _square(a_shape, "solve_triangular")
        n = a_shape[-1]
        if len(b_shape) < 2 or (b_shape[-2] if self.left else b_shape[-1]) != n:
            side = "(*, n, k)" if self.left else "(*, k, n)"
            raise ValueError(
                f"solve_triangular: expected B of shape {side} with n = {n}, got {tuple(b_shape)}"
            )
        return (*_broadcast_shape((a_shape[:-2], b_shape[:-2])), *b_shape[-2:])

    def _triangle(self, a: Array) -> tuple[Array, Array]:
        n = a.shape[-1]
        keep = np.triu(np.ones((n, n), bool)) if self.upper else np.tril(np.ones((n, n), bool))
        if self.unitriangular:
            keep &= ~np.eye(n, dtype=bool)
        T = np.where(keep, a, 0.0) + (np.eye(n) if self.unitriangular else 0.0)
        return T, keep

    def forward(self, a: Array, b: Array) -> tuple[Array, Any]:
        out = self.shape(a.shape, b.shape)
        T, keep = self._triangle(a)
        T = np.broadcast_to(T, (*out[:-2], *T.shape[-2:]))
        B = np.broadcast_to(b, out)
        X = np.linalg.solve(T, B) if self.left else _T(np.linalg.solve(_T(T), _T(B)))
        return X, (T, X, keep, a.shape, b.shape)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, Array], dict]:
        T, X, keep, a_shape, b_shape = cache
        if self.left:
            gB = np.linalg.solve(_T(T), delta)
            gA = -(gB @ _T(X))
        else:
            gB = _T(np.linalg.solve(T, _T(delta)))
            gA = -(_T(X) @ gB)
        return (unbroadcast(np.where(keep, gA, 0.0), a_shape), unbroadcast(gB, b_shape)), {}
