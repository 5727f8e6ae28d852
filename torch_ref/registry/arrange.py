"""Arranging tensors, composed of the shape layers (manual_bp.ops.shape) and products: each
row's gradient is its pieces' backward. Tensor.unfold (sliding windows), ravel, the stacks
(hstack, vstack, dstack, column_stack, atleast_nd), rot90, tensor_split, take, masked_select
with a constant mask, meshgrid, block_diag, kron, tensordot; and small arithmetic aliases
(rsub, deg2rad, rad2deg, positive, float_power, addmv, addr, addbmm, nan_to_num)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from manual_bp.ops.activations import get_activation
from manual_bp.ops.arithmetic import Add, AddConstant, Scale, Sub
from manual_bp.ops.graph import Constant
from manual_bp.ops.linalg import Einsum, MatMul, Outer
from manual_bp.ops.reductions import Sum
from manual_bp.ops.shape import (
    Cat,
    Expand,
    Flip,
    Index,
    MoveDim,
    Reshape,
    Split,
    Transpose,
)
from torch_ref.errors import NotCovered, UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Param, Ref, Sample, number, tensor


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise UnsupportedModuleError(f"{what}: expected an int, got {v!r}")
    return v


def unfold_method(input: Any, dimension: int, size: int, step: int) -> Op:
    """x.unfold(dim, size, step): the windows x[..., i·step : i·step + size, ...] along dim,
    the window's entries as a new last dim (overlaps add up in the backward)."""
    x = tensor(input, "Tensor.unfold")
    n = x.shape[dimension] if x.ndim else 1
    d = dimension % max(x.ndim, 1)
    size, step = _int(size, "unfold (size)"), _int(step, "unfold (step)")
    if size > n or step < 1:
        raise ValueError(f"unfold: expected size <= {n} and step >= 1, got {size} and {step}")
    count = (n - size) // step + 1
    idx = np.arange(count)[:, None] * step + np.arange(size)[None, :]  # (windows, size)
    picked = Op(Index((slice(None),) * d + (idx,)), (x,))  # (..., windows, size, ...)
    return Op(MoveDim(d + 1, -1), (picked,))


def ravel(input: Any) -> Op:
    return Op(Reshape((-1,)), (tensor(input, "ravel"),))


def _atleast(x: Ref | Param, n: int) -> Any:
    s = x.shape
    if len(s) >= n:
        return x
    target = {1: (1,), 2: (1, *s) if len(s) == 1 else (1, 1), 3: None}[n] if n < 3 else None
    if n == 3:
        target = (1, 1, 1) if not s else (1, s[0], 1) if len(s) == 1 else (*s, 1)
    if n == 2 and not s:
        target = (1, 1)
    if n == 1:
        target = (1,)
    return Op(Reshape(target), (x,))


def _atleast_rule(n: int) -> Any:
    def rule(*tensors: Any) -> Any:
        ts = tensors[0] if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)) else tensors
        out = tuple(_atleast(tensor(t, f"atleast_{n}d"), n) for t in ts)
        return out[0] if len(out) == 1 and not isinstance(tensors[0], (list, tuple)) else out

    return rule


def _ndim(t: Any) -> int:
    return len(t.shape)


def _stack_rule(what: str, n: int, dim: int) -> Any:
    """hstack (dim 0 for 1-d tensors, else 1), vstack (dim 0 of atleast_2d), dstack (dim 2 of
    atleast_3d), column_stack (1-d as columns, dim 1)."""

    def rule(tensors: Any) -> Op:
        ts = [tensor(t, what) for t in tensors]
        if what == "column_stack":
            parts = [Op(Reshape((t.shape[0], 1)), (t,)) if _ndim(t) <= 1 else t for t in ts]
            return Op(Cat(1, n_inputs=len(parts)), tuple(parts))
        parts = [_atleast(t, n) for t in ts]
        d = 0 if what == "hstack" and all(_ndim(t) <= 1 for t in ts) else dim
        return Op(Cat(d, n_inputs=len(parts)), tuple(parts))

    return rule


