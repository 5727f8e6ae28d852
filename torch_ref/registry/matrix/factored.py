"""Rows of the matrices held by their factors: the LU family (torch.linalg.lu_factor(_ex),
linalg.lu, lu_unpack, linalg.lu_solve and the deprecated torch.lu / lu_solve), the Cholesky
solves (torch.cholesky_solve, cholesky_inverse) and the deprecated torch.triangular_solve.
Their formulas: manual_bp.ops.matrix.factored (triangular_solve is solve_triangular's)."""

from __future__ import annotations

from typing import Any

import torch

from manual_bp.ops.matrix import SolveTriangular
from manual_bp.ops.matrix.factored import (
    LU,
    CholeskyInverse,
    CholeskySolve,
    LUFactor,
    LUSolve,
    LUUnpack,
)
from manual_bp.ops.shape import Identity, Transpose
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Refusal, Sample, tensor

_R = torch.return_types


def _pivoted(pivot: bool, what: str) -> None:
    if not pivot:
        raise UnsupportedModuleError(f"{what}: pivot=False is not supported (torch: CUDA only)")


def lu_factor(A: Any, *, pivot: bool = True) -> Op:
    _pivoted(pivot, "linalg.lu_factor")
    return Op(LUFactor(), (tensor(A, "lu_factor"),), outputs=_R.linalg_lu_factor)


def lu_factor_ex(A: Any, *, pivot: bool = True, check_errors: bool = False) -> Op:
    _pivoted(pivot, "linalg.lu_factor_ex")
    return Op(LUFactor(info=True), (tensor(A, "lu_factor_ex"),), outputs=_R.linalg_lu_factor_ex)


def lu(A: Any, pivot: bool = True, get_infos: bool = False, out: Any = None) -> Op:
    """torch.lu (deprecated): (LU, pivots) or, with get_infos, (LU, pivots, infos)."""
    _pivoted(pivot, "lu")
    return Op(LUFactor(info=get_infos), (tensor(A, "lu"),), outputs=tuple)


def linalg_lu(A: Any, *, pivot: bool = True) -> Op:
    _pivoted(pivot, "linalg.lu")
    return Op(LU(), (tensor(A, "linalg.lu"),), outputs=_R.linalg_lu)


def lu_unpack(
    LU_data: Any, LU_pivots: Any, unpack_data: bool = True, unpack_pivots: bool = True
) -> Op:
    if not (unpack_data and unpack_pivots):
        raise UnsupportedModuleError(
            "lu_unpack: unpack_data=False or unpack_pivots=False (empty outputs) is not supported"
        )
    ops = (tensor(LU_data, "lu_unpack"), tensor(LU_pivots, "lu_unpack (pivots)"))
    return Op(LUUnpack(), ops, outputs=_R.lu_unpack)


def linalg_lu_solve(
    LU: Any, pivots: Any, B: Any, *, left: bool = True, adjoint: bool = False
) -> Op:
    ops = (tensor(LU, "lu_solve"), tensor(pivots, "lu_solve (pivots)"), tensor(B, "lu_solve (B)"))
    return Op(LUSolve(left, adjoint), ops)


def lu_solve(b: Any, LU_data: Any, LU_pivots: Any) -> Op:
    """torch.lu_solve(b, LU_data, LU_pivots) (deprecated): linalg.lu_solve(LU, pivots, b)."""
    return linalg_lu_solve(LU_data, LU_pivots, b)


def cholesky_solve(input: Any, input2: Any, upper: bool = False) -> Op:
    ops = (tensor(input, "cholesky_solve"), tensor(input2, "cholesky_solve (the factor)"))
    return Op(CholeskySolve(upper), ops)


def cholesky_inverse(input: Any, upper: bool = False) -> Op:
    return Op(CholeskyInverse(upper), (tensor(input, "cholesky_inverse"),))


def triangular_solve(
    input: Any, A: Any, upper: bool = True, transpose: bool = False, unitriangular: bool = False
) -> Op:
    """torch.triangular_solve(b, A) (deprecated): (X, a copy of A), X = op(T)⁻¹ b with T the
    triangle of A read, op(T) = Tᵀ when transpose: solve_triangular on Aᵀ, whose other
    triangle is then read. The copy passes its gradient to A whole, as torch's."""
    a, b = tensor(A, "triangular_solve (A)"), tensor(input, "triangular_solve")
    T = Op(Transpose(-2, -1), (a,)) if transpose else a
    X = Op(SolveTriangular(upper != bool(transpose), True, unitriangular), (T, b))
    return _R.triangular_solve((X, Op(Identity(), (a,))))


# --- samples --------------------------------------------------------------------------------


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _spd_factor(x: torch.Tensor) -> torch.Tensor:
    """A well-conditioned lower-triangular factor computed from x (its diagonal ≥ 1)."""
    return torch.tril(x, -1) + torch.diag_embed(1 + x.diagonal(dim1=-2, dim2=-1).abs())


