"""Reductions over dims (manual_bp.ops.reductions): sum and mean (δ broadcast back), amax/amin
and max/min (ties share δ, or δ to torch's index), logsumexp, var/std, vector norms."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from manual_bp.ops.activations import get_activation
from manual_bp.ops.arithmetic import DivTensor, Maximum, Minimum
from manual_bp.ops.reductions import (
    Amax,
    Amin,
    LogSumExp,
    MaxDim,
    Mean,
    MinDim,
    Norm,
    Prod,
    Std,
    Sum,
    Var,
)
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Param, Ref, Refusal, Sample, number, tensor


def reduce_rule(cls: type[Sum]) -> Callable[..., Op]:
    """torch.sum/mean(input, dim=None, keepdim=False, *, dtype=None)."""
    what = cls.__name__.lower()

    def rule(input: Any, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Op:
        if dtype is not None and dtype != torch.float64:
            raise UnsupportedModuleError(f"{what}: the dtype option is not supported")
        return Op(cls(dim, keepdim), (tensor(input, what),))

    return rule


def amax_rule(cls: type[Amax]) -> Callable[..., Op]:
    """torch.amax/amin(input, dim=(), keepdim=False): () is every dim."""
    what = cls.__name__.lower()

    def rule(input: Any, dim: Any = (), keepdim: bool = False) -> Op:
        return Op(cls(dim, keepdim), (tensor(input, what),))

    return rule


_EXTREMA: dict[str, tuple[type[Amax], type[MaxDim], type[Maximum], Any]] = {
    "max": (Amax, MaxDim, Maximum, torch.return_types.max),
    "min": (Amin, MinDim, Minimum, torch.return_types.min),
}


def extremum_rule(what: str) -> Callable[..., Any]:
    """torch.max / min in its three forms: (input) the extreme of all entries, ties sharing
    δ; (input, dim, keepdim=False) the (values, indices) pair, δ to torch's index;
    (input, other) the elementwise maximum / minimum."""
    over_all, over_dim, elementwise, returns = _EXTREMA[what]

    def rule(input: Any, dim: Any = None, keepdim: bool = False, *, other: Any = None) -> Any:
        x = tensor(input, what)
        if other is not None or isinstance(dim, (Ref, Param)):
            return Op(elementwise(), (x, tensor(dim if other is None else other, what)))
        if dim is None:
            return Op(over_all(None), (x,))
        if not isinstance(dim, int) or isinstance(dim, bool):
            raise UnsupportedModuleError(f"{what}: expected an int dim, got {dim!r}")
        return Op(over_dim(dim, keepdim), (x,), outputs=lambda refs: returns(refs))

    return rule


def logsumexp(input: Any, dim: Any, keepdim: bool = False) -> Op:
    return Op(LogSumExp(dim, keepdim), (tensor(input, "logsumexp"),))


def _correction(what: str, unbiased: Any, correction: Any) -> float:
    if correction is not None:
        return number(correction, f"{what} (correction)")
    return 1.0 if unbiased is None or unbiased else 0.0


def var_rule(cls: type[Var]) -> Callable[..., Op]:
    """torch.var/std(input, dim=None, *, correction=1, keepdim=False), and the older
    (input, unbiased) and (input, dim, unbiased, keepdim) forms."""
    what = cls.__name__.lower()

    def rule(
        input: Any,
        dim: Any = None,
        unbiased: Any = None,
        keepdim: bool = False,
        *,
        correction: Any = None,
    ) -> Op:
        if isinstance(dim, bool):  # torch.var(x, False): the unbiased flag
            dim, unbiased = None, dim
        return Op(
            cls(dim, _correction(what, unbiased, correction), keepdim), (tensor(input, what),)
        )

    return rule


def var_mean_rule(cls: type[Var]) -> Callable[..., tuple[Op, Op]]:
    """torch.var_mean / std_mean: (the var or std, the mean) over the same dims."""
    what = f"{cls.__name__.lower()}_mean"

    def rule(
        input: Any,
        dim: Any = None,
        unbiased: Any = None,
        keepdim: bool = False,
        *,
        correction: Any = None,
    ) -> tuple[Op, Op]:
        if isinstance(dim, bool):
            dim, unbiased = None, dim
        x = tensor(input, what)
        spread = Op(cls(dim, _correction(what, unbiased, correction), keepdim), (x,))
        return spread, Op(Mean(dim, keepdim), (x,))

    return rule


def _norm_p(p: Any, what: str) -> float:
    """p as a number: 'fro' (and None) is 2 over the given dims; 'nuc' is refused."""
    if p is None or p == "fro":
        return 2.0
    if isinstance(p, str):
        raise UnsupportedModuleError(
            f"{what}: p={p!r} is not supported; only vector norms (a number, inf, 'fro')"
        )
    if isinstance(p, (int, float)) and math.isinf(p):
        return float(p)
    return number(p, f"{what} (p)")


def vector_norm(
    x: Any, ord: Any = 2, dim: Any = None, keepdim: bool = False, *, dtype: Any = None
) -> Op:
    """torch.linalg.vector_norm(x, ord=2, dim=None, keepdim=False)."""
    if dtype is not None and dtype != torch.float64:
        raise UnsupportedModuleError("vector_norm: the dtype option is not supported")
    return Op(Norm(_norm_p(ord, "vector_norm"), dim, keepdim), (tensor(x, "vector_norm"),))


def norm(
    input: Any,
    p: Any = "fro",
    dim: Any = None,
    keepdim: bool = False,
    out: Any = None,
    dtype: Any = None,
) -> Op:
    """torch.norm / Tensor.norm(p='fro', dim=None, keepdim=False): a vector norm over dims
    (all when None); 'fro' is the 2-norm over them."""
    if out is not None or (dtype is not None and dtype != torch.float64):
        raise UnsupportedModuleError("norm: the out and dtype options are not supported")
    if p == "nuc":  # the nuclear norm of matrices (dims (-2, -1) by default)
        from manual_bp.ops.matrix import MatrixNorm

        dims = (-2, -1) if dim is None else tuple(dim)
        return Op(MatrixNorm("nuc", dims, keepdim), (tensor(input, "norm"),))
    return Op(Norm(_norm_p(p, "norm"), dim, keepdim), (tensor(input, "norm"),))


def linalg_norm(
    x: Any, ord: Any = None, dim: Any = None, keepdim: bool = False, *, dtype: Any = None
) -> Op:
    """torch.linalg.norm: a vector norm (ord None: the 2-norm of every entry, or over the
    given dims; a number with one dim or a 1-d input), or a matrix norm (two dims, or a 2-d
    input with ord given): 'fro', 'nuc', ±1, ±2, ±inf (manual_bp.ops.matrix.MatrixNorm)."""
    from manual_bp.ops.matrix import MatrixNorm

    x = tensor(x, "linalg.norm")
    dims = (dim,) if isinstance(dim, int) else dim
    matrix = (dims is not None and len(dims) == 2) or (
        dims is None and ord is not None and x.ndim == 2
    )
    if matrix and ord not in (None, "fro"):
        if dtype is not None and dtype != torch.float64:
            raise UnsupportedModuleError("linalg.norm: the dtype option is not supported")
        return Op(MatrixNorm(ord, tuple(dims or (-2, -1)), keepdim), (x,))
    return vector_norm(x, 2 if ord is None else ord, dim, keepdim, dtype=dtype)


def normalize(input: Any, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out: Any = None) -> Op:
    """F.normalize: x / max(‖x‖_p over dim, eps), as torch forms it (norm, clamp_min, divide)."""
    if out is not None:
        raise UnsupportedModuleError("normalize: the out option is not supported")
    x = tensor(input, "normalize")
    n = Op(Norm(_norm_p(p, "normalize"), dim, True), (x,))
    denominator = Op(get_activation("clamp", min=number(eps, "normalize (eps)")), (n,))
    return Op(DivTensor(), (x, denominator))


# --- samples and refusals ---------------------------------------------------------------


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _ints(lo: int, hi: int, *shape: int, seed: int = 3) -> torch.Tensor:
    """Integer-valued floats: exact ties, zeros, constant slices."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi + 1, shape, generator=g).double()


