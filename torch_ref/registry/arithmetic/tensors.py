"""Elementwise arithmetic of tensors and numbers (manual_bp.ops.arithmetic): +, −, ⊙, /,
//, ** with broadcasting, maximum and minimum, where and masked_fill; a gradient is reduced
back to each operand's shape by the one shared `unbroadcast`.

Operands are tensors computed from the input (Ref), the model's own tensors used as
operands (Param: `x + self.pos_embedding`), or Python numbers. On plain numbers (sizes)
the operators compute the number itself (`x.size(1) // 2`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from manual_bp.ops.activations import get_activation
from manual_bp.ops.arithmetic import (
    Add,
    AddConstant,
    Div,
    DivTensor,
    MaskedFill,
    Maximum,
    Minimum,
    Mul,
    Pow,
    RDiv,
    RPow,
    Scale,
    Sub,
    Where,
)
from manual_bp.ops.graph import Constant
from torch_ref.errors import NotCovered, UnsupportedModuleError
from torch_ref.registry.core import (
    Op,
    OpEntry,
    Param,
    Ref,
    Refusal,
    Sample,
    is_plain,
    number,
    tensor,
)


def _is_tensor(v: Any) -> bool:
    return isinstance(v, (Ref, Param))


def _scaled(y: Ref | Param, alpha: float) -> Ref | Param | Op:
    return y if alpha == 1 else Op(Scale(alpha), (y,))


def add(input: Any, other: Any, *, alpha: float = 1) -> Any:
    """a + α·b: Add of two tensors, AddConstant of a tensor and a number."""
    if is_plain(input, other):
        return input + alpha * other
    alpha = number(alpha, "add (alpha)")
    if _is_tensor(input) and _is_tensor(other):
        return Op(Add(2), (input, _scaled(other, alpha)))
    if _is_tensor(input):
        return Op(AddConstant(alpha * number(other, "add")), (input,))
    return Op(AddConstant(number(input, "add")), (_scaled(tensor(other, "add"), alpha),))


def sub(input: Any, other: Any, *, alpha: float = 1) -> Any:
    """a − α·b: Sub of two tensors; a tensor minus c is AddConstant(−c); c − x is c + (−1)·x."""
    if is_plain(input, other):
        return input - alpha * other
    alpha = number(alpha, "sub (alpha)")
    if _is_tensor(input) and _is_tensor(other):
        return Op(Sub(), (input, _scaled(other, alpha)))
    if _is_tensor(input):
        return Op(AddConstant(-alpha * number(other, "sub")), (input,))
    return Op(AddConstant(number(input, "sub")), (Op(Scale(-alpha), (tensor(other, "sub"),)),))


def mul(input: Any, other: Any) -> Any:
    """a·b: Mul of two tensors (broadcast), Scale of a tensor by a number."""
    if is_plain(input, other):
        return input * other
    if _is_tensor(input) and _is_tensor(other):
        return Op(Mul(), (input, other))
    x, c = (input, other) if _is_tensor(input) else (other, input)
    return Op(Scale(number(c, "mul")), (tensor(x, "mul"),))


def _constant(c: Any, what: str) -> Op:
    """A number as a 0-d value of the network (it carries no gradient)."""
    return Op(Constant(np.asarray(float(number(c, what)))), ())


def div(input: Any, other: Any, *, rounding_mode: str | None = None) -> Any:
    """a / b: Div by a number, DivTensor by a tensor (broadcast), RDiv for c / b; with
    rounding_mode 'trunc' or 'floor' a DivTensor (zero gradient, as torch's)."""
    if rounding_mode not in (None, "trunc", "floor"):
        raise ValueError(
            f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}"
        )
    if is_plain(input, other):
        if rounding_mode == "floor":
            return input // other
        return input / other if rounding_mode is None else math.trunc(input / other)
    if rounding_mode is not None:  # piecewise constant: numbers become constants
        a = input if _is_tensor(input) else _constant(input, "div")
        b = other if _is_tensor(other) else _constant(other, "div")
        return Op(DivTensor(rounding_mode), (tensor(a, "div") if not isinstance(a, Op) else a, b))
    if _is_tensor(input) and _is_tensor(other):
        return Op(DivTensor(), (input, other))
    if _is_tensor(other):
        return Op(RDiv(number(input, "div")), (other,))
    return Op(Div(number(other, "div")), (tensor(input, "div"),))


def floordiv(input: Any, other: Any) -> Any:
    """a // b of sizes and numbers (x.size(1) // 2). torch has no derivative for floor_divide
    of tensors, so there it is refused (torch.div(x, y, rounding_mode='floor') has one: 0)."""
    if not is_plain(input, other):
        raise UnsupportedModuleError(
            "floor division of tensors (x // y, torch.floor_divide) is not supported: torch "
            "has no derivative for it; torch.div(x, y, rounding_mode='floor') has one (zero)"
        )
    return input // other


