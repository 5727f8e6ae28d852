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

and G(x + iε) = (1 + m)/(x + iε), density ρ(x) = −Im G/π. Written in t (m = M_{D²}(t) is
explicit) and in logarithms, it is one complex equation in one unknown with an analytic
derivative; Newton's method solves it, continued down a path of x from above the spectrum's
edge (where m ≈ E[λ]/x). d's distribution is exact for relu (d ∈ {0, 1}) and linear nets
(d ≡ 1, whose Gaussian product is the Fuss–Catalan law), a dense grid of z otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from experiments.theory import meanfield

Array = np.ndarray

#: relative imaginary part of x + iε: smooths the density by a Lorentzian of that width; its
#: tails outside the support add ∝ ε to the variance (ε = 1e-4 inflated the depth-64
#: orthogonal tanh value 55-fold); at 1e-9 the moments match the closed forms to 1e-3
ETA = 1e-9
#: the continuation path's ratio between neighbouring points (halved where Newton fails)
STEP = 0.05
_NODES = 1001
_TOP = 20.0  # the path starts at _TOP·(L + 1)·max(x, E[λ]), above the upper edge
_WEIGHTS = ("gaussian", "orthogonal")  # S_WWᵀ(m) = 1/(σ_w² (1 + m)) and 1/σ_w²


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
        if self.weights not in _WEIGHTS:
            raise ValueError(f"unknown weights {self.weights!r}; known: {', '.join(_WEIGHTS)}")
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

    def _sums(self, t: complex) -> tuple[complex, complex, complex]:
        """(m, 1 + m, dm/dt) at t: m = M_{D²}(t) = E[t d u], 1 + m = E[u], m′ = E[d u²],
        u = 1/(1 − t d), each summed directly (no cancellation near m = 0 or m = −1)."""
        u = 1.0 / (1.0 - t * self.d)
        du = self.d * u
        return t * (self.p @ du), self.p @ u, self.p @ (du * u)

    def _residual(self, t: complex, z: complex) -> tuple[complex, complex]:
        """The equation in logarithms, log((S_W S_{D²})^L m/(1 + m) z) = 0 mod 2πi, as a
        function of t alone (m = M_{D²}(t)), and its derivative in t:
        orthogonal  L log(t/σ_w²) + (L − 1) log((1 + m)/m) + log z,
        Gaussian    L log(t/σ_w²) − (L − 1) log m − log(1 + m) + log z."""
        m, a, dm = self._sums(t)
        L = self.depth
        f = L * np.log(t / self.sigma_w2) + np.log(z)
        if self.weights == "orthogonal":
            f, df = f + (L - 1) * (np.log(a) - np.log(m)), L / t + (L - 1) * (dm / a - dm / m)
        else:
            f, df = f - (L - 1) * np.log(m) - np.log(a), L / t - (L - 1) * dm / m - dm / a
        return f - 2j * np.pi * np.round(f.imag / (2 * np.pi)), df

    def _newton(self, t: complex, z: complex) -> tuple[complex, bool]:
        """The root t of `_residual` at z by Newton's method from t; ok = converged to a
        physical root (Im G ≤ 0: G is a Stieltjes transform)."""
        with np.errstate(all="ignore"):
            for _ in range(30):
                f, df = self._residual(t, z)
                step = f / df
                if not np.isfinite(step):
                    return t, False
                t -= step
                if abs(step) <= 1e-12 * abs(t):
                    g = self._sums(t)[1] / z
                    return t, bool(np.isfinite(g) and g.imag <= 1e-9 * abs(g))
        return t, False

    def green(self, x: Array) -> Array:
        """G(x + iεx) = (1 + m)/(x + iεx) at the points x > 0: followed along a path of ratio
        1 + STEP from above the spectrum's edge (m ≈ E[λ]/x there) down to min x, each solve
        starting from the last root; a step is halved where Newton fails, jumps (|Δt| > |t|/10)
        or lands on the unphysical root (next to an edge)."""
        x = np.asarray(x, dtype=float)
        if x.ndim != 1 or not np.all(x > 0):
            raise ValueError(f"x must be a 1-d array of positive numbers, got {x!r}")
        here = max(x.max(), self.mean()) * _TOP * (self.depth + 1)
        z = here * (1 + 1j * ETA)
        t, ok = self._newton(self.mean() / z / (self.p @ self.d), z)
        assert ok, "the start above the spectrum's edge must converge"
        found = {}
        for target in np.unique(x)[::-1]:
            while here > target:
                step = max(here / (1 + STEP), target)
                while True:
                    new, ok = self._newton(t, step * (1 + 1j * ETA))
                    if ok and abs(new - t) <= 0.1 * abs(t):
                        break
                    step = math.sqrt(here * step)
                    if step >= here * (1 - 1e-12):
                        raise ArithmeticError(f"no root of the equation near x = {here:g}")
                t, here = new, step
            found[target] = self._sums(t)[1] / (target * (1 + 1j * ETA))
        return np.array([found[v] for v in x])

    def density(self, x: Array) -> Array:
        """ρ(x) = −Im G(x + iε)/π, the continuous part (the zero atom excluded)."""
        return np.maximum(-self.green(x).imag / np.pi, 0.0)

    def moments(self, log10_x: Array) -> tuple[float, float, float]:
        """(mass with the zero atom, mean, normalised variance) of the density integrated by
        the trapezoid rule over the grid `log10_x` (which must cover the support)."""
        lx = np.asarray(log10_x, dtype=float)
        x = 10.0**lx
        r = self.density(x) * x * math.log(10.0)
        mass, m1, m2 = (float(np.trapezoid(r * x**k, lx)) for k in range(3))
        return mass + self.zero_mass, m1, (m2 - m1**2) / m1**2


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
