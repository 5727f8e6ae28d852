"""Ops that pick entries by their order (manual_bp.ops.sorting): sort, topk, kthvalue, median.
Each returns torch's (values, indices) pair; δ of the values goes to the indices. Equal
entries are ties: which one an index names is the sort's choice (reported, replayed)."""

from __future__ import annotations

from typing import Any

import torch

from manual_bp.ops.sorting import KthValue, Median, MedianDim, Mode, NanMedianDim, Sort, TopK
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Param, Ref, Refusal, Sample, tensor


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise UnsupportedModuleError(f"{what}: expected an int, got {v!r}")
    return v


def sort(input: Any, dim: int = -1, descending: bool = False, *, stable: bool | None = False) -> Op:
    """torch.sort(input, dim=-1, descending=False, stable=False): ascending or descending;
    equal entries keep their order (a tie either way)."""
    layer = Sort(_int(dim, "sort (dim)"), bool(descending))
    return Op(layer, (tensor(input, "sort"),), outputs=lambda refs: torch.return_types.sort(refs))


def msort(input: Any) -> Any:
    """torch.msort(x) = torch.sort(x, dim=0).values."""
    return Op(Sort(0), (tensor(input, "msort"),), outputs=lambda refs: refs[0])


def topk(input: Any, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Op:
    """torch.topk: the k largest (smallest) along dim, sorted; sorted=False is refused (the
    order torch then returns is unspecified)."""
    if not sorted:
        raise UnsupportedModuleError(
            "topk: sorted=False is not supported: torch returns the k entries in an unspecified "
            "order; use sorted=True (the default)"
        )
    layer = TopK(_int(k, "topk (k)"), _int(dim, "topk (dim)"), bool(largest))
    return Op(layer, (tensor(input, "topk"),), outputs=lambda refs: torch.return_types.topk(refs))


def kthvalue(input: Any, k: int, dim: int = -1, keepdim: bool = False) -> Op:
    layer = KthValue(_int(k, "kthvalue (k)"), _int(dim, "kthvalue (dim)"), bool(keepdim))
    return Op(
        layer, (tensor(input, "kthvalue"),), outputs=lambda refs: torch.return_types.kthvalue(refs)
    )


def mode(input: Any, dim: int = -1, keepdim: bool = False) -> Op:
    layer = Mode(_int(dim, "mode (dim)"), bool(keepdim))
    return Op(layer, (tensor(input, "mode"),), outputs=lambda refs: torch.return_types.mode(refs))


def _mode_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(90)
    x = torch.randint(0, 3, (4, 6), generator=g).double() + torch.rand(4, 1, generator=g)
    return [
        Sample("dim -1 (values repeat)", (x,), fn=lambda x: torch.mode(x).values),
        Sample("dim 0, keepdim", (x,), fn=lambda x: x.mode(0, True)[0]),
        Sample("all distinct (the smallest)", (x[0].unique() + 0 * x[0, :1],),
               fn=lambda x: torch.mode(x)[0]),
    ]  # fmt: skip


def median(input: Any, dim: Any = None, keepdim: bool = False) -> Op:
    """torch.median(x): the lower median of all entries, δ shared by the entries equal to it;
    torch.median(x, dim, keepdim=False): (values, indices)."""
    x = tensor(input, "median")
    if dim is None:
        return Op(Median(), (x,))
    layer = MedianDim(_int(dim, "median (dim)"), bool(keepdim))
    return Op(layer, (x,), outputs=lambda refs: torch.return_types.median(refs))


def nanmedian(input: Any, dim: Any = None, keepdim: bool = False) -> Op:
    """torch.nanmedian: median of the entries that are not NaN (masked.median fills the
    masked-out entries with NaN and calls it)."""
    x = tensor(input, "nanmedian")
    if dim is None:
        return Op(Median(ignore_nan=True), (x,))
    layer = NanMedianDim(_int(dim, "nanmedian (dim)"), bool(keepdim))
    return Op(layer, (x,), outputs=lambda refs: torch.return_types.nanmedian(refs))


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _ints(seed: int, *shape: int) -> torch.Tensor:
    return torch.randint(-3, 4, shape, generator=torch.Generator().manual_seed(seed)).double()


def _nanmedian_samples() -> list[Sample]:
    x = _randn(9, 4, 5)
    gaps = torch.tensor([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1], [0, 1, 1, 0, 1]])
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    holes = lambda x: torch.where(gaps == 1, x, nan)  # noqa: E731  (masked.median's way)
    return [
        Sample("no NaN, dim 1", (x,), fn=lambda x: torch.nanmedian(x, 1).values),
        Sample("NaN holes, dim 1", (x,), fn=lambda x: torch.nanmedian(holes(x), 1)[0]),
        Sample("NaN holes, dim 0, keepdim", (x,), fn=lambda x: holes(x).nanmedian(0, True)[0]),
        Sample("NaN holes, all entries", (x,), fn=lambda x: torch.nanmedian(holes(x))),
    ]


def _sort_samples() -> list[Sample]:
    x = _randn(0, 3, 5, 2)
    return [
        Sample("values, dim 1", (x,), fn=lambda x: torch.sort(x, 1).values),
        Sample(
            "descending, negative dim, tuple", (x,), fn=lambda x: x.sort(-1, descending=True)[0]
        ),
        Sample("stable, keyword dim", (x,), fn=lambda x: torch.sort(x, stable=True, dim=0)[0]),
        Sample("exact ties, stable", (_ints(1, 4, 6),), fn=lambda x: torch.sort(x, stable=True)[0]),
        Sample("msort", (x,), fn=torch.msort),
    ]