def rot90(input: Any, k: int = 1, dims: Any = (0, 1)) -> Any:
    """torch.rot90: k quarter turns from dims[0] towards dims[1] (flips and a transpose)."""
    x = tensor(input, "rot90")
    d0, d1 = (int(d) for d in dims)
    k = _int(k, "rot90 (k)") % 4
    if k == 0:
        return x
    if k == 2:
        return Op(Flip((d0, d1)), (x,))
    if k == 1:
        return Op(Transpose(d0, d1), (Op(Flip((d1,)), (x,)),))
    return Op(Flip((d1,)), (Op(Transpose(d0, d1), (x,)),))


def tensor_split(input: Any, indices_or_sections: Any, dim: int = 0) -> Any:
    """torch.tensor_split: n near-equal parts (the first n % size one larger) or at indices."""
    x = tensor(input, "tensor_split")
    if isinstance(indices_or_sections, (Ref, Param)):  # (torch reads its values: lowering)
        raise NotCovered("tensor_split: this row takes sections or indices as numbers")
    d = dim % max(x.ndim, 1)
    n = x.shape[d]
    if isinstance(indices_or_sections, int):
        k = indices_or_sections
        sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    else:
        cuts = [min(max(int(i), 0), n) for i in indices_or_sections]
        bounds = [0, *cuts, n]
        sizes = [max(b - a, 0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if len(sizes) == 1:
        return (x,)
    return Op(Split(tuple(sizes), d), (x,), outputs=tuple)


def take(input: Any, index: Any) -> Op:
    """torch.take(x, index): entries of the flattened x (a constant or computed index)."""
    from torch_ref.registry.shape import _index_arg

    x = tensor(input, "take")
    item, extra = _index_arg(index, "take")
    return Op(Index((item,)), (Op(Reshape((-1,)), (x,)), *extra))


def masked_select(input: Any, mask: Any) -> Op:
    """torch.masked_select(x, mask) with a mask of the model (a buffer or constant): the
    entries of x (broadcast with the mask) where it holds, flattened."""
    x = tensor(input, "masked_select")
    if not isinstance(mask, Param) or mask.tensor.dtype != torch.bool:
        raise UnsupportedModuleError(
            "masked_select: only a bool mask of the model (a buffer or constant) is supported; "
            "one computed in forward() gives a shape that depends on its values"
        )
    m = mask.array()
    shape = tuple(np.broadcast_shapes(x.shape, m.shape))
    xb = x if x.shape == shape else Op(Expand(shape), (x,))
    return Op(Index((np.broadcast_to(m, shape).copy(),)), (xb,))


def meshgrid(*tensors: Any, indexing: str | None = None) -> tuple[Any, ...]:
    """torch.meshgrid(*tensors, indexing='ij' (the default) or 'xy')."""
    ts = tensors[0] if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)) else tensors
    ts = [tensor(t, "meshgrid") for t in ts]
    sizes = [t.shape[0] if t.shape else 1 for t in ts]
    xy = indexing == "xy" and len(ts) >= 2
    if xy:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    out = []
    for k, t in enumerate(ts):
        pos = (1 - k if k < 2 else k) if xy else k
        shape = [1] * len(ts)
        shape[pos] = sizes[pos]
        out.append(Op(Expand(tuple(sizes)), (Op(Reshape(tuple(shape)), (t,)),)))
    return tuple(out)


def kron(input: Any, other: Any) -> Op:
    """torch.kron of two tensors of one rank: an outer product reshaped (by einsum)."""
    a, b = tensor(input, "kron"), tensor(other, "kron")
    if a.ndim != b.ndim:
        raise UnsupportedModuleError(
            f"kron: tensors of different ranks ({a.shape}, {b.shape}) are not supported"
        )
    letters = "abcdefghijklm"[: a.ndim], "nopqrstuvwxyz"[: b.ndim]
    eq = f"{letters[0]},{letters[1]}->" + "".join(p + q for p, q in zip(*letters, strict=True))
    out = tuple(m * n for m, n in zip(a.shape, b.shape, strict=True))
    return Op(Reshape(out), (Op(Einsum(eq, 2), (a, b)),))


