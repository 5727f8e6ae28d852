"""Cumulative ops along a dim (manual_bp.ops.scan): cumsum, cumprod, logcumsumexp, and
cummax / cummin with their indices (the latest of tied extrema, as torch's; ties reported)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from manual_bp.ops.arithmetic import Add, Mul, Scale, Sub
from manual_bp.ops.reductions import Sum
from manual_bp.ops.scan import CumMax, CumMin, CumProd, CumSum, LogCumSumExp
from manual_bp.ops.shape import Cat, Narrow, Reshape
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Refusal, Sample, tensor


def _dtype(dtype: Any, what: str) -> None:
    if dtype not in (None, torch.float64, torch.float32, torch.float16, torch.bfloat16):
        raise UnsupportedModuleError(
            f"{what}: dtype={dtype} is not supported (only a floating dtype, or None); the "
            "result of an integer accumulation carries no gradient"
        )


def scan_rule(cls: type, what: str, takes_dtype: bool = True) -> Callable[..., Op]:
    """torch.<what>(input, dim, *, dtype=None): one layer along dim."""

    def rule(input: Any, dim: int, *, dtype: Any = None) -> Op:
        _dtype(dtype, what)
        if not isinstance(dim, int) or isinstance(dim, bool):
            raise UnsupportedModuleError(f"{what}: expected an int dim, got {dim!r}")
        return Op(cls(dim), (tensor(input, what),))

    def rule_no_dtype(input: Any, dim: int) -> Op:
        return rule(input, dim)

    return rule if takes_dtype else rule_no_dtype


def extreme_rule(cls: type, returns: Any, what: str) -> Callable[..., Any]:
    """torch.cummax / cummin(input, dim): torch's (values, indices) pair."""

    def rule(input: Any, dim: int) -> Any:
        return Op(cls(dim), (tensor(input, what),), outputs=lambda refs: returns(refs))

    return rule


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _samples(fn: Callable[..., Any], method: str) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        x = _randn(0, 2, 5, 3)
        return [
            Sample("dim 1", (x,), fn=lambda x: fn(x, 1)),
            Sample("negative dim, as a method", (x,), fn=lambda x: getattr(x, method)(-1)),
            Sample("dim 0 of a 1-d input", (x[0, :, 0],), fn=lambda x: fn(x, dim=0)),
            Sample("a 0-d value", (x,), fn=lambda x: fn(x.sum(), 0) + x),
        ]

    return samples


def _cumprod_samples() -> list[Sample]:
    x = _randn(1, 3, 6)
    z = x.clone()
    z[0, 2] = 0.0  # one zero
    z[1, 1] = z[1, 4] = 0.0  # two zeros
    z[2, 0] = 0.0  # a zero first
    return [
        *_samples(torch.cumprod, "cumprod")(),
        Sample("zeros in slices", (z,), fn=lambda x: torch.cumprod(x, 1)),
    ]


def _cumsum_samples() -> list[Sample]:
    x = _randn(2, 3, 4)
    return [
        *_samples(torch.cumsum, "cumsum")(),
        Sample("dtype float64", (x,), fn=lambda x: x.cumsum(0, dtype=torch.float64)),
        Sample(
            "position ids from a mask",
            (x,),
            fn=lambda x: x * torch.cumsum(torch.ones(3, 4, dtype=torch.float64), 1),
        ),
    ]


def _lcse_samples() -> list[Sample]:
    big = 300 * _randn(3, 2, 6)  # e^{300}: no overflow
    return [
        *_samples(torch.logcumsumexp, "logcumsumexp")(),
        Sample("large values", (big,), fn=lambda x: torch.logcumsumexp(x, 1)),
    ]


def _cummax_samples(fn: Callable[..., Any], method: str) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        x = _randn(4, 2, 7)
        ints = torch.randint(-2, 3, (3, 6), generator=torch.Generator().manual_seed(5)).double()
        return [
            Sample("values", (x,), fn=lambda x: fn(x, 1).values),
            Sample(
                "values and indices as a tuple, negative dim",
                (x,),
                fn=lambda x: getattr(x, method)(-1)[0] * 2,
            ),
            Sample(
                "exact ties (integer-valued): the latest index", (ints,), fn=lambda x: fn(x, 1)[0]
            ),
            Sample("dim 0", (x,), fn=lambda x: fn(x, 0).values),
        ]

    return samples


def _refusals() -> list[Refusal]:
    x = _randn(6, 3, 4)
    return [
        Refusal(
            "an integer dtype",
            (x,),
            UnsupportedModuleError,
            "dtype=torch.int64 is not supported",
            fn=lambda x: x * torch.cumsum(x, 1, dtype=torch.int64),
        )
    ]


