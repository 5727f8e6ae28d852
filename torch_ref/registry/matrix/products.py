"""Linear algebra (manual_bp.ops.matrix, .linalg, .reductions): matrix norms, cross
and dot products, pairwise distances and cosine similarity, Householder products,
triangular solves, matrix powers and multi_dot, diagonals, covariance and correlation.
Batched over leading dims as torch's; each backward is the matrix-calculus formula
written out (Giles 2008)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from manual_bp.ops.activations import get_activation
from manual_bp.ops.arithmetic import AddConstant, DivTensor, Mul, Sub
from manual_bp.ops.arithmetic import Div as DivConst
from manual_bp.ops.linalg import Dot, MatMul
from manual_bp.ops.matrix import (
    MATRIX_ORDS,
    Cdist,
    Cross,
    HouseholderProduct,
    Inv,
    MatrixNorm,
    Pdist,
    SolveTriangular,
)
from manual_bp.ops.reductions import Mean, Norm, Sum
from manual_bp.ops.shape import Diagonal, Reshape, Transpose
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Sample, number, tensor
from torch_ref.registry.matrix.decompositions import _randn, _well


def matrix_norm(
    A: Any, ord: Any = "fro", dim: Any = (-2, -1), keepdim: bool = False, *, dtype: Any = None
) -> Op:
    if dtype is not None and dtype != torch.float64:
        raise UnsupportedModuleError("matrix_norm: the dtype option is not supported")
    if ord not in MATRIX_ORDS:
        raise UnsupportedModuleError(
            f"matrix_norm: ord={ord!r} is not a matrix norm; expected one of {MATRIX_ORDS}"
        )
    return Op(MatrixNorm(ord, tuple(dim), bool(keepdim)), (tensor(A, "matrix_norm"),))


def linalg_cross(input: Any, other: Any, *, dim: int = -1) -> Op:
    return Op(Cross(dim), (tensor(input, "cross"), tensor(other, "cross")))


def cross(input: Any, other: Any, dim: Any = None) -> Op:
    """torch.cross(input, other, dim=None): dim None is the first dim of size 3 (as torch)."""
    a, b = tensor(input, "cross"), tensor(other, "cross")
    if dim is None:
        dim = next((k for k, n in enumerate(a.shape) if n == 3), -1)
    return Op(Cross(dim), (a, b))


def cdist(x1: Any, x2: Any, p: float = 2.0, compute_mode: Any = None) -> Op:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not p >= 0:
        raise UnsupportedModuleError(f"cdist: expected a number p >= 0 (inf too), got {p!r}")
    return Op(Cdist(p), (tensor(x1, "cdist"), tensor(x2, "cdist")))


def pdist(input: Any, p: float = 2.0) -> Op:
    """F.pdist(x, p): the distances of the pairs i < j of x's rows, as cdist's."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not p >= 0:
        raise UnsupportedModuleError(f"pdist: expected a number p >= 0 (inf too), got {p!r}")
    return Op(Pdist(p), (tensor(input, "pdist"),))


def _pdist_samples() -> list[Sample]:
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(80), dtype=torch.float64)
    twin = torch.cat([x, x[:1]])  # (a zero distance: no gradient there, as torch)
    return [
        Sample(f"p = {p}", (x,), fn=lambda x, p=p: torch.pdist(x, p))
        for p in (2.0, 1.0, 0.5, 3.0, float("inf"), 0.0)
    ] + [Sample("a repeated row", (twin,), fn=lambda x: F.pdist(x))]


def vdot(input: Any, other: Any) -> Op:
    """torch.vdot of real vectors: the dot product."""
    return Op(Dot(), (tensor(input, "vdot"), tensor(other, "vdot")))


def householder_product(A: Any, tau: Any) -> Op:
    """torch.linalg.householder_product(A, tau) (= torch.orgqr)."""
    return Op(HouseholderProduct(), (tensor(A, "householder_product"), tensor(tau, "tau")))


def solve_triangular(
    A: Any, B: Any, *, upper: bool, left: bool = True, unitriangular: bool = False
) -> Op:
    layer = SolveTriangular(bool(upper), bool(left), bool(unitriangular))
    return Op(layer, (tensor(A, "solve_triangular"), tensor(B, "solve_triangular")))


def vecdot(x: Any, y: Any, *, dim: int = -1) -> Op:
    """torch.linalg.vecdot of real vectors: Σ x ⊙ y over dim (broadcast)."""
    return Op(Sum(dim), (Op(Mul(), (tensor(x, "vecdot"), tensor(y, "vecdot"))),))


def multi_dot(tensors: Any) -> Any:
    """torch.linalg.multi_dot([A, B, …]): left to right products (the first and last may be
    vectors); the order of products changes rounding only."""
    ts = [tensor(t, "multi_dot") for t in tensors]
    if len(ts) < 2:
        raise ValueError(f"multi_dot: expected at least 2 tensors, got {len(ts)}")
    out: Any = ts[0]
    for t in ts[1:]:
        out = Op(MatMul(), (out, t))
    return out


