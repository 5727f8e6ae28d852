"""Products of tensors (manual_bp.ops.linalg): matmul and @ with torch's rules, mm, bmm, mv,
dot, addmm, baddbmm, einsum, outer, bilinear.

Either operand of a product may be a tensor computed from the input or a tensor of the model
(`x @ self.W`, `torch.einsum("bhqd,hd->bhq", q, self.scale)`): a model tensor becomes a leaf
of the network and its gradient is the δ that reaches it. Bilinear holds its weight and bias
as a layer, like Linear.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.ops.linalg import AddMatMul, Bilinear, Bmm, Dot, Einsum, MatMul, Mm, Mv, Outer
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import (
    Op,
    OpEntry,
    Param,
    Ref,
    Refusal,
    Sample,
    number,
    tensor,
    weighted,
)


def _product(layer_cls: type, what: str) -> Callable[..., Op]:
    """rule(input, other) for a product of two tensors, each computed or a model tensor."""

    def rule(input: Any, other: Any) -> Op:
        return Op(layer_cls(), (tensor(input, what), tensor(other, what)))

    rule.__name__ = what
    return rule


def addmm(input: Any, mat1: Any, mat2: Any, *, beta: float = 1, alpha: float = 1) -> Op:
    """β·input + α·(mat1 @ mat2), input broadcast (a bias row, a 0-d tensor)."""
    layer = AddMatMul(number(beta, "addmm (beta)"), number(alpha, "addmm (alpha)"))
    return Op(layer, tuple(tensor(t, "addmm") for t in (input, mat1, mat2)))


def baddbmm(input: Any, batch1: Any, batch2: Any, *, beta: float = 1, alpha: float = 1) -> Op:
    layer = AddMatMul(number(beta, "baddbmm (beta)"), number(alpha, "baddbmm (alpha)"), True)
    return Op(layer, tuple(tensor(t, "baddbmm") for t in (input, batch1, batch2)))


def _sublist_letter(n: Any) -> str:
    """torch's sublist format: 0-25 are A-Z, 26-51 are a-z, Ellipsis is '...'."""
    if n is Ellipsis:
        return "..."
    if isinstance(n, int) and 0 <= n < 26:
        return chr(ord("A") + n)
    if isinstance(n, int) and 26 <= n < 52:
        return chr(ord("a") + n - 26)
    raise ValueError(f"einsum: expected sublist entries in [0, 52) or Ellipsis, got {n!r}")


