"""Special functions of two arguments whose derivative exists in one of them only: the Hurwitz
zeta function and the regularised incomplete gamma functions (torch.special.zeta, gammainc,
gammaincc). Their other argument has no derivative in torch either ("not implemented" in
PyTorch's derivatives.yaml): its partial here is NaN, so a gradient that needs it shows as
NaN, never as a number.

    ζ(x, q) = Σ_k (k + q)^(−x):          ∂ζ/∂q = −x ζ(x + 1, q)
    P(a, x) = γ(a, x) / Γ(a):            ∂P/∂x = e^(−x) x^(a−1) / Γ(a)
    Q(a, x) = 1 − P(a, x):               ∂Q/∂x = −e^(−x) x^(a−1) / Γ(a)

(DLMF 25.11.17 and 8.8.13; the formulas torch's derivatives.yaml gives for `zeta` with
respect to `other`, and for `igamma`/`igammac` with respect to `other`.)
"""

from __future__ import annotations

import numpy as np

from manual_bp.ops.arithmetic.binary import _Binary

Array = np.ndarray


def _none_like(z: Array) -> Array:
    """The partial torch has no formula for."""
    return np.full(z.shape, np.nan)


class Zeta(_Binary):
    """z = ζ(x, q), the Hurwitz zeta function;  δ_q = −δ x ζ(x + 1, q); δ_x: none (NaN)."""

    def f(self, x: Array, q: Array) -> Array:
        from scipy import special  # (imported where used: the first oracle call stays light)

        return special.zeta(x, q)

    def partials(self, x: Array, q: Array, z: Array) -> tuple[Array, Array]:
        from scipy import special

        return _none_like(z), -x * special.zeta(x + 1.0, q)


class GammaInc(_Binary):
    """z = P(a, x) (upper=False) or Q(a, x) = 1 − P(a, x) (upper=True), regularised;
    δ_x = ±δ e^(−x) x^(a−1) / Γ(a) (the integrand at x); δ_a: none (NaN)."""

    def __init__(self, upper: bool = False) -> None:
        super().__init__()
        self.upper = bool(upper)

    def __repr__(self) -> str:
        return "GammaIncC" if self.upper else "GammaInc"

    def f(self, a: Array, x: Array) -> Array:
        from scipy import special

        return special.gammaincc(a, x) if self.upper else special.gammainc(a, x)

    def partials(self, a: Array, x: Array, z: Array) -> tuple[Array, Array]:
        from scipy import special

        # e^(−x) x^(a−1) / Γ(a), in logs: −x + (a − 1) log x − log Γ(a)
        density = np.exp(-x + special.xlogy(a - 1.0, x) - special.gammaln(a))
        return _none_like(z), -density if self.upper else density
