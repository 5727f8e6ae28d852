"""Linear algebra (manual_bp.ops.matrix): inverses, solves, determinants, the factorizations
(Cholesky, QR, SVD, symmetric eigendecomposition), the pseudo-inverse, the matrix
exponential, matrix norms, cross products, pairwise distances. Batched over leading dims as
torch's; each backward is the matrix-calculus formula written out (Giles 2008)."""

from __future__ import annotations

from typing import Any

import torch

from manual_bp.ops.activations import get_activation
from manual_bp.ops.arithmetic import AddConstant, DivTensor, Mul, Sub
from manual_bp.ops.arithmetic import Div as DivConst
from manual_bp.ops.linalg import Dot, MatMul
from manual_bp.ops.matrix import (
    MATRIX_ORDS,
    QR,
    SVD,
    Cdist,
    Cholesky,
    Cross,
    Det,
    Eigh,
    HouseholderProduct,
    Inv,
    Lstsq,
    MatrixExp,
    MatrixNorm,
    Pinv,
    SlogDet,
    Solve,
    SolveTriangular,
    WithInfo,
)
from manual_bp.ops.reductions import Mean, Norm, Sum
from manual_bp.ops.shape import Diagonal, Reshape, Transpose
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Refusal, Sample, number, tensor


def _one(layer_cls: type, what: str) -> Any:
    def rule(input: Any) -> Op:
        return Op(layer_cls(), (tensor(input, what),))

    rule.__name__ = what
    return rule


def solve(A: Any, B: Any, *, left: bool = True) -> Op:
    """torch.linalg.solve(A, B): X with A X = B; left=False (X A = B) is refused."""
    if not left:
        raise UnsupportedModuleError("linalg.solve: left=False is not supported; solve Aᵀ Xᵀ = Bᵀ")
    return Op(Solve(), (tensor(A, "solve"), tensor(B, "solve")))


def slogdet(input: Any) -> Op:
    return Op(SlogDet(), (tensor(input, "slogdet"),), outputs=torch.return_types.slogdet)


def linalg_slogdet(A: Any) -> Op:
    return Op(SlogDet(), (tensor(A, "slogdet"),), outputs=torch.return_types.linalg_slogdet)


def logdet(input: Any) -> Op:
    return Op(SlogDet(logdet=True), (tensor(input, "logdet"),))


def cholesky(input: Any, upper: bool = False, *, out: Any = None) -> Op:
    if out is not None:
        raise UnsupportedModuleError("cholesky: the out option is not supported")
    return Op(Cholesky(bool(upper)), (tensor(input, "cholesky"),))


def linalg_qr(A: Any, mode: str = "reduced") -> Op:
    """torch.linalg.qr(A, mode='reduced'): 'complete' when m ≤ n; 'r' is refused (torch has no
    derivative for it)."""
    if mode == "r":
        raise UnsupportedModuleError(
            "linalg.qr: mode='r' is not differentiable (Q is not computed); use mode='reduced'"
        )
    return Op(QR(mode), (tensor(A, "qr"),), outputs=torch.return_types.linalg_qr)


def qr(input: Any, some: bool = True) -> Op:
    """torch.qr(input, some=True) (deprecated): linalg.qr with mode 'reduced' or 'complete'."""
    layer = QR("reduced" if some else "complete")
    return Op(layer, (tensor(input, "qr"),), outputs=torch.return_types.qr)


def svd(A: Any, full_matrices: bool = True, *, driver: Any = None) -> Op:
    """torch.linalg.svd(A, full_matrices=True): (U, S, Vh)."""
    layer = SVD(bool(full_matrices))
    return Op(layer, (tensor(A, "svd"),), outputs=torch.return_types.linalg_svd)


def svdvals(A: Any, *, driver: Any = None) -> Op:
    return Op(SVD(values_only=True), (tensor(A, "svdvals"),))


def eigh(A: Any, UPLO: str = "L") -> Op:
    return Op(Eigh(UPLO), (tensor(A, "eigh"),), outputs=torch.return_types.linalg_eigh)


def eigvalsh(A: Any, UPLO: str = "L") -> Op:
    return Op(Eigh(UPLO, values_only=True), (tensor(A, "eigvalsh"),))