def _samples(fn: Callable[..., Any]) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        x = _x(3, 4, 5)
        return [
            Sample("all dims", (x,), fn=lambda x: fn(x)),
            Sample("dims (0, 2), keepdim", (x,), fn=lambda x: fn(x, (0, 2), True)),
            Sample("dim -1", (x,), fn=lambda x: fn(x, -1)),
        ]

    return samples


def _cases(**fns: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], list[Sample]]:
    """Each function on 3×4×5 normal inputs and on integer-valued ones in [−1, 1] (exact ties,
    zeros and constant slices)."""

    def samples() -> list[Sample]:
        x, ints = _x(3, 4, 5), _ints(-1, 1, 3, 4, 5)
        out = []
        for name, fn in fns.items():
            out.append(Sample(name, (x,), fn=fn))
            out.append(Sample(f"{name}, integer-valued", (ints,), fn=fn))
        return out

    return samples


def _refusals(*cases: tuple[str, tuple[int, ...], type[Exception], str, Any]) -> Any:
    def refusals() -> list[Refusal]:
        return [Refusal(n, (_x(*shape),), err, match, fn=fn) for n, shape, err, match, fn in cases]

    return refusals


ROWS = [
    OpEntry(
        "sum",
        "reduction",
        reduce_rule(Sum),
        functions=(torch.sum,),
        methods=("sum",),
        note="over any dims, keepdim",
        linear=True,
        samples=_samples(torch.sum),
    ),
    OpEntry(
        "mean",
        "reduction",
        reduce_rule(Mean),
        functions=(torch.mean,),
        methods=("mean",),
        note="over any dims, keepdim",
        linear=True,
        samples=_samples(torch.mean),
    ),
    OpEntry(
        "amax",
        "reduction",
        amax_rule(Amax),
        functions=(torch.amax,),
        methods=("amax",),
        note="over any dims, keepdim; tied maxima share δ evenly",
        samples=_cases(
            dim1=lambda x: torch.amax(x, 1), dims_keepdim=lambda x: x.amax((0, 2), True)
        ),
    ),
    OpEntry(
        "amin",
        "reduction",
        amax_rule(Amin),
        functions=(torch.amin,),
        methods=("amin",),
        note="over any dims, keepdim; tied minima share δ evenly",
        samples=_cases(dim_last=lambda x: torch.amin(x, -1), all=lambda x: x.amin((0, 1, 2))),
    ),
    OpEntry(
        "max",
        "reduction",
        extremum_rule("max"),
        functions=(torch.max,),
        methods=("max",),
        note="of all entries (ties share δ), over a dim (values, indices: δ to torch's "
        "index, the first), or of two tensors",
        samples=_cases(
            all=lambda x: torch.max(x) * x,
            dim=lambda x: torch.max(x, 1).values,
            dim_keepdim_unpacked=lambda x: x * x.max(dim=-1, keepdim=True)[0],
            two_tensors=lambda x: torch.max(x, -x),
        ),
    ),
    OpEntry(
        "min",
        "reduction",
        extremum_rule("min"),
        functions=(torch.min,),
        methods=("min",),
        note="of all entries (ties share δ), over a dim (values, indices), or of two tensors",
        samples=_cases(
            all=lambda x: x.min() + x,
            dim=lambda x: torch.min(x, dim=0).values,
            two_tensors=lambda x: torch.min(x, other=1 - x),
        ),
    ),
    OpEntry(
        "logsumexp",
        "reduction",
        logsumexp,
        functions=(torch.logsumexp, torch.special.logsumexp),
        methods=("logsumexp",),
        note="over any dims (at least one), keepdim",
        samples=_cases(
            dim=lambda x: torch.logsumexp(x, 1), dims=lambda x: x.logsumexp((0, 2), True)
        ),
        refusals=_refusals(
            (
                "dim=()",
                (3, 4),
                ValueError,
                "at least one dim",
                lambda x: torch.logsumexp(x, (), True),
            )
        ),
    ),
    OpEntry(
        "var",
        "reduction",
        var_rule(Var),
        functions=(torch.var,),
        methods=("var",),
        note="over any dims, correction (or unbiased), keepdim",
        samples=_cases(
            all=torch.var,
            dim_c0=lambda x: torch.var(x, 1, correction=0),
            dims_keepdim_c2=lambda x: x.var((0, 2), keepdim=True, correction=2),
            unbiased_false=lambda x: torch.var(x, -1, False, True),
        ),
        refusals=_refusals(
            ("correction = count", (3, 1), ValueError, "nan or inf", lambda x: torch.var(x, 1))
        ),
    ),
    OpEntry(
        "std",
        "reduction",
        var_rule(Std),
        functions=(torch.std,),
        methods=("std",),
        note="over any dims, correction (or unbiased), keepdim; 0 where σ = 0",
        samples=_cases(
            all=torch.std, dim=lambda x: torch.std(x, 1), c0=lambda x: x.std(-1, correction=0)
        ),
        refusals=_refusals(
            (
                "correction > count",
                (3, 2),
                ValueError,
                "nan or inf",
                lambda x: x.std(1, correction=3),
            )
        ),
    ),
    OpEntry(
        "var_mean",
        "reduction",
        var_mean_rule(Var),
        functions=(torch.var_mean,),
        note="(var, mean) over the same dims",
        samples=_cases(dim=lambda x: torch.var_mean(x, 1)[0] * torch.var_mean(x, 1)[1]),
    ),
    OpEntry(
        "std_mean",
        "reduction",
        var_mean_rule(Std),
        functions=(torch.std_mean,),
        note="(std, mean) over the same dims",
        samples=_cases(dims=lambda x: sum(torch.std_mean(x, (0, 2), keepdim=True)) * x),
    ),
    OpEntry(
        "vector_norm",
        "reduction",
        vector_norm,
        functions=(torch.linalg.vector_norm,),
        note="p = 2, 1, ±inf, any p ≠ 0; torch's subgradient 0 at 0",
        samples=_cases(
            two=lambda x: torch.linalg.vector_norm(x, dim=1),
            one=lambda x: torch.linalg.vector_norm(x, 1, (0, 2), True),
            inf=lambda x: torch.linalg.vector_norm(x, float("inf"), -1),
            minus_inf=lambda x: torch.linalg.vector_norm(x, -float("inf"), 0),
            half=lambda x: torch.linalg.vector_norm(x, 0.5, 1),
            three=lambda x: torch.linalg.vector_norm(x, 3, -1),
        ),
        refusals=_refusals(
            ("p = 0", (3, 4), ValueError, "p = 0", lambda x: torch.linalg.vector_norm(x, 0)),
        ),
    ),
    OpEntry(
        "norm",
        "reduction",
        norm,
        functions=(torch.norm,),
        methods=("norm",),
        note="vector norms over dims; 'fro' is the 2-norm; 'nuc' the nuclear norm",
        samples=lambda: [
            *_cases(
                fro=lambda x: torch.norm(x),
                p1_dim=lambda x: x.norm(1, 1),
                p2_keepdim=lambda x: x.norm(dim=-1, keepdim=True),
            )(),
            # (full rank: at a zero singular value torch's subgradient is its SVD's null basis)
            Sample(
                "nuc",
                (_x(3, 4, 5),),
                fn=lambda x: torch.norm(x[0], "nuc") + x.norm("nuc", (0, 2)).sum(),
            ),
        ],
    ),
    OpEntry(
        "linalg.norm",
        "reduction",
        linalg_norm,
        functions=(torch.linalg.norm,),
        note="vector norms, and every matrix norm (fro, nuc, ±1, ±2, ±inf)",
        samples=_cases(
            default=lambda x: torch.linalg.norm(x),
            dim=lambda x: torch.linalg.norm(x, 3, 1),
            fro=lambda x: torch.linalg.norm(x, "fro", (1, 2)),
            spectral=lambda x: torch.linalg.norm(x[0], 2) + torch.linalg.norm(x, -1, (0, 2)),
        ),
    ),
    OpEntry(
        "normalize",
        "reduction",
        normalize,
        functions=(F.normalize,),
        note="x / max(‖x‖_p, eps) along a dim",
        samples=_cases(default=F.normalize, p1_last=lambda x: F.normalize(x, 1.0, -1)),
    ),
]


