"""Special functions NumPy lacks, vectorised and accurate to float64 round-off.

`erf` is needed by the exact GELU, Φ(z) = ½(1 + erf(z/√2)) = ½ erfc(−z/√2). NumPy has no
erf and manual_bp may use NumPy only, so it is written here once, in three ranges of a = |x|:

- a < ½: the Maclaurin series erf(x) = 2/√π · Σₙ (−1)ⁿ x^{2n+1} / (n! (2n+1)), 12 terms
  (the 13th is below 5·10⁻¹⁸ of the sum at a = ½), evaluated by Horner in x²; there
  erfc = 1 − erf ∈ (0.47, 1.53), so no digits cancel.
- ½ ≤ a < 6: erfc(a) = e^{-a²} · erfcx(a), where the scaled function erfcx(a) = e^{a²} erfc(a)
  is smooth and slowly varying (0.62 → 0.093). It is tabulated as one polynomial of degree 8
  per interval of width ⅛ (44 intervals), in t = (a − centre)/⅛ ∈ [−½, ½], so an element's
  interval is ⌊8(a − ½)⌋ and t is formed exactly. The coefficients are not typed in: they
  are fitted when the module is imported (~10 ms), by least squares in relative error on 18
  Chebyshev points per interval, to erfcx = math.erfc(a) · math.exp(a²) from the standard library
  (the points are rounded to multiples of 2⁻²⁰ so that a² is exact and both factors are
  correctly rounded to within an ulp), with two steps of iterative refinement so that the
  fit reaches round-off rather than the least-squares solver's error.
- a ≥ 6: erfcx(a) = 1/√π · 1/(a + ½/(a + 1/(a + 3/2/(a + …)))), the Laplace continued
  fraction, evaluated bottom-up from depth 14; at a = 6 its truncation error is ~2·10⁻¹⁶
  and it falls as a grows. a is clipped at 28, where erfc has long underflowed to 0
  (erfc(27.3) < 5·10⁻³²⁴), so no square overflows and ±inf need no special case.

e^{-a²} is formed as e^{-s} (1 − r) with a² = s + r exactly (Dekker's product), so the
rounding of a² — which the exponent would amplify into a relative error of a²·ε — is
corrected. erfc(−a) = 2 − erfc(a), erf(x) = sign(x) (1 − erfc(|x|)) for a ≥ ½. For Φ the
exponent is formed from z itself, e^{-z²/2}, not from the rounded z/√2, so Φ keeps its
relative accuracy deep into the left tail. NaN propagates through every range.

Measured against mpmath: erf's absolute error ≤ 2.3·10⁻¹⁶, erfc's and Φ's relative error
≤ 7·10⁻¹⁶ over the whole normal range. Speed: elements are sent to their range by index
arrays (several times faster than boolean masks), and the |x| ≥ ½ path runs in blocks of
8192 elements, which keeps its temporaries small enough for the allocator to reuse rather
than map and page-fault afresh on every call (at 32k elements that costs more than the
arithmetic).
"""

from __future__ import annotations

import math

import numpy as np

_SMALL = 0.5  # a < _SMALL: Maclaurin series of erf
_TABLE_END = 6.0  # _SMALL ≤ a < _TABLE_END: tabulated erfcx
_STEP = 0.125  # width of a table interval (a power of 2: t is formed exactly)
_DEGREE = 8  # degree of each interval's polynomial
_FRACTION_DEPTH = 14  # a ≥ _TABLE_END: depth of the continued fraction
_CLIP = 28.0  # erfc(a) == 0.0 in float64 for a ≥ 27.3
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_BLOCK = 8192  # elements per block of the |x| ≥ _SMALL path
_SPLITTER = 134217729.0  # 2²⁷ + 1, Veltkamp's splitting constant