def tensordot(a: Any, b: Any, dims: Any = 2, out: Any = None) -> Op:
    """torch.tensordot: the last `dims` dims of a against the first of b, or two lists."""
    x, y = tensor(a, "tensordot"), tensor(b, "tensordot")
    if isinstance(dims, int):
        da, db = list(range(x.ndim - dims, x.ndim)), list(range(dims))
    else:
        da, db = ([d] if isinstance(d, int) else list(d) for d in dims)
    da = [d % x.ndim for d in da]
    db = [d % y.ndim for d in db]
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    sa = [next(letters) for _ in range(x.ndim)]
    sb = [next(letters) for _ in range(y.ndim)]
    for i, j in zip(da, db, strict=True):
        sb[j] = sa[i]
    keep = [c for k, c in enumerate(sa) if k not in da] + [
        c for k, c in enumerate(sb) if k not in db
    ]
    return Op(Einsum(f"{''.join(sa)},{''.join(sb)}->{''.join(keep)}", 2), (x, y))


def block_diag(*tensors: Any) -> Op:
    """torch.block_diag: the matrices on the diagonal, zeros off it (0-d and 1-d as rows)."""
    ts = [tensor(t, "block_diag") for t in tensors]
    mats = [(t, (1, 1) if t.ndim == 0 else (1, t.shape[0]) if t.ndim == 1 else t.shape) for t in ts]
    total = sum(s[1] for _, s in mats)
    rows, left = [], 0
    for t, (r, c) in mats:
        m = t if t.ndim == 2 else Op(Reshape((r, c)), (t,))
        parts: list[Any] = []
        if left:
            parts.append(Op(Constant(np.zeros((r, left))), ()))
        parts.append(m)
        if total - left - c:
            parts.append(Op(Constant(np.zeros((r, total - left - c))), ()))
        rows.append(parts[0] if len(parts) == 1 else Op(Cat(1, n_inputs=len(parts)), tuple(parts)))
        left += c
    return rows[0] if len(rows) == 1 else Op(Cat(0, n_inputs=len(rows)), tuple(rows))


def rsub(input: Any, other: Any, *, alpha: float = 1) -> Op:
    """torch.rsub(x, other, alpha=1) = other − α·x."""
    x = tensor(input, "rsub")
    ax = x if alpha == 1 else Op(Scale(number(alpha, "rsub (alpha)")), (x,))
    if isinstance(other, (Ref, Param)):
        return Op(Sub(), (other, ax))
    return Op(AddConstant(number(other, "rsub")), (Op(Scale(-1.0), (ax,)),))


def _scaled(c: float, what: str) -> Any:
    def rule(input: Any) -> Op:
        return Op(Scale(c), (tensor(input, what),))

    return rule


def positive(input: Any) -> Any:
    return tensor(input, "positive")


def float_power(input: Any, exponent: Any) -> Any:
    """torch.float_power: pow in float64 (the values already are)."""
    from torch_ref.registry.arithmetic import pow_

    return pow_(input, exponent)


def addmv(input: Any, mat: Any, vec: Any, *, beta: float = 1, alpha: float = 1) -> Op:
    return _add_scaled(
        input, Op(MatMul(), (tensor(mat, "addmv"), tensor(vec, "addmv"))), beta, alpha
    )


def addr(input: Any, vec1: Any, vec2: Any, *, beta: float = 1, alpha: float = 1) -> Op:
    return _add_scaled(
        input, Op(Outer(), (tensor(vec1, "addr"), tensor(vec2, "addr"))), beta, alpha
    )


def addbmm(input: Any, batch1: Any, batch2: Any, *, beta: float = 1, alpha: float = 1) -> Op:
    prod = Op(Sum(0), (Op(MatMul(), (tensor(batch1, "addbmm"), tensor(batch2, "addbmm"))),))
    return _add_scaled(input, prod, beta, alpha)


def _add_scaled(c: Any, product: Op, beta: float, alpha: float) -> Op:
    """β·c + α·product (β = 0 ignores c, as torch)."""
    beta, alpha = number(beta, "beta"), number(alpha, "alpha")
    p = product if alpha == 1 else Op(Scale(alpha), (product,))
    if beta == 0:
        return p
    cc = tensor(c, "input")
    return Op(Add(2), (cc if beta == 1 else Op(Scale(beta), (cc,)), p))


def nan_to_num(input: Any, nan: float = 0.0, posinf: Any = None, neginf: Any = None) -> Op:
    return Op(
        get_activation("nan_to_num", nan=nan, posinf=posinf, neginf=neginf),
        (tensor(input, "nan_to_num"),),
    )


# --- samples ---------------------------------------------------------------------------------


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