def pinv(A: Any, *, atol: Any = None, rtol: Any = None, hermitian: bool = False) -> Op:
    """torch.linalg.pinv(A, atol=None, rtol=None): hermitian=True is refused (it reads one
    triangle only)."""
    if hermitian:
        raise UnsupportedModuleError(
            "linalg.pinv: hermitian=True is not supported (torch then reads one triangle of A); "
            "use hermitian=False"
        )
    for name, tol in (("atol", atol), ("rtol", rtol)):
        if tol is not None and not isinstance(tol, (int, float)):
            raise UnsupportedModuleError(f"linalg.pinv: {name} as a tensor is not supported")
    return Op(Pinv(atol, rtol), (tensor(A, "pinv"),))


def pinverse(input: Any, rcond: float = 1e-15) -> Op:
    """torch.pinverse(input, rcond=1e-15) = linalg.pinv(input, rtol=rcond)."""
    return Op(Pinv(None, number(rcond, "pinverse (rcond)")), (tensor(input, "pinverse"),))


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


# --- samples ---------------------------------------------------------------------------------


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _well(x: torch.Tensor) -> torch.Tensor:
    """A well-conditioned square batch from x: x + 3I."""
    return x + 3 * torch.eye(x.shape[-1], dtype=x.dtype)


def _spd(x: torch.Tensor) -> torch.Tensor:
    """A symmetric positive-definite batch from x: x xᵀ + I."""
    return x @ x.mT + torch.eye(x.shape[-1], dtype=x.dtype)


def _sym(x: torch.Tensor) -> torch.Tensor:
    return x + x.mT


def _inv_samples() -> list[Sample]:
    return [
        Sample("batched", (_randn(0, 2, 3, 3),), fn=lambda x: torch.linalg.inv(_well(x))),
        Sample("torch.inverse, a method", (_randn(1, 4, 4),), fn=lambda x: _well(x).inverse()),
    ]


def _solve_samples() -> list[Sample]:
    a, b = _randn(2, 2, 3, 3), _randn(3, 2, 3, 4)
    return [
        Sample("matrices", (a, b), fn=lambda a, b: torch.linalg.solve(_well(a), b)),
        Sample(
            "a batch of vectors", (a, b[..., 0]), fn=lambda a, b: torch.linalg.solve(_well(a), b)
        ),
        Sample(
            "a vector, broadcast", (a, b[0, :, 0]), fn=lambda a, b: torch.linalg.solve(_well(a), b)
        ),
        Sample("B batch broadcast", (a[0], b), fn=lambda a, b: torch.linalg.solve(_well(a), b)),
    ]


def _det_samples() -> list[Sample]:
    x = _randn(4, 2, 3, 3)
    return [
        Sample("batched", (x,), fn=torch.linalg.det),
        Sample("torch.det, a method", (x[0],), fn=lambda x: x.det() + torch.det(x)),
    ]


def _slogdet_samples() -> list[Sample]:
    x = _randn(5, 2, 3, 3)
    return [
        Sample("logabsdet, negative dets too", (x,), fn=lambda x: torch.slogdet(x).logabsdet),
        Sample("sign times logabsdet", (x,), fn=lambda x: torch.slogdet(x)[0] * x.slogdet()[1]),
    ]


def _linalg_slogdet_samples() -> list[Sample]:
    x = _randn(6, 2, 3, 3)
    return [Sample("batched", (x,), fn=lambda x: torch.linalg.slogdet(x).logabsdet)]


def _logdet_samples() -> list[Sample]:
    x = _randn(7, 2, 3, 3)
    return [Sample("of an SPD batch", (x,), fn=lambda x: torch.logdet(_spd(x)) + _spd(x).logdet())]


def _cholesky_samples() -> list[Sample]:
    x = _randn(8, 2, 4, 4)
    return [
        Sample("lower", (x,), fn=lambda x: torch.linalg.cholesky(_spd(x))),
        Sample("upper", (x,), fn=lambda x: torch.linalg.cholesky(_spd(x), upper=True)),
        Sample("torch.cholesky, a method", (x[0],), fn=lambda x: _spd(x).cholesky()),
    ]


