"""Special functions NumPy lacks, vectorised and accurate to float64 round-off.

`erf` is needed by the exact GELU, Φ(z) = ½(1 + erf(z/√2)). NumPy has no erf and
manual_bp may use NumPy only, so it is written here once:

- |x| < 2.5: erf(x) = 2/√π · e^{-x²} · Σₙ 2ⁿ x^{2n+1} / (1·3·…·(2n+1)), a series of
  positive terms (no cancellation), 60 terms reach round-off;
- |x| ≥ 2.5: erfc(x) = e^{-x²}/√π · 1/(x + ½/(x + 1/(x + 3/2/(x + …)))), the Laplace
  continued fraction, evaluated bottom-up with a fixed depth, which keeps erfc's
  relative accuracy in the tails where 1 − erf would lose it.
"""

from __future__ import annotations

import numpy as np

_SERIES_TERMS = 60
_FRACTION_DEPTH = 80
_SPLIT = 2.5


def _erf_series(x: np.ndarray) -> np.ndarray:
    term = x.copy()
    total = x.copy()
    x2 = x * x
    for n in range(1, _SERIES_TERMS):
        term = term * (2.0 * x2) / (2 * n + 1)
        total += term
    return 2.0 / np.sqrt(np.pi) * np.exp(-x2) * total


def _erfc_fraction(x: np.ndarray) -> np.ndarray:
    """erfc(x) for x ≥ _SPLIT by the continued fraction x + (k/2)/(x + ((k+1)/2)/(…))."""
    tail = x.copy()
    for k in range(_FRACTION_DEPTH, 0, -1):
        tail = x + (k / 2.0) / tail
    return np.exp(-x * x) / np.sqrt(np.pi) / tail


def erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function, erfc(x) = 1 − erf(x), accurate in both tails."""
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    small = ax < _SPLIT
    out = np.empty_like(x)
    out[small] = 1.0 - _erf_series(x[small])
    big = ~small
    tail = _erfc_fraction(ax[big])
    out[big] = np.where(x[big] > 0, tail, 2.0 - tail)
    return out


def erf(x: np.ndarray) -> np.ndarray:
    """Error function, erf(x) = 2/√π ∫₀ˣ e^{-t²} dt."""
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    small = ax < _SPLIT
    out = np.empty_like(x)
    out[small] = _erf_series(x[small])
    big = ~small
    out[big] = np.sign(x[big]) * (1.0 - _erfc_fraction(ax[big]))
    return out


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """Φ(z) = ½ erfc(−z/√2), written with erfc so that the left tail keeps its digits."""
    return 0.5 * erfc(-np.asarray(z, dtype=np.float64) / np.sqrt(2.0))


def normal_pdf(z: np.ndarray) -> np.ndarray:
    """φ(z) = e^{-z²/2} / √(2π)."""
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