def pow_(input: Any, exponent: Any) -> Any:
    """a ** b: the activation pow(c) for a tensor and a number, Pow for two tensors, RPow for
    a number and a tensor (torch's branches at 0)."""
    if is_plain(input, exponent):
        return input**exponent
    if _is_tensor(input) and _is_tensor(exponent):
        return Op(Pow(), (input, exponent))
    if _is_tensor(input):
        return Op(get_activation("pow", exponent=number(exponent, "pow")), (input,))
    return Op(RPow(number(input, "pow")), (tensor(exponent, "pow"),))


def extremum_rule(cls: type[Maximum] | type[Minimum]) -> Callable[..., Op]:
    """torch.maximum / minimum(input, other): two tensors (broadcast)."""
    what = cls.__name__.lower()

    def rule(input: Any, other: Any) -> Op:
        return Op(cls(), (tensor(input, what), tensor(other, what)))

    return rule


def _mask(m: Any, what: str) -> Ref | Param:
    """A bool mask: a comparison's value, or a bool buffer or constant of the model (a
    computed value's dtype is checked by the layer, when it runs)."""
    m = tensor(m, what)
    if isinstance(m, Param) and m.tensor.dtype != torch.bool:
        raise UnsupportedModuleError(
            f"{what}: expected a bool condition, got {m.name!r} of dtype {m.tensor.dtype}"
        )
    return m


def where(condition: Any, input: Any = None, other: Any = None) -> Op:
    """torch.where(condition, input, other): input or other may be a number. The condition
    carries no gradient (a buffer, or a comparison of values)."""
    if input is None and other is None:
        raise UnsupportedModuleError(
            "where: torch.where(condition) lists indices (nonzero); it has no gradient and is "
            "not supported"
        )
    cond = _mask(condition, "where")
    x_t, y_t = _is_tensor(input), _is_tensor(other)
    if not x_t and not y_t:  # two numbers: both as constants, so the value is floating
        return Op(Where(), (cond, _constant(input, "where"), _constant(other, "where")))
    x = None if x_t else number(input, "where", infinite=True)
    y = None if y_t else number(other, "where", infinite=True)
    return Op(Where(x, y), (cond, *(t for t in (input, other) if _is_tensor(t))))


def where_method(input: Any, condition: Any, other: Any) -> Op:
    """x.where(condition, other) = torch.where(condition, x, other)."""
    return where(condition, input, other)


def masked_fill(input: Any, mask: Any, value: Any) -> Op:
    """x.masked_fill(mask, value): value a number, ±inf included (float("-inf") before a
    softmax) and NaN (a mark of what was not computed), or a 0-d tensor of the model."""
    if isinstance(value, Param) and value.ndim == 0 and not value.trainable:
        value = float(value.tensor)
    if isinstance(value, (Ref, Param)):  # (torch's lowering: the value gets Σ δ over the mask)
        raise NotCovered("masked_fill: this row takes a number as the fill value, got a tensor")
    special = isinstance(value, (float, np.floating)) and not math.isfinite(value)
    return Op(
        MaskedFill(value if special else number(value, "masked_fill")),
        (tensor(input, "masked_fill"), _mask(mask, "masked_fill")),
    )


def neg(input: Any) -> Any:
    return -input if is_plain(input) else Op(Scale(-1), (tensor(input, "neg"),))


def plain_only(fn: Callable[..., Any], what: str) -> Callable[..., Any]:
    """An operator on sizes and numbers only (x.size(1) // 2); on tensors it is refused."""

    def rule(*args: Any) -> Any:
        if not is_plain(*args):
            raise UnsupportedModuleError(f"{what} of tensors is not supported")
        return fn(*args)

    return rule


def _samples() -> list[Sample]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    y = torch.randn(4, generator=g, dtype=torch.float64)
    return [
        Sample("two inputs, broadcast", (x, y), fn=lambda x, y: x + 2 * y),
        Sample("a parameter operand", (x,), fn=lambda x, p: x + p, params={"p": y}),
    ]


def _table(fn: Callable[..., Any], *xs: tuple[int, ...]) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(1)
        inputs = tuple(torch.randn(*s, generator=g, dtype=torch.float64) for s in xs)
        return [Sample("tensors", inputs, fn=fn)]

    return samples


def _away_from_0(*shape: int, seed: int = 2) -> torch.Tensor:
    """Entries in ±[0.5, 2.5): divisors and bases far from 0."""
    g = torch.Generator().manual_seed(seed)
    x = 0.5 + 2 * torch.rand(*shape, generator=g, dtype=torch.float64)
    return torch.where(torch.rand(*shape, generator=g) < 0.5, -x, x)


