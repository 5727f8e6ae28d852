"""The density of the squared singular values of a deep net's input–output Jacobian, from free
probability (Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning
through dynamical isometry", arXiv:1711.04735; 2018, "The emergence of spectral universality
in deep networks", arXiv:1802.09979).

J = W_L D_{L−1} ⋯ W_1 D_0 with D_l = diag φ′(h^(l)). At the variance fixed point every layer
is alike, and for free factors S-transforms multiply:

    S_{JJᵀ}(m) = (S_{WWᵀ}(m) · S_{D²}(m))^L,
    S_{WWᵀ}(m) = 1/σ_w² (orthogonal),   1/(σ_w² (1 + m)) (Gaussian: Marchenko–Pastur),
    S_{D²}(m)  = t (1 + m)/m  where  M_{D²}(t) = E[t d / (1 − t d)] = m,  d = φ′(√q z)².

With M(w) = Σ_k E[λ^k] w^k the moment transform, M⁻¹(m) = S(m) m/(1 + m), so at a point
x + iε the Jacobian's m solves

    (S_{WWᵀ}(m) S_{D²}(m))^L · m/(1 + m) = 1/(x + iε),

and G(x + iε) = (1 + m)/(x + iε), density ρ(x) = −Im G/π. The solve is Newton's method in the
complex plane, continued down a grid of x from above the spectrum's edge (where m ≈ E[λ]/x);
t(m) is an inner Newton solve over Gauss–Hermite nodes of d (exact for relu's d ∈ {0, 1},
and d ≡ 1 for a linear net, whose Gaussian product is the Fuss–Catalan law).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from experiments.theory import meanfield

Array = np.ndarray

#: relative imaginary part of x + iε: smooths the density by a Lorentzian of that width
ETA = 1e-4
#: the continuation path's ratio between neighbouring points
STEP = 0.01
_NODES = 2001
_WEIGHT_S = {
    "gaussian": lambda m, s2: 1.0 / (s2 * (1.0 + m)),
    "orthogonal": lambda m, s2: 1.0 / s2 + 0.0 * m,
}


def d_distribution(activation: str, q: float) -> tuple[Array, Array]:
    """The values and probabilities of d = φ′(√q z)², z ~ N(0, 1): exact two atoms for relu,
    one for linear, a dense grid of z otherwise (φ′ must be even: tanh, erf-like)."""
    if activation == "linear":
        return np.ones(1), np.ones(1)
    if activation == "relu":
        return np.array([0.0, 1.0]), np.array([0.5, 0.5])
    # NOTE: a dense grid, not Gauss–Hermite: M_{D²}(t) is needed with 1/t close to the
    # support of d, where a few nodes would show as poles; z ≥ 0 since φ′² is even here
    z = np.linspace(0.0, 10.0, _NODES)
    w = np.exp(-0.5 * z**2)
    w[0] *= 0.5
    act = meanfield.as_activation(activation)
    return act.grad(math.sqrt(q) * z) ** 2, w / w.sum()


@dataclass(frozen=True)
class Spectrum:
    """One stack of `depth` alike layers: weights 'gaussian' or 'orthogonal' of variance
    σ_w²/N, and the distribution (d, p) of φ′² at the fixed point."""

    weights: str
    sigma_w2: float
    depth: int
    d: Array
    p: Array

    def __post_init__(self) -> None:
        if self.weights not in _WEIGHT_S:
            raise ValueError(f"unknown weights {self.weights!r}; known: {', '.join(_WEIGHT_S)}")
        if self.depth < 1 or self.sigma_w2 <= 0:
            raise ValueError(f"need depth ≥ 1 and σ_w² > 0, got {self.depth}, {self.sigma_w2}")

    @property
    def zero_mass(self) -> float:
        """The atom at λ = 0: the units with d = 0 (relu's dead half) zero those directions."""
        return float(self.p[self.d == 0].sum())

    def mean(self) -> float:
        """E[λ] = (σ_w² E[d])^L."""
        return float((self.sigma_w2 * (self.p @ self.d)) ** self.depth)

    def normalised_variance(self) -> float:
        """Var λ / E[λ]² = L (E[d²]/E[d]² − 1 − s1), s1 = −1 Gaussian, 0 orthogonal."""
        mu1, mu2 = self.p @ self.d, self.p @ self.d**2
        return self.depth * (mu2 / mu1**2 - 1.0 + (self.weights == "gaussian"))

    def _t(self, m: complex, t: complex) -> complex:
        """t with M_{D²}(t) = m, by Newton from t; relu's two atoms in closed form."""
        live = self.d > 0
        d, p = self.d[live], self.p[live]
        if len(d) == 1:
            return m / ((p[0] + m) * d[0])  # p t d/(1 − t d) = m
        for _ in range(30):
            u = 1.0 / (1.0 - t * d)
            f = p @ (t * d * u) - m
            step = f / (p @ (d * u * u))
            t -= step
            if abs(step) <= 1e-14 * abs(t):
                break
        return t

    def _equation(self, m: complex, t: complex, x: complex) -> tuple[complex, complex]:
        t = self._t(m, t)
        s = _WEIGHT_S[self.weights](m, self.sigma_w2) * t * (1.0 + m) / m
        return s**self.depth * m / (1.0 + m) - 1.0 / x, t

    def _newton(self, m: complex, t: complex, x: complex) -> tuple[complex, complex, bool]:
        """The root m of `_equation` at x by Newton's method from (m, t); ok = converged."""
        with np.errstate(all="ignore"):
            for _ in range(40):
                f, t = self._equation(m, t, x)
                h = 1e-7 * abs(m)
                f2, _ = self._equation(m + h, t, x)
                step = f * h / (f2 - f)
                if not np.isfinite(step):
                    return m, t, False
                m -= step
                if abs(step) <= 1e-11 * abs(m):
                    return m, t, bool(np.isfinite(m) and np.isfinite(t))
        return m, t, False

    def _follow(self, m: complex, t: complex, x0: float, x1: float, depth: int = 0):
        """(m, t) at x1, continued from the root at x0: halving the step where Newton fails."""
        new = self._newton(m, t, x1 * (1 + 1j * ETA))
        if new[2]:
            return new[:2]
        if depth > 30:
            raise ArithmeticError(f"no root of the free-probability equation near x = {x1:g}")
        mid = math.sqrt(x0 * x1)
        m, t = self._follow(m, t, x0, mid, depth + 1)
        return self._follow(m, t, mid, x1, depth + 1)

    def green(self, x: Array) -> Array:
        """G(x + iηx) at the points x > 0: followed along a path of ratio 1 + STEP from far
        above the spectrum's edge (m ≈ E[λ]/x there) down to min x, each solve starting from
        the last (with ε > 0 the root moves analytically along the path), the step halved
        where Newton fails (next to an edge)."""
        x = np.asarray(x, dtype=float)
        if x.ndim != 1 or not np.all(x > 0):
            raise ValueError(f"x must be a 1-d array of positive numbers, got {x!r}")
        top = max(x.max(), self.mean()) * 1e3 * (self.depth + 1)
        steps = int(np.ceil(np.log(top / x.min()) / np.log1p(STEP))) + 1
        path = np.union1d(np.geomspace(x.min(), top, steps), x)[::-1]
        m = self.mean() / (path[0] * (1 + 1j * ETA))
        t = m / (self.p @ self.d)
        m, t, _ = self._newton(m, t, path[0] * (1 + 1j * ETA))
        found = {path[0]: (1.0 + m) / (path[0] * (1 + 1j * ETA))}
        for x0, x1 in zip(path[:-1], path[1:], strict=True):
            m, t = self._follow(m, t, x0, x1)
            found[x1] = (1.0 + m) / (x1 * (1 + 1j * ETA))
        return np.array([found[v] for v in x])

    def density(self, x: Array) -> Array:
        """ρ(x) = −Im G(x + iε)/π, the continuous part (the zero atom excluded)."""
        return np.maximum(-self.green(x).imag / np.pi, 0.0)


def jacobian_spectrum(
    activation: str, weights: str, sigma_w2: float, q: float, depth: int
) -> Spectrum:
    """The free-probability spectrum of JJᵀ for `depth` layers at pre-activation variance q."""
    d, p = d_distribution(activation, q)
    return Spectrum(weights, sigma_w2, depth, d, p)


def log10_density(spectrum: Spectrum, log10_x: Array) -> Array:
    """The density of log10 λ: ρ(x) · x · ln 10, on a grid of log10 x."""
    x = 10.0 ** np.asarray(log10_x, dtype=float)
    return spectrum.density(x) * x * math.log(10.0)
