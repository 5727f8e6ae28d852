"""Two- and three-operand elementwise functions (manual_bp.ops.arithmetic.binary):
atan2, hypot, remainder, fmod, xlogy, lerp, addcmul, addcdiv, logaddexp, fmax/fmin,
copysign, with broadcasting; and the reflected operators as Tensor methods (`2 / x` is
x.__rtruediv__(2)).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch

from manual_bp.ops.arithmetic import (
    AddCMul,
    Atan2,
    CopySign,
    Fill,
    FMax,
    FMin,
    Fmod,
    Frexp,
    Hypot,
    Lerp,
    LogAddExp,
    NextAfter,
    Remainder,
    XLogY,
)
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.arithmetic.tensors import (
    _away_from_0,
    _constant,
    _ints,
    _is_tensor,
    div,
    extremum_rule,
    pow_,
)
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

# --- two- and three-operand functions ---------------------------------------------------


def _operand(x: Any, what: str) -> Ref | Param | Op:
    """A tensor operand, or a number as a 0-d constant (it carries no gradient)."""
    return x if _is_tensor(x) else _constant(x, what)


def binary_rule(
    make: Callable[[], Any],
    what: str,
    plain: Callable[..., Any] | None = None,
    number_first: bool = True,
) -> Callable[..., Any]:
    """rule(input, other) of an elementwise f(a, b): tensors broadcast, numbers as constants;
    on two plain numbers `plain` computes the number itself (x.size(1) % 2). number_first
    False: f(number, tensor) is refused (torch has no derivative for it)."""

    def rule(input: Any, other: Any) -> Any:
        if is_plain(input, other):
            if plain is None:
                raise UnsupportedModuleError(f"{what}: expected a tensor operand, got two numbers")
            return plain(input, other)
        if not number_first and not _is_tensor(input):
            raise UnsupportedModuleError(
                f"{what}(number, tensor) is not supported: torch has no derivative for it "
                f"(derivative for aten::{what} is not implemented)"
            )
        return Op(make(), (_operand(input, what), _operand(other, what)))

    rule.__name__ = what
    return rule


def lerp(input: Any, end: Any, weight: Any) -> Op:
    """torch.lerp(start, end, weight): weight a number or a tensor (broadcast)."""
    ends = (tensor(input, "lerp"), _operand(end, "lerp"))
    if _is_tensor(weight):
        return Op(Lerp(), (*ends, weight))
    return Op(Lerp(number(weight, "lerp (weight)")), ends)


def addcmul(input: Any, tensor1: Any, tensor2: Any, *, value: float = 1) -> Op:
    """input + value · tensor1 ⊙ tensor2 (broadcast)."""
    ops = tuple(tensor(t, "addcmul") for t in (input, tensor1, tensor2))
    return Op(AddCMul(number(value, "addcmul (value)")), ops)


def addcdiv(input: Any, tensor1: Any, tensor2: Any, *, value: float = 1) -> Op:
    """input + value · tensor1 / tensor2 (broadcast)."""
    ops = tuple(tensor(t, "addcdiv") for t in (input, tensor1, tensor2))
    return Op(AddCMul(number(value, "addcdiv (value)"), divide=True), ops)


def _binary_samples(fn: Callable[..., Any], b_domain: str = "real") -> Callable[[], list[Sample]]:
    """f(x, y) broadcast, with a number, with a parameter, and on integer-valued inputs."""

    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(13)
        x = 2 * torch.randn(3, 4, generator=g, dtype=torch.float64)
        y = (
            _away_from_0(4, seed=14)
            if b_domain == "nonzero"
            else 0.25 + 3 * torch.rand(4, generator=g, dtype=torch.float64)
            if b_domain == "positive"
            else torch.randn(4, generator=g, dtype=torch.float64)
        )
        ints = _ints(-4, 4, 3, 4, seed=15)
        ints_b = _ints(1, 3, 4, seed=16)
        return [
            Sample("broadcast", (x, y), fn=fn),
            Sample("y a parameter", (x,), fn=lambda x, p: fn(x, p), params={"p": y}),
            Sample("integer-valued (a 0 numerator included)", (ints, ints_b), fn=fn),
        ]

    return samples


def _remainder_samples(fn: Callable[..., Any]) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(17)
        x = 3 * torch.randn(3, 4, generator=g, dtype=torch.float64)
        return [
            *_binary_samples(fn, "nonzero")(),
            Sample("by a number", (x,), fn=lambda x: fn(x, 1.5) + fn(x, -0.7)),
        ]

    return samples


def _xlogy_samples(fn: Callable[..., Any]) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(19)
        x = torch.randn(3, 4, generator=g, dtype=torch.float64)
        x[0, :2] = 0.0
        y = 0.25 + 3 * torch.rand(3, 4, generator=g, dtype=torch.float64)
        return [
            Sample("zeros in x", (x, y), fn=fn),
            Sample("x a number", (y,), fn=lambda y: fn(2.0, y)),
            Sample("y a number", (x,), fn=lambda x: fn(x, 3.0)),
            Sample("y broadcast", (x, y[0]), fn=fn),
        ]

    return samples


def _lerp_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(20)
    s, e = (
        torch.randn(3, 4, generator=g, dtype=torch.float64),
        torch.randn(4, generator=g, dtype=torch.float64),
    )
    w = torch.rand(3, 1, generator=g, dtype=torch.float64)
    return [
        Sample("a number weight below ½", (s, e), fn=lambda s, e: torch.lerp(s, e, 0.3)),
        Sample("a number weight above ½", (s, e), fn=lambda s, e: s.lerp(e, 0.8)),
        Sample("a tensor weight, broadcast", (s, e, w), fn=torch.lerp),
        Sample(
            "weight ½ and 1.5 (both branches)",
            (s, e, torch.tensor([0.5, 1.5, -0.5], dtype=torch.float64)[:, None]),
            fn=torch.lerp,
        ),
    ]


def _addc_samples(fn: Callable[..., Any]) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(21)
        c = torch.randn(3, 4, generator=g, dtype=torch.float64)
        a = torch.randn(4, generator=g, dtype=torch.float64)
        b = _away_from_0(3, 1, seed=22)
        return [
            Sample("broadcast", (c, a, b), fn=fn),
            Sample("value", (c, a, b), fn=lambda c, a, b: fn(c, a, b, value=-0.5)),
            Sample(
                "as a method, a parameter",
                (c, a),
                fn=lambda c, a, p: getattr(c, fn.__name__)(a, p, value=2),
                params={"p": b},
            ),
        ]

    return samples


ROWS = [
    OpEntry(
        "atan2",
        "arithmetic",
        binary_rule(Atan2, "atan2"),
        functions=(torch.atan2, torch.arctan2),
        methods=("atan2", "atan2_", "arctan2", "arctan2_"),
        note="two tensors (broadcast)",
        samples=_binary_samples(torch.atan2),
    ),
    OpEntry(
        "hypot",
        "arithmetic",
        binary_rule(Hypot, "hypot"),
        functions=(torch.hypot,),
        methods=("hypot", "hypot_"),
        note="two tensors (broadcast)",
        samples=_binary_samples(torch.hypot, "nonzero"),
    ),
    OpEntry(
        "remainder",
        "arithmetic",
        binary_rule(Remainder, "remainder", operator.mod, number_first=False),
        functions=(torch.remainder, operator.mod, operator.imod),
        methods=("remainder", "remainder_", "__mod__", "__rmod__", "__imod__"),
        note="x % y, the sign of y; numbers too; jumps where x / y is an integer (ties)",
        samples=_remainder_samples(torch.remainder),
    ),
    OpEntry(
        "fmod",
        "arithmetic",
        binary_rule(Fmod, "fmod", math.fmod, number_first=False),
        functions=(torch.fmod,),
        methods=("fmod", "fmod_"),
        note="the sign of x; numbers too; jumps where x / y is a nonzero integer (ties)",
        samples=_remainder_samples(torch.fmod),
    ),
    OpEntry(
        "xlogy",
        "arithmetic",
        binary_rule(XLogY, "xlogy"),
        functions=(torch.xlogy, torch.special.xlogy),
        methods=("xlogy", "xlogy_"),
        note="0 where x = 0; numbers as either operand",
        samples=_xlogy_samples(torch.xlogy),
    ),
    OpEntry(
        "xlog1py",
        "arithmetic",
        binary_rule(lambda: XLogY(log1p=True), "xlog1py"),
        functions=(torch.special.xlog1py,),
        note="x log(1 + y), 0 where x = 0",
        samples=_xlogy_samples(torch.special.xlog1py),
    ),
    OpEntry(
        "lerp",
        "arithmetic",
        lerp,
        functions=(torch.lerp,),
        methods=("lerp", "lerp_"),
        note="a number or a tensor weight (broadcast); torch's two-branch formula",
        samples=_lerp_samples,
    ),
    OpEntry(
        "addcmul",
        "arithmetic",
        addcmul,
        functions=(torch.addcmul,),
        methods=("addcmul", "addcmul_"),
        note="value; broadcast",
        samples=_addc_samples(torch.addcmul),
    ),
    OpEntry(
        "addcdiv",
        "arithmetic",
        addcdiv,
        functions=(torch.addcdiv,),
        methods=("addcdiv", "addcdiv_"),
        note="value; broadcast",
        samples=_addc_samples(torch.addcdiv),
    ),
]


def _logaddexp_samples(fn: Callable[..., Any]) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(23)
        x = 30 * torch.randn(3, 4, generator=g, dtype=torch.float64)
        y = 30 * torch.randn(4, generator=g, dtype=torch.float64)
        return [
            Sample("broadcast, large values", (x, y), fn=fn),
            Sample("a method", (x, x.flip(0)), fn=lambda x, y: getattr(x, fn.__name__)(y)),
        ]

    return samples


ROWS += [
    OpEntry(
        "logaddexp",
        "arithmetic",
        binary_rule(LogAddExp, "logaddexp"),
        functions=(torch.logaddexp,),
        methods=("logaddexp",),
        note="log(eˣ + eʸ), stable; broadcast",
        samples=_logaddexp_samples(torch.logaddexp),
    ),
    OpEntry(
        "logaddexp2",
        "arithmetic",
        binary_rule(lambda: LogAddExp(base2=True), "logaddexp2"),
        functions=(torch.logaddexp2,),
        methods=("logaddexp2",),
        note="log₂(2ˣ + 2ʸ)",
        samples=_logaddexp_samples(torch.logaddexp2),
    ),
]


def _fminmax_samples(fn: Callable[..., Any]) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(24)
        x, y = (
            torch.randn(3, 4, generator=g, dtype=torch.float64),
            torch.randn(4, generator=g, dtype=torch.float64),
        )
        return [
            Sample("broadcast", (x, y), fn=fn),
            Sample(
                "exact ties go to the first",
                (_ints(-1, 1, 3, 4), _ints(-1, 1, 3, 4, seed=9)),
                fn=fn,
            ),
        ]

    return samples


def _copysign_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(25)
    x, y = (
        torch.randn(3, 4, generator=g, dtype=torch.float64),
        torch.randn(4, generator=g, dtype=torch.float64),
    )
    return [
        Sample("broadcast", (x, y), fn=torch.copysign),
        Sample("a number", (x,), fn=lambda x: torch.copysign(x, -1.0) + x.copysign(2.0)),
    ]


ROWS += [
    OpEntry(
        "fmax",
        "arithmetic",
        extremum_rule(FMax),
        functions=(torch.fmax,),
        methods=("fmax",),
        note="a tie goes to the first operand (torch's)",
        samples=_fminmax_samples(torch.fmax),
    ),
    OpEntry(
        "fmin",
        "arithmetic",
        extremum_rule(FMin),
        functions=(torch.fmin,),
        methods=("fmin",),
        note="a tie goes to the first operand (torch's)",
        samples=_fminmax_samples(torch.fmin),
    ),
    OpEntry(
        "copysign",
        "arithmetic",
        binary_rule(CopySign, "copysign"),
        functions=(torch.copysign,),
        methods=("copysign", "copysign_"),
        note="a number or a tensor sign (no gradient)",
        samples=_copysign_samples,
    ),
    OpEntry(
        "nextafter",
        "arithmetic",
        binary_rule(NextAfter, "nextafter"),
        functions=(torch.nextafter,),
        methods=("nextafter", "nextafter_"),
        note="f′ = 1 in the first operand, 0 in the second (torch's)",
        samples=lambda: [Sample("broadcast", _pair(26), fn=torch.nextafter)],
    ),
    OpEntry(
        "frexp",
        "arithmetic",
        lambda input: Op(Frexp(), (tensor(input, "frexp"),), outputs=torch.return_types.frexp),
        functions=(torch.frexp,),
        methods=("frexp",),
        note="(mantissa, exponent); δ = δ_mantissa / 2^exponent",
        samples=lambda: [Sample("mantissa", _pair(27)[:1], fn=lambda x: torch.frexp(8 * x)[0])],
    ),
]


def fill(input: Any, value: Any) -> Op:
    """torch.fill(x, value) / x.fill_(value): value a number, or a 0-d tensor (its gradient
    the sum of δ)."""
    x = tensor(input, "fill")
    if isinstance(value, (Ref, Param)):
        return Op(Fill(), (x, value))
    return Op(Fill(number(value, "fill (value)")), (x,))


def zero_(input: Any) -> Op:
    return Op(Fill(0.0), (tensor(input, "zero_"),))


def _fill_samples() -> list[Sample]:
    x, v = _pair(28)
    return [
        Sample("a number", (x,), fn=lambda x: x * torch.fill(x, 2.5)),
        Sample("a 0-d tensor that carries gradient", (x,),
               fn=lambda x, v: torch.fill(x, v.exp()) * x, params={"v": v[0].clone()}),
        Sample("fill_ on a computed tensor", (x,), fn=lambda x: (2 * x).fill_(1.5) + x),
    ]  # fmt: skip


ROWS += [
    OpEntry(
        "fill",
        "arithmetic",
        fill,
        functions=(torch.fill,),
        methods=("fill_",),
        note="a number, or a 0-d tensor value (δ_value = Σ δ); the filled tensor gets 0",
        samples=_fill_samples,
    ),
    OpEntry(
        "zero_",
        "arithmetic",
        zero_,
        functions=(torch.zero_,),
        methods=("zero_",),
        note="the zeroed tensor gets 0",
        samples=lambda: [Sample("in place", _pair(29)[:1], fn=lambda x: (x * x).zero_() + x)],
    ),
]


def _pair(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(
        4, generator=g, dtype=torch.float64
    )


# --- reflected operators as Tensor methods (`2 / x` is x.__rtruediv__(2)) ---------------------


def rtruediv(input: Any, other: Any) -> Any:
    """x.__rtruediv__(c) = c / x."""
    return div(other, input)


def rpow(input: Any, other: Any) -> Any:
    """x.__rpow__(c) = c ** x."""
    return pow_(other, input)


def _reflected_samples() -> list[Sample]:
    x = _away_from_0(3, 4, seed=30)
    return [Sample("as the methods", (x,), fn=lambda x: x.__rtruediv__(2.0) + x.__rpow__(1.5))]


ROWS += [
    OpEntry(
        "rtruediv",
        "arithmetic",
        rtruediv,
        methods=("__rtruediv__", "__rdiv__"),
        note="c / x as x.__rtruediv__(c)",
        samples=_reflected_samples,
    ),
    OpEntry(
        "rpow",
        "arithmetic",
        rpow,
        methods=("__rpow__",),
        note="c ** x as x.__rpow__(c)",
        samples=_reflected_samples,
    ),
]
