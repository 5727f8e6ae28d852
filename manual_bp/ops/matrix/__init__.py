"""Matrix functions and factorizations (torch.linalg), forward by NumPy/SciPy, the reverse-mode
formula written out beside it (Giles 2008, "An extended collection of matrix derivative
results for forward and reverse mode AD"; Seeger et al. 2017 and Murray 2016 for the
factorizations). Every layer works on a batch of matrices (leading dims), as torch's; Ā is
∂L/∂A, ·ᵀ the transpose of the last two dims.

    Inv            Z = A⁻¹                   Ā = −Zᵀ Z̄ Zᵀ
    Solve          X = A⁻¹ B                 B̄ = A⁻ᵀ X̄,  Ā = −B̄ Xᵀ
    Det            d = det A                 Ā = d̄ · cof(A)   (cof(A) = d A⁻ᵀ, by the SVD)
    SlogDet        (sign, log|det A|)        Ā = l̄ A⁻ᵀ
    Cholesky       A = L Lᵀ                  Ā = ½ (S + Sᵀ), S = L⁻ᵀ Φ(Lᵀ L̄) L⁻¹
    QR             A = Q R                   (Q Φᵤ(M) + Q̄) R⁻ᵀ,  M = R̄ Rᵀ − Qᵀ Q̄
    SVD            A = U diag(s) Vᵀ          Ā = U [(skew(UᵀŪ) s + s skew(VᵀV̄))/E + diag(s̄)] Vᵀ…
    Eigh           A = V diag(λ) Vᵀ          Ā = V [skew(VᵀV̄)/2 / E + diag(λ̄)] Vᵀ
    Pinv           Z = A⁺                    Ā = −Zᵀ Z̄ Zᵀ + (I − A Z) Z̄ᵀ Z Zᵀ + Zᵀ Z Z̄ᵀ (I − Z A)
    MatrixExp      Z = e^A                   Ā = L(Aᵀ, Z̄), the Fréchet derivative at Aᵀ
    MatrixNorm     ‖A‖ (fro, nuc, ±1, ±2, ±inf)

Repeated singular values or eigenvalues make the singular vectors or eigenvectors
non-unique; their gradient is then inf or NaN in torch too (its docs warn of it): those
layers refuse a loss that reaches the vectors of a (nearly) degenerate spectrum.

The family lives in three modules, re-exported here: `inverse` (inverse, solves, determinants,
and the helpers the others share), `factorizations` (Cholesky, QR, SVD, Eigh, Pinv, MatrixExp,
Householder products, lstsq, the *_ex forms) and `norms` (matrix norms, cross, cdist).
"""

from __future__ import annotations

from manual_bp.ops.matrix.factorizations import (
    QR,
    SVD,
    Cholesky,
    Eigh,
    HouseholderProduct,
    Lstsq,
    MatrixExp,
    Pinv,
    WithInfo,
)
from manual_bp.ops.matrix.inverse import Det, Inv, SlogDet, Solve, SolveTriangular
from manual_bp.ops.matrix.norms import MATRIX_ORDS, Cdist, Cross, MatrixNorm, Pdist

__all__ = [
    "Cdist",
    "Pdist",
    "Cholesky",
    "Cross",
    "Det",
    "Eigh",
    "HouseholderProduct",
    "Inv",
    "Lstsq",
    "MATRIX_ORDS",
    "MatrixExp",
    "MatrixNorm",
    "Pinv",
    "QR",
    "SVD",
    "SlogDet",
    "Solve",
    "SolveTriangular",
    "WithInfo",
]