# 2/√π (−1)ⁿ / (n! (2n+1)), n = 0 … 11: erf(x) = x Σₙ cₙ x^{2n}
_MACLAURIN = tuple(
    2.0 / math.sqrt(math.pi) * (-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(12)
)


def _horner(coefficients: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Σₖ coefficients[k] tᵏ; coefficients[k] is a number or an array shaped like t."""
    p = t * coefficients[-1]
    p += coefficients[-2]
    for c in coefficients[-3::-1]:
        p *= t
        p += c
    return p


def _fit_erfcx_table() -> np.ndarray:
    """table[k, i]: coefficient of tᵏ for erfcx on [_SMALL + i·_STEP, _SMALL + (i+1)·_STEP)."""
    count = round((_TABLE_END - _SMALL) / _STEP)
    points = 2 * (_DEGREE + 1)
    cosines = np.cos((np.arange(points) + 0.5) * np.pi / points)
    table = np.empty((_DEGREE + 1, count))
    for i in range(count):
        centre = _SMALL + (i + 0.5) * _STEP
        a = np.round((centre + 0.5 * _STEP * cosines) * 2.0**20) / 2.0**20  # a² is exact
        t = (a - centre) / _STEP  # exact, as at run time
        y = np.array([math.erfc(v) * math.exp(v * v) for v in a.tolist()])
        design = np.vander(t, _DEGREE + 1, increasing=True) / y[:, None]  # relative error
        coefficients = np.linalg.lstsq(design, np.ones(points), rcond=None)[0]
        for _ in range(2):  # iterative refinement: the residual is formed as at run time
            residual = 1.0 - _horner(coefficients, t) / y
            coefficients += np.linalg.lstsq(design, residual, rcond=None)[0]
        table[:, i] = coefficients
    return table


_ERFCX_TABLE = _fit_erfcx_table()


def _erf_maclaurin(x: np.ndarray) -> np.ndarray:
    """erf(x) for |x| < _SMALL."""
    return x * _horner(_MACLAURIN, x * x)  # type: ignore[arg-type]


def _erfcx_table(a: np.ndarray) -> np.ndarray:
    """erfcx(a) = e^{a²} erfc(a) for _SMALL ≤ a < _TABLE_END."""
    t = a - _SMALL
    t *= 1.0 / _STEP
    i = t.astype(np.intp)  # t ≥ 0: truncation is the floor
    t -= i
    t -= 0.5
    p = np.take(_ERFCX_TABLE[-1], i)
    coefficient = np.empty_like(p)
    for row in _ERFCX_TABLE[-2::-1]:
        p *= t
        p += np.take(row, i, out=coefficient, mode="clip")  # "clip": out is not buffered
    return p


def _erfcx_fraction(a: np.ndarray) -> np.ndarray:
    """erfcx(a) for a ≥ _TABLE_END by the continued fraction a + (k/2)/(a + ((k+1)/2)/(…))."""
    tail = a.copy()
    for k in range(_FRACTION_DEPTH, 0, -1):
        np.divide(k / 2.0, tail, out=tail)
        tail += a
    return np.divide(_INV_SQRT_PI, tail, out=tail)


def _square(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(s, r) with s = fl(a²) and s + r = a² exactly (Dekker), for |a| well below 2⁹⁰⁰."""
    high = a * _SPLITTER
    low = high - a
    high -= low  # high = c − (c − a), c = (2²⁷ + 1) a: the upper 26 bits of a
    np.subtract(a, high, out=low)
    s = a * a
    r = high * high
    r -= s
    high *= low
    high *= 2.0
    r += high
    low *= low
    r += low
    return s, r


def _erfc_upper(a: np.ndarray, s: np.ndarray, r: np.ndarray) -> np.ndarray:
    """erfc(a) for _SMALL ≤ a ≤ _CLIP (or NaN), given a² = s + r; the a² may come from a
    more accurate source than a itself (Φ passes z²/2). s and r are overwritten."""
    near = a < _TABLE_END
    if near.all():
        scaled = _erfcx_table(a)
    else:
        scaled = np.empty_like(a)
        ins, outs = _split(near)
        scaled[ins] = _erfcx_table(a[ins])
        scaled[outs] = _erfcx_fraction(a[outs])
    np.subtract(1.0, r, out=r)  # e^{-r} to first order: |r| ≤ ½ ulp(s)
    scaled *= r
    np.negative(s, out=s)
    scaled *= np.exp(s, out=s)  # last, so that a subnormal result is rounded once
    return scaled


def _split(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices where mask holds and where it does not (index arrays gather and scatter
    several times faster than boolean masks)."""
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def _fill_upper(out: np.ndarray, flat: np.ndarray, big: np.ndarray, kind: str) -> None:
    """out[big] = erfc, erf or Φ of flat[big], where |x| ≥ _SMALL, in blocks of _BLOCK
    elements: the temporaries stay small enough to be reused by the allocator instead of
    being mapped afresh (page faults cost more than the arithmetic at this size)."""
    for start in range(0, big.size, _BLOCK):
        index = big[start : start + _BLOCK]
        v = flat[index]
        if kind == "normal_cdf":  # x = −z/√2; e^{-x²} from z: s + r = z²/2
            a = np.abs(v)
            s, r = _square(np.minimum(a, _CLIP * math.sqrt(2.0)))
            s *= 0.5
            r *= 0.5
            a *= _INV_SQRT_2
            np.minimum(a, _CLIP, out=a)
        else:
            a = np.minimum(np.abs(v), _CLIP)
            s, r = _square(a)
        upper = _erfc_upper(a, s, r)
        if kind == "erfc":
            out[index] = np.where(v > 0, upper, 2.0 - upper)
        elif kind == "erf":
            out[index] = np.copysign(np.subtract(1.0, upper, out=upper), v)
        else:
            upper *= 0.5
            out[index] = np.where(v < 0, upper, 1.0 - upper)


def erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function, erfc(x) = 1 − erf(x), accurate in both tails."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.ravel()
    small, big = _split(np.abs(flat) < _SMALL)
    out = np.empty_like(flat)
    out[small] = 1.0 - _erf_maclaurin(flat[small])
    _fill_upper(out, flat, big, "erfc")
    return out.reshape(x.shape)


def erf(x: np.ndarray) -> np.ndarray:
    """Error function, erf(x) = 2/√π ∫₀ˣ e^{-t²} dt."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.ravel()
    small, big = _split(np.abs(flat) < _SMALL)
    out = np.empty_like(flat)
    out[small] = _erf_maclaurin(flat[small])
    _fill_upper(out, flat, big, "erf")
    return out.reshape(x.shape)


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """Φ(z) = ½ erfc(−z/√2), written with erfc so that the left tail keeps its digits; the
    Gaussian factor is e^{-z²/2} from z itself, not from the rounded z/√2."""
    z = np.asarray(z, dtype=np.float64)
    flat = z.ravel()
    small, big = _split(np.abs(flat) < _SMALL * math.sqrt(2.0))
    out = np.empty_like(flat)
    out[small] = 0.5 + 0.5 * _erf_maclaurin(flat[small] * _INV_SQRT_2)
    _fill_upper(out, flat, big, "normal_cdf")
    return out.reshape(z.shape)


def normal_pdf(z: np.ndarray) -> np.ndarray:
    """φ(z) = e^{-z²/2} / √(2π)."""
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
