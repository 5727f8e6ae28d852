"""Gaussian expectations E[g(√q z)], z ~ N(0, 1), for the mean-field maps
(experiments.theory.meanfield): Gauss–Hermite where g is smooth on the scale √q, else
Gauss–Legendre panels that end at g's kinks and at the scales of g and of the Gaussian.
The rules and their accuracy are described in meanfield's docstring."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np

Array = np.ndarray


_HERMITE_NODES = 96
_HERMITE_MAX_SCALE = 0.6
HERMITE_2D_NODES = 160
_LEGENDRE_NODES = 24
#: Gauss–Legendre nodes per panel in the nested pair quadrature (kinked φ)
_PAIR_LEGENDRE_NODES = 16
_Z_MAX = 12.0
#: q beyond this is ∞ for float64 purposes; χ of every activation here has a limit there.
Q_MAX = 1e300


# --- Gaussian expectations ------------------------------------------------------------


@cache
def hermite(n: int = _HERMITE_NODES) -> tuple[Array, Array]:
    x, w = np.polynomial.hermite.hermgauss(n)
    return x * math.sqrt(2.0), w / math.sqrt(math.pi)  # ∫ g(z) φ(z) dz ≈ Σ w g(x)


@cache
def legendre(order: int = _LEGENDRE_NODES) -> tuple[Array, Array]:
    return np.polynomial.legendre.leggauss(order)


def panel_nodes(
    scale: float, kinks: tuple[float, ...], order: int = _LEGENDRE_NODES
) -> tuple[Array, Array]:
    """Nodes u and weights for ∫ g(u) N(u; 0, scale²) du over |u| ≤ 12·scale.

    Panels end at the kinks and at ±2ᵏ (k = −3…6: the activation's own scale) and at
    ±scale·2⁻ʲ (j = 0…10: the Gaussian's); beyond |u| = 64 every activation here is
    linear or constant to round-off, so a panel there only has to follow the Gaussian.
    """
    u_max = _Z_MAX * scale
    own = 2.0 ** np.arange(-3, 7)
    gaussian = scale * 2.0 ** -np.arange(0, 11)
    ends = np.concatenate([own, gaussian, [u_max]])
    cuts = np.concatenate([-ends, [0.0], ends, [k for k in kinks if abs(k) < u_max]])
    cuts = np.unique(cuts[np.abs(cuts) <= u_max])
    x, w = legendre(order)
    lo, hi = cuts[:-1, None], cuts[1:, None]
    u = (0.5 * (hi - lo) * x + 0.5 * (hi + lo)).ravel()
    weight = (0.5 * (hi - lo) * w).ravel()
    density = np.exp(-0.5 * (u / scale) ** 2) / (scale * math.sqrt(2.0 * math.pi))
    return u, weight * density


def nodes(q: float, kinks: tuple[float, ...]) -> tuple[Array, Array]:
    """Nodes u = √q z and weights with E[g(√q z)] ≈ Σ w g(u)."""
    if not q >= 0:
        raise ValueError(f"the variance q must be non-negative, got {q}")
    scale = math.sqrt(min(q, Q_MAX))
    if scale == 0.0:
        return np.zeros(1), np.ones(1)
    if not kinks and scale <= _HERMITE_MAX_SCALE:
        z, w = hermite()
        return scale * z, w
    return panel_nodes(scale, kinks)


def gaussian_expectation(
    g: Callable[[Array], Array], q: float, kinks: tuple[float, ...] = ()
) -> float:
    """E[g(√q z)], z ~ N(0, 1): Gauss–Hermite when g is smooth on the scale √q, else panels."""
    u, w = nodes(q, kinks)
    return float(w @ g(u))


#: panel ends in units of the Gaussian's scale, for the nested pair quadrature
_Z_CUTS = np.array([0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.5, 8.5, _Z_MAX])


def gauss_panels(scale: float, kinks: tuple[float, ...]) -> tuple[Array, Array]:
    """Nodes and weights for ∫ g(u) N(u; 0, scale²) du over |u| ≤ 12·scale: Gauss–Legendre
    panels that end at fixed multiples of the scale and at the kinks."""
    u_max = _Z_MAX * scale
    cuts = np.concatenate([-scale * _Z_CUTS, [0.0], scale * _Z_CUTS,
                           [k for k in kinks if abs(k) < u_max]])  # fmt: skip
    cuts = np.unique(cuts)
    x, w = legendre(_PAIR_LEGENDRE_NODES)
    lo, hi = cuts[:-1, None], cuts[1:, None]
    u = (0.5 * (hi - lo) * x + 0.5 * (hi + lo)).ravel()
    weight = (0.5 * (hi - lo) * w).ravel()
    return u, weight * np.exp(-0.5 * (u / scale) ** 2) / (scale * math.sqrt(2.0 * math.pi))
