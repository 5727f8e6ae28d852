"""The Activation record (f, f′ and where f has kinks) and the numerically stable
helpers the activations share (σ, softplus, warnings quieted where torch's answer is inf
or NaN).

The table of every activation, and the conventions at kinks, are in manual_bp.ops.activations.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from manual_bp.ops.base import Array, near


@dataclass(frozen=True)
class Activation:
    """An elementwise f with its derivative f′, both functions of the pre-activation z."""

    name: str
    f: Callable[[Array], Array]
    grad: Callable[[Array], Array]
    options: dict[str, Any] = field(default_factory=dict)
    #: f′ written from the output a = f(z) where torch's backward takes it from there
    #: (σ′ = a(1 − a), tanh′ = 1 − a², exp′ = a, √′ = 1/(2a)): as torch computes it.
    grad_from_output: Callable[[Array], Array] | None = None
    #: the entries of z within rounding distance of a point where f′ (or f) jumps, as a
    #: boolean mask (see manual_bp.ops.base.near); None where f is smooth.
    kink: Callable[[Array], Array] | None = None

    def __init__(
        self,
        name: str,
        f: Callable[[Array], Array],
        grad: Callable[[Array], Array],
        options: dict[str, Any] | None = None,
        grad_from_output: Callable[[Array], Array] | None = None,
        kink: Callable[[Array], Array] | None = None,
    ) -> None:
        # (frozen: the fields are set once, here, through __dict__, at half the cost of a
        # frozen dataclass's own object.__setattr__ per field; one is made per recorded call)
        self.__dict__.update(
            name=name,
            f=f,
            grad=grad,
            options={} if options is None else options,
            grad_from_output=grad_from_output,
            kink=kink,
        )

    def __call__(self, z: Array) -> Array:
        return self.f(z)

    def derivative(self, z: Array, a: Array) -> Array:
        """f′(z), from the output a = f(z) where that is cheaper."""
        return self.grad(z) if self.grad_from_output is None else self.grad_from_output(a)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.name}({opts})"


def _sigmoid(z: Array) -> Array:
    """σ(z) = 1/(1 + e^{-z}), formed from e^{-|z|} so that no exponent overflows."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(z: Array) -> Array:
    """log(1 + eᶻ) = max(z, 0) + log1p(e^{−|z|}): no overflow for any z."""
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def _quiet(fn: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """fn computing torch's inf/NaN (log 0, 1/0, √−1, e^{1000}) without a NumPy warning."""

    @functools.wraps(fn)
    def quiet(z: Array) -> Array:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return fn(z)

    return quiet


def _kinks(*points: float) -> Callable[[Array], Array]:
    """The kink mask of an f whose f′ (or f) jumps at `points`."""
    return lambda z: near(z, points)


def _number(value: Any, what: str) -> float:
    """An option as a finite float; ValueError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{what}: expected a finite number, got {value!r}")
    return float(value)
