"""Elementwise functions as a table: name → (f, f′), each f′ written from its formula.

Every entry is built by a factory that takes the function's options as keywords
(`get_activation("leaky_relu", negative_slope=0.2)`), so that the network's backward can
write the δ recursion once for all of them:

    δ^(l) = f′(z^(l)) ⊙ (W^(l+1))ᵀ δ^(l+1)          →   delta = act.grad(z) * dL_da

The table holds the activations (relu … rrelu) and the elementwise math of torch (exp, log,
sqrt, pow with a number, clamp, abs, round, …): both are one f and its f′. PReLU, whose
slope is a learned parameter, is a layer (`prelu`).

All functions are float64 and elementwise. The activations are stable for |z| up to 1e3 and
beyond: no exp of a large positive number is ever formed, so no overflow warning is raised.
The math functions follow torch where torch's answer is inf or NaN (log 0 = −inf, √0′ = inf,
log(−1) = NaN, e^{1000} = inf, 0^{−1} = inf) and compute it without a NumPy warning; the
oracle's finite checks then refuse the model, saying where.

Conventions at kinks (the subgradient torch's backward takes; each one is tested against
torch). torch's formulas are in tools/autograd/derivatives.yaml (abs, clamp, sign, round,
pow, sqrt, …) and the `*_backward` kernels of ATen, written out in Python in
torch/_decomp/decompositions.py (hardswish_backward, hardsigmoid_backward, elu_backward,
threshold_backward, leaky_relu_backward, rrelu_with_noise_backward, …):

| f            | kink (f′ or f jumps)  | f′ there       | torch's rule                        |
|--------------|-----------------------|----------------|-------------------------------------|
| relu         | 0                     | 0              | threshold_backward: z ≤ 0 ? 0 : 1   |
| leaky_relu   | 0                     | slope          | z > 0 ? 1 : slope                   |
| rrelu (eval) | 0                     | (l + u)/2      | leaky_relu, slope (lower + upper)/2 |
| elu (α ≠ 1)  | 0                     | α              | elu_backward: z ≤ 0 ? α eᶻ : 1      |
| selu         | 0                     | α·scale        | z ≤ 0 ? α·scale·eᶻ : scale          |
| celu         | none (C¹: f′(0±) = 1) | 1              | elu_backward, input_scale 1/α       |
| hardtanh     | min, max              | 0              | z ≤ min or z ≥ max ? 0 : 1          |
| relu6        | 0, 6                  | 0              | hardtanh(0, 6)                      |
| clamp        | min, max              | 1              | clamp_backward: min ≤ z ≤ max       |
| hardsigmoid  | −3, 3                 | 0              | −3 < z < 3 ? 1/6 (float32) : 0      |
| hardswish    | −3, 3                 | 0 (−3), 1 (3)  | z ≤ −3 ? 0 : (z < 3 ? z/3 + ½ : 1)  |
| softshrink   | ±λ                    | 0              | z > λ or z < −λ ? 1 : 0             |
| hardshrink   | ±λ (f jumps)          | 0              | −λ ≤ z ≤ λ ? 0 : 1                  |
| threshold    | t (f jumps)           | 0              | threshold_backward: z ≤ t ? 0 : 1   |
| softplus     | βz = threshold        | σ(βz)          | βz > threshold ? 1 : σ(βz)          |
| abs          | 0                     | 0              | grad · sgn(z)                       |
| sign         | 0 (f jumps)           | 0              | zeros_like                          |
| round        | k + ½ (f jumps)       | 0              | zeros_like; halves to even          |
| floor, ceil  | integers (f jumps)    | 0              | zeros_like                          |
| trunc        | integers ≠ 0          | 0              | zeros_like                          |
| pow(z, 0)    | none                  | 0              | pow_backward: e == 0 ? 0 : e·z^{e−1} |

clamp with min > max is max everywhere with f′ = 0, as torch's; hardshrink with λ < 0 is the
identity, as torch's.

`kink(z)` names the entries within rounding distance (TIE_RTOL, see manual_bp.ops.base.near)
of these points: where float64 rounding can decide which side torch and NumPy take.

The family lives in five modules, re-exported here with the table:

| module        | what lives there                                                          |
|---------------|---------------------------------------------------------------------------|
| `core`        | the Activation record (f, f′, kinks) and the stable σ, softplus it builds on |
| `neural`      | the activations: relu … rrelu, gelu, silu, mish, the hard and shrink ones |
| `elementwise` | elementwise math: exp, log, sqrt, pow with a number, abs, clamp, rounding |
| `special`     | trigonometric, hyperbolic and special functions (erf…, gamma…, Bessel)   |
| `prelu`       | PReLU, whose slope is a learned parameter                                 |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from manual_bp.ops.activations.core import (
    Activation,
    _sigmoid,  # noqa: F401
)
from manual_bp.ops.activations.elementwise import (
    abs_,
    angle,
    ceil,
    clamp,
    cos,
    erf,
    exp,
    expm1,
    floor,
    log,
    log1p,
    log2,
    log10,
    pow_,
    reciprocal,
    round_,
    rsqrt,
    sign,
    sin,
    sqrt,
    square,
    trunc,
)
from manual_bp.ops.activations.neural import (
    celu,
    elu,
    gelu,
    hardshrink,
    hardsigmoid,
    hardswish,
    hardtanh,
    identity,
    leaky_relu,
    logsigmoid,
    mish,
    relu,
    relu6,
    rrelu,
    selu,
    sigmoid,
    silu,
    softplus,
    softshrink,
    softsign,
    special,
    tanh,
    tanhshrink,
    threshold,
)
from manual_bp.ops.activations.prelu import PReLU
from manual_bp.ops.activations.special import (
    acos,
    acosh,
    asin,
    asinh,
    atan,
    atanh,
    cosh,
    digamma,
    entr,
    erfc,
    erfcx,
    erfinv,
    exp2,
    frac,
    i0,
    i0e,
    i1,
    i1e,
    lgamma,
    log_ndtr,
    logit,
    mvlgamma,
    nan_to_num,
    ndtr,
    ndtri,
    polygamma,
    sinc,
    sinh,
    tan,
)

ACTIVATIONS: dict[str, Callable[..., Activation]] = {
    # activations
    "identity": identity,
    "linear": identity,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "rrelu": rrelu,
    "elu": elu,
    "selu": selu,
    "celu": celu,
    "gelu": gelu,
    "silu": silu,
    "mish": mish,
    "softplus": softplus,
    "logsigmoid": logsigmoid,
    "softsign": softsign,
    "tanhshrink": tanhshrink,
    "hardtanh": hardtanh,
    "relu6": relu6,
    "hardsigmoid": hardsigmoid,
    "hardswish": hardswish,
    "softshrink": softshrink,
    "hardshrink": hardshrink,
    "threshold": threshold,
    # elementwise math
    "exp": exp,
    "expm1": expm1,
    "erf": erf,
    "log": log,
    "log1p": log1p,
    "log2": log2,
    "log10": log10,
    "sqrt": sqrt,
    "rsqrt": rsqrt,
    "reciprocal": reciprocal,
    "square": square,
    "pow": pow_,
    "abs": abs_,
    "sin": sin,
    "cos": cos,
    "clamp": clamp,
    "sign": sign,
    "angle": angle,
    "round": round_,
    "floor": floor,
    "ceil": ceil,
    "trunc": trunc,
    "tan": tan,
    "asin": asin,
    "acos": acos,
    "atan": atan,
    "sinh": sinh,
    "cosh": cosh,
    "asinh": asinh,
    "acosh": acosh,
    "atanh": atanh,
    "exp2": exp2,
    "erfc": erfc,
    "erfinv": erfinv,
    "lgamma": lgamma,
    "digamma": digamma,
    "polygamma": polygamma,
    "mvlgamma": mvlgamma,
    "i0": i0,
    "i0e": i0e,
    "i1": i1,
    "i1e": i1e,
    "logit": logit,
    "sinc": sinc,
    "frac": frac,
    "ndtr": ndtr,
    "ndtri": ndtri,
    "log_ndtr": log_ndtr,
    "erfcx": erfcx,
    "entr": entr,
    "nan_to_num": nan_to_num,
}

IDENTITY = identity()


def get_activation(name: str, **options: Any) -> Activation:
    """The activation called `name`, built with `options`; unknown names list the known ones."""
    try:
        factory = ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; known activations: {', '.join(sorted(ACTIVATIONS))}"
        ) from None
    return factory(**options)


__all__ = [
    "ACTIVATIONS",
    "Activation",
    "IDENTITY",
    "PReLU",
    "abs_",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "ceil",
    "celu",
    "clamp",
    "cos",
    "cosh",
    "digamma",
    "elu",
    "entr",
    "erf",
    "erfc",
    "erfcx",
    "erfinv",
    "exp",
    "exp2",
    "expm1",
    "floor",
    "frac",
    "gelu",
    "get_activation",
    "hardshrink",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "i0",
    "i0e",
    "i1",
    "i1e",
    "identity",
    "leaky_relu",
    "lgamma",
    "log",
    "log10",
    "log1p",
    "log2",
    "log_ndtr",
    "logit",
    "logsigmoid",
    "mish",
    "mvlgamma",
    "nan_to_num",
    "ndtr",
    "ndtri",
    "polygamma",
    "pow_",
    "reciprocal",
    "relu",
    "relu6",
    "round_",
    "rrelu",
    "rsqrt",
    "selu",
    "sigmoid",
    "sign",
    "angle",
    "silu",
    "sin",
    "sinc",
    "sinh",
    "softplus",
    "softshrink",
    "softsign",
    "special",
    "sqrt",
    "square",
    "tan",
    "tanh",
    "tanhshrink",
    "threshold",
    "trunc",
]