def _qr_samples() -> list[Sample]:
    return [
        Sample("tall", (_randn(9, 2, 5, 3),), fn=lambda x: torch.linalg.qr(x).Q),
        Sample("tall, Q and R", (_randn(10, 5, 3),), fn=lambda x: torch.linalg.qr(x)[1] * 2),
        Sample(
            "tall, both used",
            (_randn(11, 4, 3),),
            fn=lambda x: (lambda q, r: q @ r.exp())(*torch.linalg.qr(x)),
        ),
        Sample(
            "wide",
            (_randn(12, 3, 5),),
            fn=lambda x: (lambda q, r: q.sum() * r)(*torch.linalg.qr(x)),
        ),
        Sample(
            "square, complete", (_randn(13, 3, 3),), fn=lambda x: torch.linalg.qr(x, "complete").Q
        ),
    ]


def _torch_qr_samples() -> list[Sample]:
    return [Sample("some=True", (_randn(14, 4, 3),), fn=lambda x: torch.qr(x)[0] + x.qr()[0])]


def _svd_samples() -> list[Sample]:
    return [
        Sample("values", (_randn(15, 2, 4, 3),), fn=lambda x: torch.linalg.svd(x).S),
        Sample(
            "reduced, a gauge-invariant use",
            (_randn(16, 5, 3),),
            fn=lambda x: (lambda u, s, vh: (u * s) @ vh)(*torch.linalg.svd(x, full_matrices=False)),
        ),
        Sample(
            "tall: U Uᵀ and Vᵀ V",
            (_randn(17, 5, 3),),
            fn=lambda x: (lambda u, s, vh: (u @ u.mT).sum() * (vh.mT @ vh))(
                *torch.linalg.svd(x, False)
            ),
        ),
        Sample(
            "wide, full_matrices",
            (_randn(18, 3, 5),),
            fn=lambda x: (lambda u, s, vh: (u[:, :3] * s) @ vh[:3] + s.sum())(*torch.linalg.svd(x)),
        ),
    ]


def _eigh_samples() -> list[Sample]:
    x = _randn(19, 2, 4, 4)
    return [
        Sample("values", (x,), fn=lambda x: torch.linalg.eigh(_sym(x)).eigenvalues),
        Sample(
            "V diag(λ²) Vᵀ",
            (x,),
            fn=lambda x: (lambda l, v: (v * (l**2).unsqueeze(-2)) @ v.mT)(
                *torch.linalg.eigh(_sym(x))
            ),
        ),
        Sample(
            "UPLO='U'",
            (x[0],),
            fn=lambda x: (lambda l, v: v.abs() * l)(*torch.linalg.eigh(_sym(x), UPLO="U")),
        ),
    ]


def _pinv_samples() -> list[Sample]:
    return [
        Sample("tall", (_randn(20, 2, 5, 3),), fn=torch.linalg.pinv),
        Sample("wide", (_randn(21, 3, 5),), fn=torch.linalg.pinv),
        Sample("square, rtol", (_randn(22, 4, 4),), fn=lambda x: torch.linalg.pinv(x, rtol=1e-10)),
        Sample(
            "torch.pinverse",
            (_randn(23, 3, 4),),
            fn=lambda x: torch.pinverse(x) + x.pinverse().sin(),
        ),
    ]


def _matrix_exp_samples() -> list[Sample]:
    x = _randn(24, 2, 3, 3)
    return [
        Sample("batched", (x,), fn=torch.linalg.matrix_exp),
        Sample(
            "torch.matrix_exp, a method, larger norm",
            (3 * x[0],),
            fn=lambda x: x.matrix_exp() + torch.matrix_exp(x),
        ),
    ]


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


def _solve_refusals() -> list[Refusal]:
    a = _randn(32, 3, 3)
    return [
        Refusal(
            "left=False",
            (a,),
            UnsupportedModuleError,
            "left=False is not supported",
            fn=lambda a: torch.linalg.solve(_well(a), a, left=False),
        )
    ]