def matrix_power(A: Any, n: int) -> Any:
    """torch.linalg.matrix_power(A, n): n ≥ 1 a chain of products by repeated squaring
    (A, A², A⁴, ...), n < 0 the same of A⁻¹; n = 0 (the identity, no gradient) refused."""
    x = tensor(A, "matrix_power")
    if isinstance(n, bool) or not isinstance(n, int):
        raise UnsupportedModuleError(f"matrix_power: expected an int n, got {n!r}")
    if n == 0:
        raise UnsupportedModuleError(
            "matrix_power: n = 0 (the identity, a constant) is not supported; use torch.eye"
        )
    base: Any = Op(Inv(), (x,)) if n < 0 else x
    k, result, power = abs(n), None, base
    while k:
        if k & 1:
            result = power if result is None else Op(MatMul(), (result, power))
        k >>= 1
        if k:
            power = Op(MatMul(), (power, power))
    return result


def linalg_diagonal(A: Any, *, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Op:
    return Op(Diagonal(offset, dim1, dim2), (tensor(A, "linalg.diagonal"),))


def _matrix_norm_samples() -> list[Sample]:
    x = _randn(25, 2, 4, 3)
    out = [
        Sample(f"ord={o!r}", (x,), fn=lambda x, o=o: torch.linalg.matrix_norm(x, o))
        for o in MATRIX_ORDS
    ]
    out.append(
        Sample(
            "dims (0, 2), keepdim",
            (x,),
            fn=lambda x: torch.linalg.matrix_norm(x, "nuc", (0, 2), True),
        )
    )
    out.append(
        Sample(
            "linalg.norm with a matrix ord",
            (x,),
            fn=lambda x: torch.linalg.norm(x, 2, (-2, -1)) + torch.linalg.norm(x[0], "nuc"),
        )
    )
    return out


def _cross_samples() -> list[Sample]:
    a, b = _randn(26, 4, 3), _randn(27, 1, 3)
    return [
        Sample("linalg.cross, broadcast", (a, b), fn=torch.linalg.cross),
        Sample(
            "dim 0",
            (a.T.contiguous(), b.T.contiguous()),
            fn=lambda a, b: torch.linalg.cross(a, b, dim=0),
        ),
    ]


def _torch_cross_samples() -> list[Sample]:
    a, b = _randn(28, 3, 4), _randn(29, 3, 4)
    return [
        Sample(
            "dim None: the first of size 3", (a, b), fn=lambda a, b: torch.cross(a, b, dim=None)
        ),
        Sample("a method, dim 0", (a, b), fn=lambda a, b: a.cross(b, dim=0)),
    ]


def _cdist_samples() -> list[Sample]:
    a, b = _randn(30, 2, 4, 3), _randn(31, 2, 5, 3)
    out = [
        Sample(f"p={p}", (a, b), fn=lambda a, b, p=p: torch.cdist(a, b, p))
        for p in (2.0, 1.0, 3.0, 0.5, float("inf"))
    ]
    out.append(Sample("2-d, a row in both (a zero distance)", (a[0], a[0, :2]), fn=torch.cdist))
    return out


def _householder_samples() -> list[Sample]:
    a, tau = _randn(39, 2, 5, 3), _randn(40, 2, 3)
    return [
        Sample("batched, k = n", (a, tau), fn=torch.linalg.householder_product),
        Sample("k < n, torch.orgqr", (a[0], tau[0, :2]), fn=lambda a, t: torch.orgqr(a, t)),
    ]


def _solve_triangular_samples() -> list[Sample]:
    a, b = _randn(41, 2, 3, 3), _randn(42, 2, 3, 4)
    st = torch.linalg.solve_triangular
    return [
        Sample("upper, left", (a, b), fn=lambda a, b: st(_well(a), b, upper=True)),
        Sample(
            "lower, right",
            (a, b.mT.contiguous()),
            fn=lambda a, b: st(_well(a), b, upper=False, left=False),
        ),
        Sample(
            "unitriangular, A broadcast",
            (a[0], b),
            fn=lambda a, b: st(a, b, upper=False, unitriangular=True),
        ),
    ]


def _more_samples() -> dict[str, Any]:
    x, y = _randn(43, 3, 4), _randn(44, 4)
    a, b, c = _randn(45, 4), _randn(46, 4, 3), _randn(47, 3, 2)
    m = _randn(48, 2, 3, 3)
    return {
        "vecdot": [
            Sample("broadcast, dim", (x, y), fn=lambda x, y: torch.linalg.vecdot(x, y)),
            Sample("dim 0", (x, x), fn=lambda x, y: torch.linalg.vecdot(x, y, dim=0)),
        ],
        "multi_dot": [
            Sample("vector first", (a, b, c), fn=lambda a, b, c: torch.linalg.multi_dot([a, b, c]))
        ],
        "matrix_power": [
            Sample(
                "n = 3, 5",
                (m,),
                fn=lambda m: torch.linalg.matrix_power(m, 3) + m.matrix_power(5) / 10,
            ),
            Sample("n = -2", (m,), fn=lambda m: torch.linalg.matrix_power(_well(m), -2)),
        ],
        "linalg.diagonal": [
            Sample(
                "defaults, offset",
                (_randn(49, 2, 3, 4),),
                fn=lambda x: torch.linalg.diagonal(x) + torch.linalg.diagonal(x, offset=1)[..., :1],
            )
        ],
    }


ROWS = [
    OpEntry(
        "matrix_norm",
        "matrix",
        matrix_norm,
        functions=(torch.linalg.matrix_norm,),
        note="fro, nuc, ±1, ±2, ±inf; any two dims, keepdim; ties reported",
        samples=_matrix_norm_samples,
    ),
    OpEntry(
        "linalg.cross",
        "matrix",
        linalg_cross,
        functions=(torch.linalg.cross,),
        note="broadcast, any dim of size 3",
        samples=_cross_samples,
    ),
    OpEntry(
        "cross",
        "matrix",
        cross,
        functions=(torch.cross,),
        methods=("cross",),
        note="dim None: the first dim of size 3",
        samples=_torch_cross_samples,
    ),
    OpEntry(
        "cdist",
        "matrix",
        cdist,
        functions=(torch.cdist,),
        note="any p ≥ 0 (0, 1, 2, inf included), batched; zero distances and p = inf ties reported",
        samples=_cdist_samples,
    ),
    OpEntry(
        "pdist",
        "matrix",
        pdist,
        functions=(torch.pdist,),
        note="any p ≥ 0, the pairs i < j in torch's order; zero distances and p = inf ties "
        "reported",
        samples=_pdist_samples,
    ),
    OpEntry(
        "vdot",
        "matrix",
        vdot,
        functions=(torch.vdot,),
        methods=("vdot",),
        note="real vectors",
        samples=lambda: [Sample("vectors", (_randn(37, 4), _randn(38, 4)), fn=torch.vdot)],
    ),
    OpEntry(
        "householder_product",
        "matrix",
        householder_product,
        functions=(torch.linalg.householder_product, torch.orgqr),
        methods=("orgqr",),
        note="batched; k ≤ n reflectors (the orthogonal parametrization's householder map)",
        samples=_householder_samples,
    ),
    OpEntry(
        "solve_triangular",
        "matrix",
        solve_triangular,
        functions=(torch.linalg.solve_triangular,),
        note="upper/lower, left/right, unitriangular (only the triangle is read and gets a "
        "gradient); batch dims broadcast",
        samples=_solve_triangular_samples,
    ),
    OpEntry(
        "vecdot",
        "matrix",
        vecdot,
        functions=(torch.linalg.vecdot,),
        note="Σ x ⊙ y over dim, broadcast",
        samples=lambda: _more_samples()["vecdot"],
    ),
    OpEntry(
        "multi_dot",
        "matrix",
        multi_dot,
        functions=(torch.linalg.multi_dot,),
        note="products left to right",
        samples=lambda: _more_samples()["multi_dot"],
    ),
    OpEntry(
        "matrix_power",
        "matrix",
        matrix_power,
        functions=(torch.linalg.matrix_power, torch.matrix_power),
        methods=("matrix_power",),
        note="n ≠ 0, negative through inv; n = 0 refused (a constant)",
        samples=lambda: _more_samples()["matrix_power"],
    ),
    OpEntry(
        "linalg.diagonal",
        "matrix",
        linalg_diagonal,
        functions=(torch.linalg.diagonal,),
        note="dims −2, −1 by default",
        linear=True,
        samples=lambda: _more_samples()["linalg.diagonal"],
    ),
]


def cosine_similarity(x1: Any, x2: Any, dim: int = 1, eps: float = 1e-8) -> Op:
    """F.cosine_similarity: Σ x₁x₂ / (max(‖x₁‖, ε) · max(‖x₂‖, ε)) over dim (broadcast); the
    gradient is torch's wherever both norms exceed ε."""
    a, b = tensor(x1, "cosine_similarity"), tensor(x2, "cosine_similarity")
    eps = number(eps, "cosine_similarity (eps)")

    def norm(t: Any) -> Op:
        return Op(get_activation("clamp", min=eps), (Op(Norm(2.0, dim, False), (t,)),))

    dot = Op(Sum(dim), (Op(Mul(), (a, b)),))
    return Op(DivTensor(), (dot, Op(Mul(), (norm(a), norm(b)))))


def pairwise_distance(
    x1: Any, x2: Any, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False
) -> Op:
    """F.pairwise_distance: ‖x₁ − x₂ + ε‖_p over the last dim."""
    a, b = tensor(x1, "pairwise_distance"), tensor(x2, "pairwise_distance")
    shifted = Op(AddConstant(number(eps, "pairwise_distance (eps)")), (Op(Sub(), (a, b)),))
    return Op(Norm(number(p, "pairwise_distance (p)"), -1, bool(keepdim)), (shifted,))


def dist(input: Any, other: Any, p: float = 2.0) -> Op:
    """torch.dist: ‖x − y‖_p of all entries (broadcast)."""
    diffs = Op(Sub(), (tensor(input, "dist"), tensor(other, "dist")))
    return Op(Norm(number(p, "dist (p)"), None, False), (diffs,))


def _distance_samples() -> dict[str, list[Sample]]:
    a, b = _randn(51, 4, 5), _randn(52, 1, 5)
    return {
        "cosine": [
            Sample(
                "dim 1, broadcast",
                (a, b),
                fn=lambda a, b: torch.nn.functional.cosine_similarity(a, b),
            ),
            Sample("dim 0", (a, a.flip(0)), fn=lambda a, b: torch.cosine_similarity(a, b, 0)),
        ],
        "pairwise": [
            Sample(
                "p = 2, 1, keepdim",
                (a, b),
                fn=lambda a, b: (
                    torch.nn.functional.pairwise_distance(a, b)
                    + torch.pairwise_distance(a, b, 1.0, keepdim=True).sum(-1)
                ),
            )
        ],
        "dist": [Sample("p = 2, 3", (a, b), fn=lambda a, b: torch.dist(a, b) + a.dist(b, 3))],
    }


ROWS += [
    OpEntry(
        "cosine_similarity",
        "matrix",
        cosine_similarity,
        functions=(torch.nn.functional.cosine_similarity, torch.cosine_similarity),
        note="dim, eps (each norm clamped to eps), broadcast",
        samples=lambda: _distance_samples()["cosine"],
    ),
    OpEntry(
        "pairwise_distance",
        "matrix",
        pairwise_distance,
        functions=(torch.nn.functional.pairwise_distance, torch.pairwise_distance),
        note="p, eps, keepdim",
        samples=lambda: _distance_samples()["pairwise"],
    ),
    OpEntry(
        "dist",
        "matrix",
        dist,
        functions=(torch.dist,),
        methods=("dist",),
        note="any p",
        samples=lambda: _distance_samples()["dist"],
    ),
]


def cov(input: Any, *, correction: int = 1, fweights: Any = None, aweights: Any = None) -> Any:
    """torch.cov(x) of the rows of x (variables × observations): xc xcᵀ / (N − correction),
    xc = x − its row means (a 1-d x: one variable, a 0-d result); weights are refused."""
    if fweights is not None or aweights is not None:
        raise UnsupportedModuleError("cov: fweights and aweights are not supported")
    x = tensor(input, "cov")
    x2 = x if x.ndim == 2 else Op(Reshape((1, x.shape[0])), (x,))
    n = x.shape[-1]
    xc = Op(Sub(), (x2, Op(Mean(1, True), (x2,))))
    c = Op(DivConst(n - correction), (Op(MatMul(), (xc, Op(Transpose(0, 1), (xc,)))),))
    return c if x.ndim == 2 else Op(Reshape(()), (c,))


def corrcoef(input: Any) -> Any:
    """torch.corrcoef(x) = cov(x) / √(diag ⊗ diag) (torch also clips to [−1, 1]: the values here
    stay inside it up to rounding)."""
    x = tensor(input, "corrcoef")
    c = cov(x)
    if x.ndim < 2:
        return Op(DivTensor(), (c, c))
    d = Op(get_activation("sqrt"), (Op(Diagonal(0, 0, 1), (c,)),))
    return Op(DivTensor(), (Op(DivTensor(), (c, Op(Reshape((-1, 1)), (d,)))), d))


ROWS += [
    OpEntry(
        "cov",
        "matrix",
        cov,
        functions=(torch.cov,),
        methods=("cov",),
        note="correction; weights refused",
        samples=lambda: [
            Sample("rows are variables", (_randn(53, 3, 6),), fn=torch.cov),
            Sample(
                "correction 0, 1-d", (_randn(54, 6),), fn=lambda x: torch.cov(x, correction=0) * x
            ),
        ],
    ),
    OpEntry(
        "corrcoef",
        "matrix",
        corrcoef,
        functions=(torch.corrcoef,),
        methods=("corrcoef",),
        samples=lambda: [Sample("rows are variables", (_randn(55, 3, 6),), fn=torch.corrcoef)],
    ),
]
