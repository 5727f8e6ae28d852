"""Elementwise arithmetic of tensors and constants, with broadcasting.

    Add, Sub, Mul            a + b, a − b, a ⊙ b
    Scale, Div, AddConstant  c·a, a / c, a + c           (c a number)
    DivTensor, RDiv          a / b (rounding modes too), c / b
    Pow, RPow                a^b, c^b                    (a^c is the activation "pow")
    Maximum, Minimum         max(a, b), min(a, b)        (δ split in halves at a tie)
    Where, MaskedFill        cond ? x : y, mask ? value : x   (a constant condition)
    Atan2, Hypot, Remainder, Fmod, XLogY, Lerp, AddCMul, LogAddExp, FMax, FMin, CopySign,
    NextAfter, Frexp, Fill   two- and three-operand elementwise functions (and frexp, fill)

Each is a Layer (see manual_bp.ops.base) with its forward and backward side by side. Layers
with several inputs have `n_inputs` > 1 and return a tuple of δ_prev, one per input, in
the order the inputs were given. Constructors take plain numbers and tuples, as a torch.fx
graph's node arguments are.

Broadcasting follows NumPy's rules, which are torch's. Where an input was broadcast
along an axis, its gradient is δ summed over that axis: `unbroadcast` (in `core`).

The family lives in two modules, re-exported here: `core` (broadcasting, +, −, ⊙, ÷, powers,
maxima, where) and `binary` (the two- and three-operand elementwise functions).
"""

from __future__ import annotations

from manual_bp.ops.arithmetic.binary import (
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
from manual_bp.ops.arithmetic.core import (
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
    _broadcast_shape,  # noqa: F401
    unbroadcast,
)

__all__ = [
    "Add",
    "AddCMul",
    "AddConstant",
    "Atan2",
    "CopySign",
    "Fill",
    "Fill",
    "Frexp",
    "NextAfter",
    "Div",
    "DivTensor",
    "FMax",
    "FMin",
    "Fmod",
    "Hypot",
    "Lerp",
    "LogAddExp",
    "MaskedFill",
    "Maximum",
    "Minimum",
    "Mul",
    "Pow",
    "RDiv",
    "RPow",
    "Remainder",
    "Scale",
    "Sub",
    "Where",
    "XLogY",
    "unbroadcast",
]
