"""Matrices held by their factors: the LU factorisation with partial pivoting, its unpacking
and its solves (torch.linalg.lu_factor, lu, lu_unpack, lu_solve), and the solves and the
inverse from a Cholesky factor (torch.cholesky_solve, cholesky_inverse). Real matrices
(ᴴ = ᵀ); the reverse-mode formulas are Seeger et al. 2017 ("Auto-differentiating linear
algebra") as torch's linalg_lu_backward and cholesky_*_backward write them.

    LUFactor  P L U = A, L and U packed      Ā = P L⁻ᵀ [tril₋₁(Lᵀ L̄) + triu(Ū Uᵀ)] U⁻ᵀ (square;
                                             the wide and tall blocks as lu_backward)
    LUUnpack  (P, L, U) of the packed LU      L̄U = tril₋₁(L̄) + triu(Ū) (P carries none)
    LUSolve   X = A⁻¹ B, A = P L U            B̄ = A⁻ᵀ X̄,  Ā = −B̄ Xᵀ, carried to the factors:
                                             L̄U = tril₋₁(Pᵀ Ā Uᵀ) + triu(Lᵀ Pᵀ Ā)
    CholeskySolve  X = (L Lᵀ)⁻¹ B             B̄ = (L Lᵀ)⁻¹ X̄,  L̄ = −(B̄ Xᵀ + X B̄ᵀ) L
    CholeskyInverse Z = (L Lᵀ)⁻¹               L̄ = −Z (Z̄ + Z̄ᵀ) Z L

The pivots are LAPACK getrf's (scipy.linalg.lu_factor), 1-based as torch returns them; P
is the permutation they make (A = P L U). The Cholesky formulas are torch's: the factor is
differentiated as the full matrix of L Lᵀ (its unread triangle gets the formula's value
too; zero for a factor torch.linalg.cholesky made, whose backward reads one triangle).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.arithmetic import _broadcast_shape, unbroadcast
from manual_bp.ops.base import Array, Layer, Shape
from manual_bp.ops.matrix.inverse import _T, _matrices, _square


def _right_solve(M: Array, B: Array) -> Array:
    """B M⁻¹."""
    return _T(np.linalg.solve(_T(M), _T(B)))


def permutation(pivots: Array, m: int) -> Array:
    """P of getrf's row interchanges (1-based pivots, row i swapped with row pivots[i]):
    A = P L U, Pᵀ A the rows of A in the order the interchanges leave them."""
    pivots = np.asarray(pivots, dtype=np.int64) - 1
    order = np.broadcast_to(np.arange(m), (*pivots.shape[:-1], m)).copy()
    rows = np.indices(pivots.shape[:-1], sparse=True)
    for i in range(pivots.shape[-1]):  # (the interchanges, in order)
        j = pivots[..., i]
        order[(*rows, i)], order[(*rows, j)] = order[(*rows, j)], order[(*rows, i)].copy()
    P = np.zeros((*order.shape, m))
    np.put_along_axis(P, order[..., :, None], 1.0, axis=-1)  # (Pᵀ)[i, order[i]] = 1
    return _T(P)


def unpack(lu: Array, pivots: Array) -> tuple[Array, Array, Array]:
    """(P, L, U) of a packed LU (*, m, n): L (*, m, k) unit lower, U (*, k, n) upper."""
    m, n = lu.shape[-2:]
    k = min(m, n)
    L = np.tril(lu[..., :, :k], -1) + np.eye(m, k)
    U = np.triu(lu[..., :k, :])
    return permutation(pivots, m), L, U


def _packed(gL: Array, gU: Array) -> Array:
    """The gradient of the packed LU from those of L and U: below the diagonal L̄'s,
    on and above it Ū's (lu_unpack_backward)."""
    m, n = gL.shape[-2], gU.shape[-1]
    k = min(m, n)
    out = np.zeros((*np.broadcast_shapes(gL.shape[:-2], gU.shape[:-2]), m, n))
    out[..., :, :k] += np.tril(gL, -1)
    out[..., :k, :] += np.triu(gU)
    return out


