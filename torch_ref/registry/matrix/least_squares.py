"""Least squares (manual_bp.ops.matrix.Lstsq) and the torch.linalg.*_ex forms, which
add an info tensor to inv, cholesky and solve. Batched over leading dims as torch's; each
backward is the matrix-calculus formula written out (Giles 2008)."""

from __future__ import annotations

from typing import Any

import torch

from manual_bp.ops.matrix import (
    Cholesky,
    Inv,
    Lstsq,
    Solve,
    WithInfo,
)
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Refusal, Sample, tensor
from torch_ref.registry.matrix.decompositions import _randn, _spd, _well

#: least squares first, then the *_ex forms
ROWS: list[OpEntry] = []


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
