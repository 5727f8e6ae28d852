"""Linear algebra (manual_bp.ops.matrix): inverses, solves, determinants, the factorizations
(Cholesky, QR, SVD, symmetric eigendecomposition), the pseudo-inverse, the matrix
exponential, matrix norms, cross products, pairwise distances. Batched over leading dims as
torch's; each backward is the matrix-calculus formula written out (Giles 2008).

The family's rows live in three modules: `decompositions` (inverses, solves, determinants,
the factorizations, the pseudo-inverse, the matrix exponential), `products` (matrix norms,
cross and dot products, distances, Householder products, triangular solves, powers,
covariance), `least_squares` (least squares and the *_ex forms) and `factored` (the LU family,
the Cholesky solves); ROWS joins them in the order
docs/ops.md lists them. Every rule is re-exported here."""

from __future__ import annotations

from torch_ref.registry.matrix import decompositions, factored, least_squares, products
from torch_ref.registry.matrix.decompositions import (
    cholesky,
    eigh,
    eigvalsh,
    linalg_qr,
    linalg_slogdet,
    logdet,
    pinv,
    pinverse,
    qr,
    slogdet,
    solve,
    svd,
    svdvals,
)
from torch_ref.registry.matrix.least_squares import cholesky_ex, inv_ex, lstsq, solve_ex
from torch_ref.registry.matrix.products import (
    cdist,
    corrcoef,
    cosine_similarity,
    cov,
    cross,
    dist,
    householder_product,
    linalg_cross,
    linalg_diagonal,
    matrix_norm,
    matrix_power,
    multi_dot,
    pairwise_distance,
    solve_triangular,
    vdot,
    vecdot,
)

#: the rows in the order docs/ops.md lists them
ROWS = [*decompositions.ROWS, *products.ROWS, *least_squares.ROWS, *factored.ROWS]

__all__ = [
    "cdist",
    "cholesky",
    "cholesky_ex",
    "corrcoef",
    "cosine_similarity",
    "cov",
    "cross",
    "dist",
    "eigh",
    "eigvalsh",
    "householder_product",
    "inv_ex",
    "linalg_cross",
    "linalg_diagonal",
    "linalg_qr",
    "linalg_slogdet",
    "logdet",
    "lstsq",
    "matrix_norm",
    "matrix_power",
    "multi_dot",
    "pairwise_distance",
    "pinv",
    "pinverse",
    "qr",
    "slogdet",
    "solve",
    "solve_ex",
    "solve_triangular",
    "svd",
    "svdvals",
    "vdot",
    "vecdot",
]