def _qr_refusals() -> list[Refusal]:
    return [
        Refusal(
            "mode='complete' of a tall matrix",
            (_randn(33, 5, 3),),
            ValueError,
            "not differentiable when mode='complete' and nrows > ncols",
            fn=lambda x: torch.linalg.qr(x, "complete").Q,
        ),
    ]


def _pinv_refusals() -> list[Refusal]:
    return [
        Refusal(
            "hermitian=True",
            (_randn(34, 3, 3),),
            UnsupportedModuleError,
            "hermitian=True",
            fn=lambda x: torch.linalg.pinv(_sym(x), hermitian=True),
        )
    ]


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
        "inv",
        "matrix",
        _one(Inv, "inv"),
        functions=(torch.linalg.inv, torch.inverse),
        methods=("inverse",),
        note="batched",
        samples=_inv_samples,
    ),
    OpEntry(
        "solve",
        "matrix",
        solve,
        functions=(torch.linalg.solve,),
        note="B a batch of vectors or matrices, batch dims broadcast; left=False refused",
        samples=_solve_samples,
        refusals=_solve_refusals,
    ),
    OpEntry(
        "det",
        "matrix",
        _one(Det, "det"),
        functions=(torch.linalg.det, torch.det),
        methods=("det",),
        note="singular matrices too (the cofactor by the SVD)",
        samples=_det_samples,
    ),
    OpEntry(
        "slogdet",
        "matrix",
        slogdet,
        functions=(torch.slogdet,),
        methods=("slogdet",),
        note="(sign, logabsdet)",
        samples=_slogdet_samples,
    ),
    OpEntry(
        "linalg.slogdet",
        "matrix",
        linalg_slogdet,
        functions=(torch.linalg.slogdet,),
        samples=_linalg_slogdet_samples,
    ),
    OpEntry(
        "logdet",
        "matrix",
        logdet,
        functions=(torch.logdet,),
        methods=("logdet",),
        note="NaN for a negative determinant, as torch",
        samples=_logdet_samples,
    ),
    OpEntry(
        "cholesky",
        "matrix",
        cholesky,
        functions=(torch.linalg.cholesky, torch.cholesky),
        methods=("cholesky",),
        note="upper",
        samples=_cholesky_samples,
    ),
    OpEntry(
        "linalg.qr",
        "matrix",
        linalg_qr,
        functions=(torch.linalg.qr,),
        note="reduced (tall and wide), complete when m ≤ n; 'r' and tall 'complete' refused "
        "(not differentiable)",
        samples=_qr_samples,
        refusals=_qr_refusals,
    ),
    OpEntry("qr", "matrix", qr, functions=(torch.qr,), methods=("qr",), samples=_torch_qr_samples),
    OpEntry(
        "svd",
        "matrix",
        svd,
        functions=(torch.linalg.svd,),
        note="full_matrices (the extra vectors carry no gradient, as torch); repeated "
        "singular values refused where the loss reaches the vectors",
        samples=_svd_samples,
    ),
    OpEntry(
        "svdvals",
        "matrix",
        svdvals,
        functions=(torch.linalg.svdvals,),
        samples=lambda: [Sample("batched", (_randn(35, 2, 3, 4),), fn=torch.linalg.svdvals)],
    ),
    OpEntry(
        "eigh",
        "matrix",
        eigh,
        functions=(torch.linalg.eigh,),
        note="UPLO; a degenerate spectrum refused where the loss reaches the eigenvectors",
        samples=_eigh_samples,
    ),
    OpEntry(
        "eigvalsh",
        "matrix",
        eigvalsh,
        functions=(torch.linalg.eigvalsh,),
        samples=lambda: [
            Sample("batched", (_randn(36, 2, 3, 3),), fn=lambda x: torch.linalg.eigvalsh(_sym(x)))
        ],
    ),
    OpEntry(
        "pinv",
        "matrix",
        pinv,
        functions=(torch.linalg.pinv,),
        note="atol, rtol (torch's defaults); hermitian=True refused",
        samples=_pinv_samples,
        refusals=_pinv_refusals,
    ),
    OpEntry(
        "pinverse",
        "matrix",
        pinverse,
        functions=(torch.pinverse,),
        methods=("pinverse",),
        note="rcond",
        samples=lambda: _pinv_samples()[-1:],
    ),
    OpEntry(
        "matrix_exp",
        "matrix",
        _one(MatrixExp, "matrix_exp"),
        functions=(torch.linalg.matrix_exp, torch.matrix_exp),
        methods=("matrix_exp",),
        note="Ā by the Fréchet derivative (a block exponential)",
        samples=_matrix_exp_samples,
    ),
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