X = _randn(0, 3, 4)
V = _randn(1, 4)
CASES: dict[str, list[tuple[str, tuple[torch.Tensor, ...], Any]]] = {
    "unfold (method)": [
        ("windows, overlapping", (_randn(2, 2, 7),), lambda x: x.unfold(1, 3, 2)),
        ("dim 0, step = size", (X,), lambda x: x.unfold(0, 1, 1)),
    ],
    "ravel": [("matrix", (X,), torch.ravel)],
    "atleast_1d": [("a 0-d value", (X,), lambda x: torch.atleast_1d(x.sum()) * x)],
    "atleast_2d": [("a vector", (V,), torch.atleast_2d)],
    "atleast_3d": [
        ("a matrix, a vector", (X, V), lambda x, v: torch.atleast_3d(x).sum() * torch.atleast_3d(v))
    ],
    "hstack": [
        ("matrices", (X, X), lambda a, b: torch.hstack([a, b])),
        ("vectors", (V, V), lambda a, b: torch.hstack((a, b))),
    ],
    "vstack": [("a matrix and a vector", (X, V), lambda a, b: torch.vstack([a, b]))],
    "dstack": [("matrices", (X, X), lambda a, b: torch.dstack([a, b * 2]))],
    "column_stack": [("vectors and a matrix", (V, X), lambda v, x: torch.column_stack([v, x.T]))],
    "rot90": [
        (
            "k = 1, 2, 3, -1",
            (X,),
            lambda x: torch.cat(
                [
                    torch.rot90(x).flatten(),
                    torch.rot90(x, 3, (0, 1)).flatten(),
                    torch.rot90(x, 2).flatten(),
                    x.rot90(-1, (1, 0)).flatten(),
                ]
            ),
        )
    ],
    "tensor_split": [
        ("sections", (X,), lambda x: torch.tensor_split(x, 3, dim=1)[0]),
        ("indices", (X,), lambda x: x.tensor_split([1, 3], 1)[1] * 2),
        (
            "indices as a tensor (torch's lowering)",
            (X,),
            lambda x: torch.tensor_split(x, torch.tensor([1, 3]), 1)[1] * 2,
        ),
        (
            "sections as a 0-d tensor (torch's lowering)",
            (X,),
            lambda x: torch.tensor_split(x, torch.tensor(2))[0],
        ),
    ],  # fmt: skip
    "take": [("constant indices", (X,), lambda x: torch.take(x, torch.tensor([[0, 11], [5, 5]])))],
    "masked_select": [
        (
            "a constant mask, broadcast",
            (X,),
            lambda x: torch.masked_select(x, torch.tensor([True, False, True, True])),
        )
    ],
    "meshgrid": [
        (
            "ij",
            (V, V[:3]),
            lambda a, b: (
                torch.meshgrid(a, b, indexing="ij")[0] * torch.meshgrid(a, b, indexing="ij")[1]
            ),
        ),
        (
            "xy",
            (V, V[:3]),
            lambda a, b: (lambda p, q: p * q.exp())(*torch.meshgrid(a, b, indexing="xy")),
        ),
    ],
    "block_diag": [("a matrix, a vector", (X, V), lambda x, v: torch.block_diag(x, v))],
    "kron": [("matrices", (X, X[:2, :3]), torch.kron)],
    "tensordot": [
        ("dims 1", (X, X.T.contiguous()), lambda a, b: torch.tensordot(a, b, 1)),
        ("dim lists", (X, X), lambda a, b: torch.tensordot(a, b, ([0], [0]))),
    ],
    "rsub": [
        ("a number", (X,), lambda x: torch.rsub(x, 2.0, alpha=3)),
        ("a tensor", (X, V), torch.rsub),
    ],
    "deg2rad": [("values", (X,), torch.deg2rad)],
    "rad2deg": [("values", (X,), lambda x: x.rad2deg())],
    "positive": [("values", (X,), lambda x: torch.positive(x) * x)],
    "float_power": [("a number exponent", (X.abs() + 0.5,), lambda x: torch.float_power(x, 1.5))],
    "addmv": [
        ("beta, alpha", (V[:3], X, V), lambda c, m, v: torch.addmv(c, m, v, beta=0.5, alpha=2))
    ],
    "addr": [("defaults", (X, V[:3], V), torch.addr)],
    "addbmm": [
        (
            "alpha",
            (X[:, :2], _randn(3, 2, 3, 5), _randn(4, 2, 5, 2)),
            lambda c, a, b: torch.addbmm(c, a, b, alpha=0.5),
        )
    ],
    "nan_to_num": [
        (
            "infinities from a masked fill",
            (X,),
            lambda x: torch.nan_to_num(x.masked_fill(x > 1, float("inf")), posinf=5.0) * x,
        )
    ],
}