def _lu_samples() -> dict[str, list[Sample]]:
    sq, wide, tall = _randn(70, 2, 4, 4), _randn(71, 3, 5), _randn(72, 5, 3)
    b = _randn(73, 2, 4, 2)
    la = torch.linalg
    return {
        "lu_factor": [
            Sample("square, batched", (sq,), fn=lambda a: la.lu_factor(a).LU),
            Sample("wide", (wide,), fn=lambda a: la.lu_factor(a)[0]),
            Sample("tall", (tall,), fn=lambda a: la.lu_factor(a)[0]),
        ],
        "lu_factor_ex": [Sample("square", (sq,), fn=lambda a: la.lu_factor_ex(a).LU)],
        "lu": [Sample("torch.lu, get_infos", (sq,), fn=lambda a: torch.lu(a, get_infos=True)[0])],
        "linalg.lu": [
            Sample("L and U, square", (sq,), fn=lambda a: la.lu(a).L @ la.lu(a).U.exp()),
            Sample("wide", (wide,), fn=lambda a: la.lu(a).U),
            Sample("tall", (tall,), fn=lambda a: la.lu(a).L),
        ],
        "lu_unpack": [
            Sample(
                "of lu_factor", (sq,), fn=lambda a: torch.cat(torch.lu_unpack(*la.lu_factor(a))[1:])
            ),
            Sample(
                "tall, a computed packed LU",
                (tall,),
                fn=lambda a: torch.lu_unpack(2 * a, torch.tensor([1, 3, 3], dtype=torch.int32))[1],
            ),
        ],  # fmt: skip
        "linalg.lu_solve": [
            Sample("left", (sq, b), fn=lambda a, b: la.lu_solve(*la.lu_factor(a), b)),
            Sample(
                "right, adjoint",
                (sq, b),
                fn=lambda a, b: la.lu_solve(*la.lu_factor(a), b.mT, left=False, adjoint=True),
            ),
        ],  # fmt: skip
        "lu_solve": [
            Sample(
                "torch.lu_solve(b, LU, pivots)",
                (sq, b),
                fn=lambda a, b: torch.lu_solve(b, *torch.linalg.lu_factor(a)),
            ),
        ],  # fmt: skip
        "cholesky_solve": [
            Sample("lower", (b, sq), fn=lambda b, x: torch.cholesky_solve(b, _spd_factor(x))),
            Sample(
                "upper, a model factor",
                (b,),
                fn=lambda b, u: torch.cholesky_solve(b, u, True),
                params={"u": _spd_factor(_randn(74, 4, 4)).mT.contiguous()},
            ),
        ],  # fmt: skip
        "cholesky_inverse": [
            Sample("lower", (sq,), fn=lambda x: torch.cholesky_inverse(_spd_factor(x))),
            Sample("upper", (sq[0],), fn=lambda x: torch.cholesky_inverse(_spd_factor(x).mT, True)),
        ],
        "triangular_solve": [
            Sample(
                "upper", (b, sq), fn=lambda b, a: torch.triangular_solve(b, a + 4 * torch.eye(4))[0]
            ),
            Sample(
                "lower, transposed, unitriangular; the copy of A",
                (b, sq),
                fn=lambda b, a: torch.cat(
                    [t.flatten() for t in torch.triangular_solve(b, a, False, True, True)]
                ),
            ),
        ],  # fmt: skip
    }


def _lu_refusals() -> list[Refusal]:
    singular = torch.ones(3, 3, dtype=torch.float64)
    return [Refusal("a singular matrix (torch's info > 0)", (singular,), ValueError, "singular",
                    fn=lambda a: torch.linalg.lu_factor_ex(a).LU)]  # fmt: skip


def _row(name: str, rule: Any, functions: tuple, note: str, **kw: Any) -> OpEntry:
    return OpEntry(name, "matrix", rule, functions=functions, note=note,
                   samples=lambda: _lu_samples()[name], **kw)  # fmt: skip


ROWS = [
    _row("lu_factor", lu_factor, (torch.linalg.lu_factor,),
         "(LU, pivots): LAPACK's pivots; square, wide, tall; Ā by lu_backward (Seeger et al. "
         "2017); a singular matrix refused", refusals=_lu_refusals),
    _row("lu_factor_ex", lu_factor_ex, (torch.linalg.lu_factor_ex,), "(LU, pivots, info)"),
    _row("lu", lu, (torch.lu,), "deprecated: linalg.lu_factor(_ex)"),
    _row("linalg.lu", linalg_lu, (torch.linalg.lu,), "(P, L, U); P carries no gradient"),
    _row("lu_unpack", lu_unpack, (torch.lu_unpack,), "(P, L, U) of (LU, pivots)"),
    _row("linalg.lu_solve", linalg_lu_solve, (torch.linalg.lu_solve,),
         "left, adjoint; the gradient carried to the packed factors"),
    _row("lu_solve", lu_solve, (torch.lu_solve,), "deprecated: linalg.lu_solve(LU, pivots, b)"),
    _row("cholesky_solve", cholesky_solve, (torch.cholesky_solve,),
         "upper; the factor differentiated whole, as torch's cholesky_solve_backward"),
    _row("cholesky_inverse", cholesky_inverse, (torch.cholesky_inverse,),
         "upper; the factor differentiated whole, as torch's"),
    _row("triangular_solve", triangular_solve, (torch.triangular_solve,),
         "deprecated: (X, a copy of A); upper, transpose, unitriangular"),
]  # fmt: skip