def _topk_samples() -> list[Sample]:
    x = _randn(2, 3, 6)
    return [
        Sample("k largest", (x,), fn=lambda x: torch.topk(x, 2).values),
        Sample("k smallest, dim 0", (x,), fn=lambda x: x.topk(2, dim=0, largest=False)[0]),
        Sample("k = the whole dim", (x,), fn=lambda x: torch.topk(x, 6, -1)[0]),
    ]


def _kthvalue_samples() -> list[Sample]:
    x = _randn(3, 4, 5)
    return [
        Sample("k = 2", (x,), fn=lambda x: torch.kthvalue(x, 2).values),
        Sample("dim 0, keepdim", (x,), fn=lambda x: x.kthvalue(3, 0, keepdim=True)[0] * x),
    ]


def _median_samples() -> list[Sample]:
    x = _randn(4, 4, 5)
    return [
        Sample("of all entries", (x,), fn=lambda x: torch.median(x) * x),
        Sample("exact ties of all entries", (_ints(5, 3, 4),), fn=lambda x: x.median() * x),
        Sample("along dim (even size: the lower)", (x,), fn=lambda x: torch.median(x, 0).values),
        Sample("along dim, keepdim", (x,), fn=lambda x: x.median(-1, keepdim=True)[0] * x),
    ]


def _topk_refusals() -> list[Refusal]:
    x = _randn(6, 3, 6)
    return [
        Refusal(
            "sorted=False",
            (x,),
            UnsupportedModuleError,
            "sorted=False is not supported",
            fn=lambda x: torch.topk(x, 2, sorted=False).values,
        )
    ]


ROWS = [
    OpEntry(
        "sort",
        "sorting",
        sort,
        functions=(torch.sort,),
        methods=("sort",),
        note="(values, indices); descending, stable; ties reported",
        samples=_sort_samples,
    ),
    OpEntry(
        "msort",
        "sorting",
        msort,
        functions=(torch.msort,),
        methods=("msort",),
        samples=lambda: _sort_samples()[-1:],
    ),
    OpEntry(
        "topk",
        "sorting",
        topk,
        functions=(torch.topk,),
        methods=("topk",),
        note="largest or smallest; sorted=False refused (torch's order is unspecified)",
        samples=_topk_samples,
        refusals=_topk_refusals,
    ),
    OpEntry(
        "kthvalue",
        "sorting",
        kthvalue,
        functions=(torch.kthvalue,),
        methods=("kthvalue",),
        note="keepdim; ties reported",
        samples=_kthvalue_samples,
    ),
    OpEntry(
        "mode",
        "sorting",
        mode,
        functions=(torch.mode,),
        methods=("mode",),
        note="(values, indices): the smallest of the most frequent values, at its last index, "
        "as torch's CPU mode; ties reported",
        samples=_mode_samples,
    ),
    OpEntry(
        "median",
        "sorting",
        median,
        functions=(torch.median,),
        methods=("median",),
        note="of all entries (δ shared by the tied) or along dim (the lower median's index)",
        samples=_median_samples,
    ),
    OpEntry(
        "nanmedian",
        "sorting",
        nanmedian,
        functions=(torch.nanmedian,),
        methods=("nanmedian",),
        note="the median of the entries that are not NaN, as median",
        samples=_nanmedian_samples,
    ),
]


def quantile(
    input: Any,
    q: Any,
    dim: Any = None,
    keepdim: bool = False,
    *,
    interpolation: str = "linear",
    out: Any = None,
) -> Op:
    """torch.quantile(x, q, dim=None, keepdim=False, interpolation='linear'): q a number, a
    list, or a constant tensor of the model."""
    from manual_bp.ops.sorting import Quantile

    if isinstance(q, Param):
        q = q.array()
    elif isinstance(q, Ref):
        raise UnsupportedModuleError("quantile: q computed in forward() is not supported")
    if dim is not None:
        dim = _int(dim, "quantile (dim)")
    return Op(Quantile(q, dim, bool(keepdim), interpolation), (tensor(input, "quantile"),))


def _quantile_samples() -> list[Sample]:
    x = _randn(7, 3, 6)
    q = torch.tensor([0.1, 0.5, 0.95], dtype=torch.float64)
    out = [
        Sample("a number, all entries", (x,), fn=lambda x: torch.quantile(x, 0.3) * x),
        Sample("a tensor q, dim 1, keepdim", (x,), fn=lambda x: torch.quantile(x, q, 1, True)),
    ]
    for mode in ("lower", "higher", "nearest", "midpoint"):
        out.append(
            Sample(
                f"{mode}, dim 0", (x,), fn=lambda x, m=mode: x.quantile(q, dim=0, interpolation=m)
            )
        )
    out.append(Sample("nanquantile", (x,), fn=lambda x: torch.nanquantile(x, 0.5, dim=-1)))
    return out


ROWS += [
    OpEntry(
        "quantile",
        "sorting",
        quantile,
        functions=(torch.quantile, torch.nanquantile),
        methods=("quantile", "nanquantile"),
        note="q a number or a list; every interpolation; all entries or along dim; ties "
        "reported (NaN inputs are refused before nanquantile)",
        samples=_quantile_samples,
    )
]