def _samples(name: str) -> Any:
    return lambda: [Sample(n, ins, fn=fn) for n, ins, fn in CASES[name]]


def _row(
    name: str,
    rule: Any,
    functions: tuple = (),
    methods: tuple = (),
    note: str = "",
    linear: bool = False,
    family: str = "shape",
) -> OpEntry:
    return OpEntry(
        name,
        family,
        rule,
        functions=functions,
        methods=methods,
        note=note,
        linear=linear,
        samples=_samples(name),
    )


ROWS = [
    _row(
        "unfold (method)",
        unfold_method,
        methods=("unfold",),
        linear=True,
        note="x.unfold(dim, size, step): sliding windows, overlaps added in the backward",
    ),
    _row("ravel", ravel, (torch.ravel,), ("ravel",), linear=True),
    _row("atleast_1d", _atleast_rule(1), (torch.atleast_1d,)),
    _row("atleast_2d", _atleast_rule(2), (torch.atleast_2d,), linear=True),
    _row("atleast_3d", _atleast_rule(3), (torch.atleast_3d,)),
    _row("hstack", _stack_rule("hstack", 1, 1), (torch.hstack,), linear=True),
    _row("vstack", _stack_rule("vstack", 2, 0), (torch.vstack, torch.row_stack), linear=True),
    _row("dstack", _stack_rule("dstack", 3, 2), (torch.dstack,), linear=True),
    _row("column_stack", _stack_rule("column_stack", 2, 1), (torch.column_stack,), linear=True),
    _row("rot90", rot90, (torch.rot90,), ("rot90",), note="any k, dims"),
    _row(
        "tensor_split",
        tensor_split,
        (torch.tensor_split,),
        ("tensor_split",),
        note="sections or indices",
    ),
    _row("take", take, (torch.take,), ("take",), note="constant or computed indices"),
    _row(
        "masked_select",
        masked_select,
        (torch.masked_select,),
        ("masked_select",),
        note="a constant mask only (a computed one gives a value-dependent shape)",
    ),
    _row("meshgrid", meshgrid, (torch.meshgrid,), note="indexing 'ij' and 'xy'"),
    _row("block_diag", block_diag, (torch.block_diag,), linear=True),
    _row("kron", kron, (torch.kron,), ("kron",), note="tensors of one rank"),
    _row("tensordot", tensordot, (torch.tensordot,), note="dims an int or two lists"),
    _row("rsub", rsub, (torch.rsub,), ("rsub", "__rsub__"), family="arithmetic"),
    _row(
        "deg2rad",
        _scaled(math.pi / 180, "deg2rad"),
        (torch.deg2rad,),
        ("deg2rad", "deg2rad_"),
        linear=True,
        family="elementwise",
    ),
    _row(
        "rad2deg",
        _scaled(180 / math.pi, "rad2deg"),
        (torch.rad2deg,),
        ("rad2deg", "rad2deg_"),
        linear=True,
        family="elementwise",
    ),
    _row("positive", positive, (torch.positive,), ("positive",), family="elementwise"),
    _row(
        "float_power",
        float_power,
        (torch.float_power,),
        ("float_power", "float_power_"),
        family="arithmetic",
    ),
    _row("addmv", addmv, (torch.addmv,), ("addmv", "addmv_"), note="beta, alpha", family="linalg"),
    _row("addr", addr, (torch.addr,), ("addr", "addr_"), note="beta, alpha", family="linalg"),
    _row(
        "addbmm",
        addbmm,
        (torch.addbmm,),
        ("addbmm", "addbmm_"),
        note="beta, alpha",
        family="linalg",
    ),
    _row(
        "nan_to_num",
        nan_to_num,
        (torch.nan_to_num,),
        ("nan_to_num", "nan_to_num_"),
        note="±inf to the largest finite (or given) values; f′ = 1 where finite, 0 elsewhere",
        family="elementwise",
    ),
]