def lu_backward(gL: Array, gU: Array, P: Array, L: Array, U: Array) -> Array:
    """Ā of A = P L U from L̄ and Ū (linalg_lu_backward; square, wide m < n, tall m > n)."""
    m, n = L.shape[-2], U.shape[-1]
    k = min(m, n)
    gL, gU = np.tril(gL, -1), np.triu(gU)
    if m == n:
        gA = np.tril(_T(L) @ gL, -1) + np.triu(gU @ _T(U))
        gA = np.linalg.solve(_T(L), _right_solve(_T(U), gA))
    elif m < n:  # A = P L [U₁ U₂]
        gA = _right_solve(_T(U[..., :k]), np.tril(_T(L) @ gL - gU @ _T(U), -1))
        gA = np.concatenate([gA + gU[..., :k], gU[..., k:]], axis=-1)
        gA = np.linalg.solve(_T(L), gA)
    else:  # A = P [L₁; L₂] U
        gA = np.linalg.solve(_T(L[..., :k, :]), np.triu(gU @ _T(U) - _T(L) @ gL))
        gA = np.concatenate([gA + gL[..., :k, :], gL[..., k:, :]], axis=-2)
        gA = _right_solve(_T(U), gA)
    return P @ gA


class LUFactor(Layer):
    """(LU, pivots) = lu_factor(A), A (*, m, n) (and info, 0, with `info`: lu_factor_ex);
    Ā = lu_backward(tril₋₁ L̄U, triu L̄U)."""

    n_outputs = 2
    output_dtypes = ("float", "int")

    def __init__(self, info: bool = False) -> None:
        super().__init__()
        self.info = bool(info)
        if self.info:
            self.n_outputs, self.output_dtypes = 3, ("float", "int", "int")  # type: ignore[misc]

    def shape(self, in_shape: Shape) -> tuple[Shape, ...]:  # type: ignore[override]
        _matrices(in_shape, "lu_factor")
        shapes = (tuple(in_shape), (*in_shape[:-2], min(in_shape[-2:])))
        return (*shapes, tuple(in_shape[:-2])) if self.info else shapes

    def forward(self, a: Array) -> tuple[tuple[Array, Array], Any]:
        from scipy.linalg import lu_factor  # (LAPACK getrf: torch's pivots)

        self.shape(a.shape)
        if a.size == 0:
            lu, piv = a.copy(), np.zeros((*a.shape[:-2], min(a.shape[-2:])), dtype=np.int64)
        else:
            lu, piv = lu_factor(a, check_finite=False)
        pivots = piv[..., : min(a.shape[-2:])].astype(np.int64) + 1
        if np.any(np.diagonal(lu, axis1=-2, axis2=-1) == 0):
            raise ValueError("lu_factor: a singular matrix (a zero pivot; torch's info > 0)")
        info = (np.zeros(a.shape[:-2], dtype=np.int64),) if self.info else ()
        return (lu, pivots, *info), unpack(lu, pivots)

    def backward(self, delta: tuple[Array | None, Any], cache: Any) -> tuple[Array, dict]:
        P, L, U = cache
        g = np.zeros((*L.shape[:-1], U.shape[-1])) if delta[0] is None else delta[0]
        k = L.shape[-1]
        return lu_backward(g[..., :, :k], g[..., :k, :], P, L, U), {}


class LU(Layer):
    """(P, L, U) = linalg.lu(A);  Ā = lu_backward(L̄, Ū) (P carries none)."""

    n_outputs = 3

    def shape(self, in_shape: Shape) -> tuple[Shape, Shape, Shape]:  # type: ignore[override]
        _matrices(in_shape, "lu")
        *batch, m, n = in_shape
        k = min(m, n)
        return (*batch, m, m), (*batch, m, k), (*batch, k, n)

    def forward(self, a: Array) -> tuple[tuple[Array, Array, Array], Any]:
        _, (P, L, U) = LUFactor().forward(a)
        return (P, L, U), (P, L, U)

    def backward(self, delta: tuple[Any, Any, Any], cache: Any) -> tuple[Array, dict]:
        P, L, U = cache
        gL = np.zeros(L.shape) if delta[1] is None else delta[1]
        gU = np.zeros(U.shape) if delta[2] is None else delta[2]
        return lu_backward(gL, gU, P, L, U), {}


