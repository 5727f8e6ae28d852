"""Elementwise arithmetic (manual_bp.ops.arithmetic): +, −, ⊙, / with broadcasting; a
gradient is reduced back to each operand's shape by the one shared `unbroadcast`.

Operands are tensors computed from the input (Ref), the model's own tensors used as
operands (Param: `x + self.pos_embedding`), or Python numbers. On plain numbers (sizes)
the operators compute the number itself (`x.size(1) // 2`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch

from manual_bp.ops.arithmetic import Add, AddConstant, Div, Mul, Scale, Sub
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import (
    Op,
    OpEntry,
    Param,
    Ref,
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


def div(input: Any, other: Any, *, rounding_mode: str | None = None) -> Any:
    """a / c for a number c: Div."""
    if is_plain(input, other) and rounding_mode is None:
        return input / other
    if rounding_mode is not None:
        raise UnsupportedModuleError(
            f"div: rounding_mode={rounding_mode!r} is not supported (its gradient is 0 "
            "almost everywhere)"
        )
    if _is_tensor(other):
        raise UnsupportedModuleError(
            "div: division by a tensor is not supported; only by a Python number (x / c)"
        )
    return Op(Div(number(other, "div")), (tensor(input, "div"),))


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
        functions=(operator.truediv, operator.itruediv, torch.div, torch.true_divide),
        methods=("div", "div_", "true_divide", "__truediv__", "__itruediv__"),
        note="by a number",
        samples=_table(lambda x: x / 3, (3, 4)),
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
        plain_only(operator.floordiv, "floor division"),
        functions=(operator.floordiv,),
        note="of sizes and numbers only",
    ),
]
