"""Elementwise arithmetic (manual_bp.ops.arithmetic): +, −, ⊙, /, //, ** with broadcasting,
maximum and minimum, where and masked_fill; a gradient is reduced back to each operand's
shape by the one shared `unbroadcast`.

Operands are tensors computed from the input (Ref), the model's own tensors used as
operands (Param: `x + self.pos_embedding`), or Python numbers. On plain numbers (sizes)
the operators compute the number itself (`x.size(1) // 2`).

The family's rows live in two modules: `tensors` (the operators +, −, ⊙, /, //, **, maximum
and minimum, where, masked_fill) and `functions` (the two- and three-operand functions and
the reflected operators); ROWS joins them in the order docs/ops.md lists them. Every rule is
re-exported here.
"""

from __future__ import annotations

from torch_ref.registry.arithmetic import functions, tensors
from torch_ref.registry.arithmetic.functions import (
    addcdiv,
    addcmul,
    binary_rule,
    lerp,
    rpow,
    rtruediv,
)
from torch_ref.registry.arithmetic.tensors import (
    add,
    div,
    extremum_rule,
    floordiv,
    masked_fill,
    mul,
    neg,
    plain_only,
    pow_,
    sub,
    where,
    where_method,
)

#: the rows in the order docs/ops.md lists them: the operators, then the functions
ROWS = [*tensors.ROWS, *functions.ROWS]

__all__ = [
    "add",
    "addcdiv",
    "addcmul",
    "binary_rule",
    "div",
    "extremum_rule",
    "floordiv",
    "lerp",
    "masked_fill",
    "mul",
    "neg",
    "plain_only",
    "pow_",
    "rpow",
    "rtruediv",
    "sub",
    "where",
    "where_method",
]