class LUUnpack(Layer):
    """(P, L, U) = lu_unpack(LU, pivots);  L̄U = tril₋₁(L̄) + triu(Ū), the pivots none."""

    n_inputs = 2
    n_outputs = 3
    integer_inputs = True

    def shape(self, lu_shape: Shape, piv_shape: Shape) -> tuple[Shape, Shape, Shape]:  # type: ignore[override]
        _matrices(lu_shape, "lu_unpack")
        *batch, m, n = lu_shape
        k = min(m, n)
        if tuple(piv_shape) != (*batch, k):
            raise ValueError(
                f"lu_unpack: expected pivots of shape {(*batch, k)} for LU of shape "
                f"{tuple(lu_shape)}, got {tuple(piv_shape)}"
            )
        return (*batch, m, m), (*batch, m, k), (*batch, k, n)

    def forward(self, lu: Array, pivots: Array) -> tuple[tuple[Array, Array, Array], Any]:
        self.shape(lu.shape, pivots.shape)
        return unpack(lu, pivots), (lu.shape, pivots.shape)

    def backward(self, delta: tuple[Any, Any, Any], cache: Any) -> tuple[tuple[Array, Any], dict]:
        lu_shape, piv_shape = cache
        m, n = lu_shape[-2:]
        k = min(m, n)
        gL = np.zeros((*lu_shape[:-2], m, k)) if delta[1] is None else delta[1]
        gU = np.zeros((*lu_shape[:-2], k, n)) if delta[2] is None else delta[2]
        return (_packed(gL, gU), np.zeros(piv_shape)), {}


class LUSolve(Layer):
    """X = op(A)⁻¹ B (left) or B op(A)⁻¹, A = P L U from (LU, pivots), op(A) = Aᵀ when adjoint;
    B̄ and Ā as for a solve, Ā carried to the packed factors: tril₋₁(Pᵀ Ā Uᵀ) + triu(Lᵀ Pᵀ Ā)."""

    n_inputs = 3
    integer_inputs = True

    def __init__(self, left: bool = True, adjoint: bool = False) -> None:
        super().__init__()
        self.left, self.adjoint = bool(left), bool(adjoint)

    def __repr__(self) -> str:
        return f"LUSolve(left={self.left}, adjoint={self.adjoint})"

    def shape(self, lu_shape: Shape, piv_shape: Shape, b_shape: Shape) -> Shape:
        _square(lu_shape, "lu_solve")
        n = lu_shape[-1]
        if len(b_shape) < 2 or (b_shape[-2] if self.left else b_shape[-1]) != n:
            side = "(*, n, k)" if self.left else "(*, k, n)"
            raise ValueError(f"lu_solve: expected B of shape {side} with n = {n}, got {b_shape}")
        return (*_broadcast_shape((lu_shape[:-2], b_shape[:-2])), *b_shape[-2:])

    def forward(self, lu: Array, pivots: Array, b: Array) -> tuple[Array, Any]:
        out = self.shape(lu.shape, pivots.shape, b.shape)
        P, L, U = unpack(lu, pivots)
        A = P @ L @ U
        opA = np.broadcast_to(_T(A) if self.adjoint else A, (*out[:-2], *A.shape[-2:]))
        B = np.broadcast_to(b, out)
        X = np.linalg.solve(opA, B) if self.left else _right_solve(opA, B)
        return X, (P, L, U, opA, X, lu.shape, pivots.shape, b.shape)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, Array, Array], dict]:
        P, L, U, opA, X, lu_shape, piv_shape, b_shape = cache
        if self.left:
            gB = np.linalg.solve(_T(opA), delta)
            g_op = -(gB @ _T(X))
        else:
            gB = _right_solve(_T(opA), delta)
            g_op = -(_T(X) @ gB)
        gA = _T(g_op) if self.adjoint else g_op
        gA = unbroadcast(gA, (*lu_shape[:-2], *gA.shape[-2:]))
        gLU = np.tril(_T(P) @ gA @ _T(U), -1) + np.triu(_T(L) @ _T(P) @ gA)
        return (gLU, np.zeros(piv_shape), unbroadcast(gB, b_shape)), {}