def einsum(*args: Any) -> Op:
    """torch.einsum(equation, *operands), torch.einsum(equation, [operands]), or the sublist
    form torch.einsum(op1, [0, 1], op2, [1, 2], [0, 2])."""
    if args and isinstance(args[0], str):
        equation, operands = args[0], args[1:]
        if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
            operands = tuple(operands[0])
    else:  # the sublist form
        subs = ["".join(_sublist_letter(n) for n in s) for s in args[1::2]]
        equation = ",".join(subs[: len(args) // 2])
        if len(args) % 2:
            equation += "->" + "".join(_sublist_letter(n) for n in args[-1])
        operands = args[0 : 2 * (len(args) // 2) : 2]
    refs = tuple(tensor(t, "einsum") for t in operands)
    return Op(Einsum(equation, len(refs)), refs)


def bilinear(input1: Any, input2: Any, weight: Any, bias: Any = None) -> Op:
    """F.bilinear / nn.Bilinear: a Bilinear layer holding copies of the weight and bias."""
    inputs = (tensor(input1, "bilinear"), tensor(input2, "bilinear"))
    return weighted(Bilinear, "bilinear", inputs, weight, bias)


# --- samples -----------------------------------------------------------------------------


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float64)


def _matmul_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    x, y = _randn(g, 2, 3, 4), _randn(g, 4, 5)
    return [
        Sample("operator @, batched by 2-d", (x, y), fn=lambda a, b: a @ b),
        Sample("1-d @ 3-d", (_randn(g, 3), x), fn=torch.matmul),
        Sample("3-d @ 1-d", (x, _randn(g, 4)), fn=lambda a, b: a.matmul(b)),
        Sample("broadcast batch", (_randn(g, 2, 1, 3, 4), _randn(g, 5, 4, 2)), fn=torch.matmul),
        Sample("a model tensor as operand", (x,), fn=lambda a, w: a @ w, params={"w": y}),
        Sample("model tensor first", (y,), fn=lambda b, w: w @ b, params={"w": x}),
    ]


def _two(name: str, fn: Callable[..., Any], *shapes: tuple[int, ...]) -> Callable[[], list]:
    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(1)
        return [Sample(name, tuple(_randn(g, *s) for s in shapes), fn=fn)]

    return samples


def _addmm_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(2)
    a, b = _randn(g, 2, 3), _randn(g, 3, 4)
    return [
        Sample(
            "bias row", (a, b), fn=lambda a, b, c: torch.addmm(c, a, b), params={"c": _randn(g, 4)}
        ),
        Sample(
            "beta, alpha",
            (_randn(g, 2, 4), a, b),
            fn=lambda c, a, b: c.addmm(a, b, beta=0.5, alpha=2),
        ),
    ]


def _baddbmm_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(3)
    inputs = (_randn(g, 3, 1), _randn(g, 2, 3, 4), _randn(g, 2, 4, 5))
    return [
        Sample("beta, alpha", inputs, fn=lambda c, a, b: torch.baddbmm(c, a, b, beta=2, alpha=-1))
    ]


def _einsum_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(4)
    q, k = _randn(g, 2, 3, 4, 5), _randn(g, 2, 3, 6, 5)
    m = _randn(g, 3, 3)
    return [
        Sample("attention scores", (q, k), fn=lambda q, k: torch.einsum("bhqd,bhkd->bhqk", q, k)),
        Sample("operands as a list", (q, k), fn=lambda q, k: torch.einsum("...qd,...kd", [q, k])),
        Sample(
            "trace and diagonal",
            (m,),
            fn=lambda m: torch.einsum("ii->i", m) * torch.einsum("ii", m),
        ),
        Sample(
            "sublist form",
            (m, _randn(g, 3, 2)),
            fn=lambda a, b: torch.einsum(a, [0, 1], b, [1, 2], [0, 2]),
        ),
        Sample(
            "a model tensor operand",
            (q,),
            fn=lambda q, w: torch.einsum("bhqd,hd->bhq", q, w),
            params={"w": _randn(g, 3, 5)},
        ),
    ]


def _bilinear_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(5)
    x1, x2 = _randn(g, 2, 3, 4), _randn(g, 2, 3, 5)
    return [
        Sample("module", (x1, x2), module=nn.Bilinear(4, 5, 6).double()),
        Sample(
            "module, no bias",
            (x1[0, 0], x2[0, 0]),
            module=nn.Bilinear(4, 5, 2, bias=False).double(),
        ),
        Sample(
            "function",
            (x1, x2),
            fn=lambda a, b, w: F.bilinear(a, b, w),
            params={"w": _randn(g, 3, 4, 5)},
        ),
        Sample(
            "a weight and bias computed in forward",
            (x1, x2),
            fn=lambda a, b, w, c: F.bilinear(a, b, w * 2, c.tanh()),
            params={"w": _randn(g, 3, 4, 5), "c": _randn(g, 3)},
        ),
    ]


def _matmul_refusals() -> list[Refusal]:
    g = torch.Generator().manual_seed(6)
    return [
        Refusal(
            "inner sizes differ",
            (_randn(g, 2, 3), _randn(g, 4, 2)),
            ValueError,
            "inner sizes",
            fn=torch.matmul,
        ),
        Refusal(
            "a 0-d operand",
            (_randn(g, 3),),
            ValueError,
            "at least 1-d",
            fn=lambda x, s: torch.matmul(s, x),
            params={"s": _randn(g)},
        ),
    ]


def _einsum_refusals() -> list[Refusal]:
    g = torch.Generator().manual_seed(7)
    x = _randn(g, 2, 3)
    return [
        Refusal(
            "sizes differ",
            (x, x),
            ValueError,
            "only size 1 broadcasts",
            fn=lambda a, b: torch.einsum("ij,jk", a, b),
        ),
        Refusal(
            "output letter twice",
            (x,),
            ValueError,
            "used once",
            fn=lambda a: torch.einsum("ij->ii", a),
        ),
    ]


ROWS = [
    OpEntry(
        "matmul",
        "linalg",
        _product(MatMul, "matmul"),
        functions=(torch.matmul, operator.matmul, torch.linalg.matmul),
        methods=("matmul", "__matmul__"),
        note="torch's rules: 1-d operands, batch dims broadcast; model tensors as operands",
        samples=_matmul_samples,
        refusals=_matmul_refusals,
    ),
    OpEntry(
        "mm",
        "linalg",
        _product(Mm, "mm"),
        functions=(torch.mm,),
        methods=("mm",),
        samples=_two("2-d", torch.mm, (2, 3), (3, 4)),
    ),
    OpEntry(
        "bmm",
        "linalg",
        _product(Bmm, "bmm"),
        functions=(torch.bmm,),
        methods=("bmm",),
        samples=_two("3-d", torch.bmm, (2, 2, 3), (2, 3, 4)),
    ),
    OpEntry(
        "mv",
        "linalg",
        _product(Mv, "mv"),
        functions=(torch.mv,),
        methods=("mv",),
        samples=_two("matrix, vector", torch.mv, (2, 3), (3,)),
    ),
    OpEntry(
        "dot",
        "linalg",
        _product(Dot, "dot"),
        functions=(torch.dot,),
        methods=("dot",),
        samples=_two("vectors", torch.dot, (4,), (4,)),
    ),
    OpEntry(
        "outer",
        "linalg",
        _product(Outer, "outer"),
        functions=(torch.outer, torch.ger),
        methods=("outer", "ger"),
        samples=_two("vectors", torch.outer, (3,), (4,)),
    ),
    OpEntry(
        "addmm",
        "linalg",
        addmm,
        functions=(torch.addmm,),
        methods=("addmm",),
        note="beta, alpha (beta=0 ignores the input, nan included)",
        samples=_addmm_samples,
    ),
    OpEntry(
        "baddbmm",
        "linalg",
        baddbmm,
        functions=(torch.baddbmm,),
        methods=("baddbmm",),
        note="beta, alpha",
        samples=_baddbmm_samples,
    ),
    OpEntry(
        "einsum",
        "linalg",
        einsum,
        functions=(torch.einsum,),
        note="any equation: '...', repeated letters (diagonals), implicit output, size-1 "
        "broadcasting, the sublist form; model tensors as operands",
        samples=_einsum_samples,
        refusals=_einsum_refusals,
    ),
    OpEntry(
        "bilinear",
        "linalg",
        bilinear,
        functions=(F.bilinear,),
        modules=(nn.Bilinear,),
        module_args=("weight", "bias"),
        note="bias on/off, any leading dims",
        samples=_bilinear_samples,
    ),
]

_ = (Param, Ref, UnsupportedModuleError)  # re-exported names rules may need