def lstsq(A: Any, B: Any, rcond: Any = None, *, driver: Any = None) -> Op:
    """torch.linalg.lstsq(A, B) of a full-rank A with the default driver; other drivers (their
    rank cut-off, singular values) are refused."""
    if driver not in (None, "gelsy") or rcond is not None:
        raise UnsupportedModuleError(
            f"lstsq: driver={driver!r}, rcond={rcond!r} are not supported; only the default "
            "driver ('gelsy') without rcond, on full-rank matrices"
        )
    ops = (tensor(A, "lstsq"), tensor(B, "lstsq"))
    return Op(Lstsq(), ops, outputs=torch.return_types.linalg_lstsq)


def _lstsq_samples() -> list[Sample]:
    a, b = _randn(56, 2, 5, 3), _randn(57, 2, 5, 2)
    return [
        Sample("tall: the solution", (a, b), fn=lambda a, b: torch.linalg.lstsq(a, b).solution),
        Sample("square", (a[:, :3], b), fn=lambda a, b: torch.linalg.lstsq(a, b[:, :3].exp())[0]),
    ]


ROWS.append(
    OpEntry(
        "lstsq",
        "matrix",
        lstsq,
        functions=(torch.linalg.lstsq,),
        note="full-rank A, the default driver (its residuals and singular values are empty); "
        "rank-deficient A, other drivers and rcond refused",
        samples=_lstsq_samples,
        refusals=lambda: [
            Refusal(
                "driver gelsd",
                (_randn(58, 5, 3), _randn(59, 5, 2)),
                UnsupportedModuleError,
                "driver='gelsd'",
                fn=lambda a, b: torch.linalg.lstsq(a, b, driver="gelsd")[0],
            )
        ],
    )
)


def inv_ex(A: Any, *, check_errors: bool = False) -> Op:
    return Op(WithInfo(Inv()), (tensor(A, "inv_ex"),), outputs=torch.return_types.linalg_inv_ex)


def cholesky_ex(A: Any, *, upper: bool = False, check_errors: bool = False) -> Op:
    layer = WithInfo(Cholesky(bool(upper)))
    return Op(layer, (tensor(A, "cholesky_ex"),), outputs=torch.return_types.linalg_cholesky_ex)


def solve_ex(A: Any, B: Any, *, left: bool = True, check_errors: bool = False) -> Op:
    if not left:
        raise UnsupportedModuleError("linalg.solve_ex: left=False is not supported")
    ops = (tensor(A, "solve_ex"), tensor(B, "solve_ex"))
    return Op(WithInfo(Solve()), ops, outputs=torch.return_types.linalg_solve_ex)


def _ex_samples() -> dict[str, list[Sample]]:
    x, b = _randn(60, 2, 3, 3), _randn(61, 2, 3, 2)
    return {
        "inv_ex": [Sample("inverse", (x,), fn=lambda x: torch.linalg.inv_ex(_well(x)).inverse)],
        "cholesky_ex": [Sample("L", (x,), fn=lambda x: torch.linalg.cholesky_ex(_spd(x))[0])],
        "solve_ex": [
            Sample("result", (x, b), fn=lambda x, b: torch.linalg.solve_ex(_well(x), b).result)
        ],
    }


ROWS += [
    OpEntry(
        name,
        "matrix",
        rule,
        functions=(fn,),
        note="(result, info); info is 0",
        samples=lambda name=name: _ex_samples()[name],
    )
    for name, rule, fn in (
        ("inv_ex", inv_ex, torch.linalg.inv_ex),
        ("cholesky_ex", cholesky_ex, torch.linalg.cholesky_ex),
        ("solve_ex", solve_ex, torch.linalg.solve_ex),
    )
]