ROWS = [
    OpEntry(
        "cumsum",
        "scan",
        scan_rule(CumSum, "cumsum"),
        functions=(torch.cumsum,),
        methods=("cumsum", "cumsum_"),
        note="any dim; dtype None or floating",
        linear=True,
        samples=_cumsum_samples,
        refusals=_refusals,
    ),
    OpEntry(
        "cumprod",
        "scan",
        scan_rule(CumProd, "cumprod"),
        functions=(torch.cumprod,),
        methods=("cumprod", "cumprod_"),
        note="zeros in a slice handled as torch's cumprod_backward",
        samples=_cumprod_samples,
    ),
    OpEntry(
        "logcumsumexp",
        "scan",
        scan_rule(LogCumSumExp, "logcumsumexp", takes_dtype=False),
        functions=(torch.logcumsumexp,),
        methods=("logcumsumexp",),
        note="stable for large values",
        samples=_lcse_samples,
    ),
    OpEntry(
        "cummax",
        "scan",
        extreme_rule(CumMax, torch.return_types.cummax, "cummax"),
        functions=(torch.cummax,),
        methods=("cummax",),
        note="(values, indices); the latest of tied maxima, as torch; ties reported",
        samples=_cummax_samples(torch.cummax, "cummax"),
    ),
    OpEntry(
        "cummin",
        "scan",
        extreme_rule(CumMin, torch.return_types.cummin, "cummin"),
        functions=(torch.cummin,),
        methods=("cummin",),
        note="(values, indices); the latest of tied minima, as torch; ties reported",
        samples=_cummax_samples(torch.cummin, "cummin"),
    ),
]


def diff(input: Any, n: int = 1, dim: int = -1, prepend: Any = None, append: Any = None) -> Any:
    """torch.diff: x[1:] − x[:-1] along dim, n times, after prepend and append are joined on
    (cumsum's inverse); composed of Cat, Narrow and Sub."""
    x = tensor(input, "diff")
    if x.ndim == 0:
        raise ValueError("diff: expected an input of at least 1 dim, got a 0-d tensor")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise UnsupportedModuleError(f"diff: expected an int n >= 0, got {n!r}")
    d = dim % x.ndim
    parts = [tensor(t, "diff") for t in (prepend, x, append) if t is not None]
    out: Any = parts[0] if len(parts) == 1 else Op(Cat(d, n_inputs=len(parts)), tuple(parts))
    length = sum(p.shape[d] for p in parts)
    for _ in range(n):
        if length == 0:
            break
        out = Op(
            Sub(), (Op(Narrow(d, 1, length - 1), (out,)), Op(Narrow(d, 0, length - 1), (out,)))
        )
        length -= 1
    return out


def _diff_samples() -> list[Sample]:
    x = _randn(7, 3, 5)
    return [
        Sample("last dim", (x,), fn=torch.diff),
        Sample("n = 2, dim 0, a method", (x,), fn=lambda x: x.diff(2, 0)),
        Sample(
            "prepend and append",
            (x, _randn(8, 3, 1)),
            fn=lambda x, p: torch.diff(x, dim=1, prepend=p, append=p * 2),
        ),
    ]


ROWS.append(
    OpEntry(
        "diff",
        "scan",
        diff,
        functions=(torch.diff,),
        methods=("diff",),
        note="n, dim, prepend, append",
        linear=True,
        samples=_diff_samples,
    )
)


def _trapezoids(y: Any, x: Any, dx: Any, dim: int, what: str) -> tuple[Any, int]:
    """The areas of the trapezoids along dim: (y_i + y_{i+1})/2 · Δx_i (Δx a number or the
    diff of x), and the wrapped dim."""
    yt = tensor(y, what)
    d = dim % max(yt.ndim, 1)
    n = yt.shape[d]
    if n < 2:
        raise ValueError(f"{what}: expected at least 2 samples along dim {dim}, got {n}")
    pairs = Op(Add(2), (Op(Narrow(d, 1, n - 1), (yt,)), Op(Narrow(d, 0, n - 1), (yt,))))
    if x is None:
        return Op(Scale(0.5 * (1.0 if dx is None else float(dx))), (pairs,)), d
    xt = tensor(x, f"{what} (x)")
    if xt.ndim == 1:  # 1-d x: its steps along dim, broadcast
        steps = Op(Reshape(tuple(n - 1 if k == d else 1 for k in range(yt.ndim))), (diff(xt),))
    else:
        steps = diff(xt, 1, d)
    return Op(Scale(0.5), (Op(Mul(), (steps, pairs)),)), d


def trapezoid(y: Any, x: Any = None, *, dx: Any = None, dim: int = -1) -> Op:
    """torch.trapezoid(y, x=None, *, dx=None, dim=-1): Σ of the trapezoids along dim."""
    areas, d = _trapezoids(y, x, dx, dim, "trapezoid")
    return Op(Sum(d), (areas,))


def cumulative_trapezoid(y: Any, x: Any = None, *, dx: Any = None, dim: int = -1) -> Op:
    """torch.cumulative_trapezoid: the running sum of the trapezoids along dim."""
    areas, d = _trapezoids(y, x, dx, dim, "cumulative_trapezoid")
    return Op(CumSum(d), (areas,))


def _trapezoid_samples(fn: Callable[..., Any]) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        y, x = _randn(9, 3, 5), _randn(10, 5).cumsum(0)
        return [
            Sample("dx", (y,), fn=lambda y: fn(y, dx=0.5)),
            Sample("x 1-d, dim -1", (y, x), fn=lambda y, x: fn(y, x)),
            Sample("x of y's shape, dim 0", (y, _randn(11, 3, 5)), fn=lambda y, x: fn(y, x, dim=0)),
        ]

    return samples


ROWS += [
    OpEntry(
        "trapezoid",
        "scan",
        trapezoid,
        functions=(torch.trapezoid, torch.trapz),
        note="dx or x (1-d or y's shape), dim",
        linear=False,
        samples=_trapezoid_samples(torch.trapezoid),
    ),
    OpEntry(
        "cumulative_trapezoid",
        "scan",
        cumulative_trapezoid,
        functions=(torch.cumulative_trapezoid,),
        note="dx or x, dim",
        samples=_trapezoid_samples(torch.cumulative_trapezoid),
    ),
]