def _ints(lo: int, hi: int, *shape: int, seed: int = 3) -> torch.Tensor:
    """Integer-valued floats: exact ties and zeros."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi + 1, shape, generator=g).double()


def _div_samples() -> list[Sample]:
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    b, c = _away_from_0(4), _away_from_0(3, 1, seed=4)
    return [
        Sample("by a number", (x,), fn=lambda x: x / 3),
        Sample("by a tensor, broadcast", (x, c), fn=lambda x, c: x / c),
        Sample("a number by a tensor", (c,), fn=lambda c: 2.0 / c),
        Sample("by a parameter", (x,), fn=lambda x, b: torch.div(x, b), params={"b": b}),
        Sample(
            "rounding modes in a product",
            (x, c),
            fn=lambda x, c: (
                x * torch.div(x, c, rounding_mode="floor") + x.div(c, rounding_mode="trunc")
            ),
        ),
    ]


def _floordiv_refusals() -> list[Refusal]:
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return [
        Refusal(
            "tensor // number",
            (x,),
            UnsupportedModuleError,
            "torch has no derivative for it",
            fn=lambda x: x * (x // 2),
        )
    ]


def _pow_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    pos = 0.25 + 2 * torch.rand(3, 4, generator=g, dtype=torch.float64)
    e = torch.randn(4, generator=g, dtype=torch.float64)
    return [
        Sample(
            "x ** 2, x ** 3, x ** -1", (_away_from_0(3, 4),), fn=lambda x: x**2 + x.pow(3) + x**-1
        ),
        Sample("positive x ** 0.5, ** 1.5", (pos,), fn=lambda x: x**0.5 + torch.pow(x, 1.5)),
        Sample("tensor ** tensor, broadcast", (pos, e), fn=lambda x, e: x**e),
        Sample("number ** tensor", (x,), fn=lambda x: 2.0**x + torch.pow(0.5, x)),
        Sample("base a parameter", (e,), fn=lambda e, b: b**e, params={"b": pos}),
        Sample(
            "integer-valued, zero bases", (_ints(0, 3, 3, 4), _ints(0, 2, 4, seed=6)), fn=torch.pow
        ),
    ]


def _extremum_samples(fn: Callable[..., Any]) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(7)
        x = torch.randn(3, 4, generator=g, dtype=torch.float64)
        y = torch.randn(4, generator=g, dtype=torch.float64)
        return [
            Sample("broadcast", (x, y), fn=fn),
            Sample(
                "exact ties (integer-valued)",
                (_ints(-1, 1, 3, 4), _ints(-1, 1, 3, 4, seed=8)),
                fn=fn,
            ),
            Sample("with a parameter", (x,), fn=lambda x, p: fn(x, p), params={"p": y}),
        ]

    return samples


_MASK = torch.tensor([[True, False, True, False], [False, False, True, True], [True] * 4])


def _where_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(9)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    y = torch.randn(4, generator=g, dtype=torch.float64)
    return [
        Sample("a constant mask, two tensors", (x, y), fn=lambda x, y: torch.where(_MASK, x, y)),
        Sample("a comparison, a number", (x,), fn=lambda x: torch.where(x > 0.5, x, 0.0)),
        Sample("two numbers times x", (x,), fn=lambda x: x * torch.where(_MASK, 1.0, -2.0)),
    ]


def _where_method_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(12)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    y = torch.randn(4, generator=g, dtype=torch.float64)
    return [
        Sample("x.where(mask, y)", (x, y), fn=lambda x, y: x.where(_MASK, y) * 2),
        Sample("x.where(x > 0, number)", (x,), fn=lambda x: x.where(x > 0, -1.0)),
    ]


def _masked_fill_samples() -> list[Sample]:
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    causal = torch.triu(torch.ones(4, 4, dtype=torch.bool), 1)
    return [
        Sample("a constant mask, broadcast", (x,), fn=lambda x: x.masked_fill(_MASK, -2.5)),
        Sample(
            "causal mask before softmax",
            (torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(11), dtype=x.dtype),),
            fn=lambda s: torch.softmax(s.masked_fill(causal, -1e9), -1),
        ),
        Sample("a comparison", (x,), fn=lambda x: torch.masked_fill(x, x < 0, 0.0)),
        Sample(
            "causal mask of -inf before softmax (nanoGPT)",
            (torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(12), dtype=x.dtype),),
            fn=lambda s: torch.softmax(s.masked_fill(causal, float("-inf")), -1),
        ),
        Sample(  # (kornia's median_blur marks what it cannot compute so)
            "a NaN fill value, replaced before the loss",
            (x,),
            fn=lambda x: torch.nan_to_num(x.masked_fill(_MASK, float("nan")), nan=0.5) * x,
        ),
        Sample(  # (through torch's lowering: NotCovered)
            "a tensor fill value that carries gradient",
            (x,),
            fn=lambda x, v: x.masked_fill(_MASK, v.tanh()),
            params={"v": torch.tensor(1.0, dtype=torch.float64)},
        ),
    ]


def _where_refusals() -> list[Refusal]:
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return [
        Refusal(
            "a float buffer as the condition",
            (x,),
            UnsupportedModuleError,
            "expected a bool condition, got .* of dtype torch.float64",
            fn=lambda x: torch.where(_MASK.double(), x, 0.0),
        ),
    ]


def _div_refusals() -> list[Refusal]:
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return [
        Refusal(
            "rounding_mode 'round'",
            (x,),
            ValueError,
            "rounding_mode must be None, 'trunc' or 'floor'",
            fn=lambda x: torch.div(x, 2.0, rounding_mode="round"),
        ),
    ]


ROWS = [
    OpEntry(
        "add",
        "arithmetic",
        add,
        functions=(operator.add, operator.iadd, torch.add),
        methods=("add", "add_", "__add__", "__radd__", "__iadd__"),
        note="tensors (broadcast, alpha), model tensors as operands, numbers",
        linear=True,
        samples=_samples,
    ),
    OpEntry(
        "sub",
        "arithmetic",
        sub,
        functions=(operator.sub, operator.isub, torch.sub, torch.subtract),
        methods=("sub", "sub_", "subtract", "__sub__", "__isub__"),
        note="tensors (broadcast, alpha), numbers",
        linear=True,
        samples=_table(lambda x, y: x - y, (3, 1), (4,)),
    ),
    OpEntry(
        "mul",
        "arithmetic",
        mul,
        functions=(operator.mul, operator.imul, torch.mul, torch.multiply),
        methods=("mul", "mul_", "multiply", "__mul__", "__rmul__", "__imul__"),
        note="tensors (broadcast), numbers",
        samples=_table(lambda x, y: x * y * 3, (2, 3, 1), (1, 4)),
    ),
    OpEntry(
        "div",
        "arithmetic",
        div,
        functions=(operator.truediv, operator.itruediv, torch.div, torch.true_divide, torch.divide),
        methods=(
            "div",
            "div_",
            "divide",
            "divide_",
            "true_divide",
            "true_divide_",
            "__truediv__",
            "__itruediv__",
        ),
        note="by a number or a tensor (broadcast), a number by a tensor; rounding modes",
        samples=_div_samples,
        refusals=_div_refusals,
    ),
    OpEntry(
        "neg",
        "arithmetic",
        neg,
        functions=(operator.neg, torch.neg, torch.negative),
        methods=("neg", "neg_", "negative", "__neg__"),
        linear=True,
        samples=_table(lambda x: -x, (3, 4)),
    ),
    OpEntry(
        "floordiv",
        "arithmetic",
        floordiv,
        functions=(operator.floordiv, operator.ifloordiv, torch.floor_divide),
        methods=("floor_divide", "floor_divide_", "__floordiv__", "__ifloordiv__"),
        note="of sizes and numbers only (torch has no derivative for tensors)",
        refusals=_floordiv_refusals,
    ),
    OpEntry(
        "pow",
        "arithmetic",
        pow_,
        functions=(operator.pow, operator.ipow, torch.pow),
        methods=("pow", "pow_", "__pow__", "__ipow__"),
        note="x ** c, x ** y (broadcast), c ** x; torch's subgradients at 0",
        samples=_pow_samples,
    ),
    OpEntry(
        "maximum",
        "arithmetic",
        extremum_rule(Maximum),
        functions=(torch.maximum,),
        methods=("maximum",),
        note="two tensors (broadcast); δ halved at ties",
        samples=_extremum_samples(torch.maximum),
    ),
    OpEntry(
        "minimum",
        "arithmetic",
        extremum_rule(Minimum),
        functions=(torch.minimum,),
        methods=("minimum",),
        note="two tensors (broadcast); δ halved at ties",
        samples=_extremum_samples(torch.minimum),
    ),
    OpEntry(
        "where",
        "arithmetic",
        where,
        functions=(torch.where,),
        note="a bool condition (a buffer or a comparison); numbers as values",
        samples=_where_samples,
        refusals=_where_refusals,
    ),
    OpEntry(
        "where (method)",
        "arithmetic",
        where_method,
        methods=("where",),
        note="x.where(condition, other)",
        samples=_where_method_samples,
    ),
    OpEntry(
        "masked_fill",
        "arithmetic",
        masked_fill,
        functions=(torch.masked_fill,),
        methods=("masked_fill", "masked_fill_"),
        note="a bool mask (broadcast), a number as the value",
        samples=_masked_fill_samples,
    ),
]
