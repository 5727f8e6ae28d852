"""Linear algebra (manual_bp.ops.matrix): inverses, solves, determinants, the
factorizations (Cholesky, QR, SVD, symmetric eigendecomposition), the pseudo-inverse, the
matrix exponential. Batched over leading dims as torch's; each backward is the
matrix-calculus formula written out (Giles 2008)."""

from __future__ import annotations

from typing import Any

import torch

from manual_bp.ops.matrix import (
    QR,
    SVD,
    Cholesky,
    Det,
    Eigh,
    Inv,
    MatrixExp,
    Pinv,
    SlogDet,
    Solve,
)
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
]