# --- from a Cholesky factor ---------------------------------------------------------------


def _gram(f: Array, upper: bool) -> Array:
    """A = L Lᵀ of the lower triangle, or Uᵀ U of the upper one (what LAPACK's potrs reads)."""
    T = np.triu(f) if upper else np.tril(f)
    return _T(T) @ T if upper else T @ _T(T)


def _factor_grad(common: Array, f: Array, upper: bool) -> Array:
    """−F C (upper) or −C F (lower), torch's form of the factor's gradient from C."""
    return -(f @ common) if upper else -(common @ f)


class CholeskySolve(Layer):
    """X = (L Lᵀ)⁻¹ B (or (Uᵀ U)⁻¹ B);  B̄ = (L Lᵀ)⁻¹ X̄,  L̄ = −(B̄ Xᵀ + X B̄ᵀ) L
    (Ū = −U (B̄ Xᵀ + X B̄ᵀ)), batch dims broadcast."""

    n_inputs = 2

    def __init__(self, upper: bool = False) -> None:
        super().__init__()
        self.upper = bool(upper)

    def __repr__(self) -> str:
        return f"CholeskySolve(upper={self.upper})"

    def shape(self, b_shape: Shape, f_shape: Shape) -> Shape:
        _square(f_shape, "cholesky_solve")
        if len(b_shape) < 2 or b_shape[-2] != f_shape[-1]:
            raise ValueError(
                f"cholesky_solve: expected B of shape (*, {f_shape[-1]}, k), got {tuple(b_shape)}"
            )
        return (*_broadcast_shape((b_shape[:-2], f_shape[:-2])), *b_shape[-2:])

    def forward(self, b: Array, f: Array) -> tuple[Array, Any]:
        out = self.shape(b.shape, f.shape)
        A = np.broadcast_to(_gram(f, self.upper), (*out[:-2], *f.shape[-2:]))
        X = np.linalg.solve(A, np.broadcast_to(b, out))
        return X, (A, X, np.broadcast_to(f, A.shape), b.shape, f.shape)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, Array], dict]:
        A, X, f, b_shape, f_shape = cache
        gB = np.linalg.solve(A, delta)
        common = gB @ _T(X)
        gF = _factor_grad(common + _T(common), f, self.upper)
        return (unbroadcast(gB, b_shape), unbroadcast(gF, f_shape)), {}


class CholeskyInverse(Layer):
    """Z = (L Lᵀ)⁻¹ (or (Uᵀ U)⁻¹);  L̄ = −Z (Z̄ + Z̄ᵀ) Z L  (Ū = −U Z (Z̄ + Z̄ᵀ) Z)."""

    def __init__(self, upper: bool = False) -> None:
        super().__init__()
        self.upper = bool(upper)

    def __repr__(self) -> str:
        return f"CholeskyInverse(upper={self.upper})"

    def shape(self, f_shape: Shape) -> Shape:
        _square(f_shape, "cholesky_inverse")
        return tuple(f_shape)

    def forward(self, f: Array) -> tuple[Array, Any]:
        self.shape(f.shape)
        Z = np.linalg.inv(_gram(f, self.upper))
        return Z, (Z, f)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict]:
        Z, f = cache
        return _factor_grad(Z @ (delta + _T(delta)) @ Z, f, self.upper), {}