def prod(input: Any, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Op:
    """torch.prod(input) or torch.prod(input, dim, keepdim=False): zeros as torch's backward."""
    if dtype is not None and dtype != torch.float64:
        raise UnsupportedModuleError("prod: the dtype option is not supported")
    return Op(Prod(dim, keepdim), (tensor(input, "prod"),))


def _prod_samples() -> list[Sample]:
    x, z = _x(3, 4, 2), _x(3, 4, 2, seed=1)
    z[0, 1, 0] = 0.0  # a slice with one zero
    z[1, 0, 1] = z[1, 2, 1] = 0.0  # and with two
    return [
        Sample("of all entries", (x,), fn=lambda x: torch.prod(x) * x),
        Sample("dim 1, keepdim, a method", (x,), fn=lambda x: x.prod(1, keepdim=True)),
        Sample("zeros along dim 1", (z,), fn=lambda x: torch.prod(x, 1)),
        Sample("one zero in all", (z[0],), fn=lambda x: torch.prod(x) + x.sum()),
    ]


ROWS += [
    OpEntry(
        "prod",
        "reduction",
        prod,
        functions=(torch.prod,),
        methods=("prod",),
        note="of all entries or along a dim, keepdim; zeros exact (one zero: the product of "
        "the rest)",
        samples=_prod_samples,
    ),
    OpEntry(
        "nansum",
        "reduction",
        reduce_rule(Sum),
        functions=(torch.nansum,),
        methods=("nansum",),
        note="the sum (NaN inputs are refused before it)",
        linear=True,
        samples=lambda: [Sample("dims", (_x(3, 4),), fn=lambda x: torch.nansum(x, 1))],
    ),
    OpEntry(
        "nanmean",
        "reduction",
        reduce_rule(Mean),
        functions=(torch.nanmean,),
        methods=("nanmean",),
        note="the mean (NaN inputs are refused before it)",
        linear=True,
        samples=lambda: [Sample("dims", (_x(3, 4),), fn=lambda x: x.nanmean(0, True))],
    ),
]
