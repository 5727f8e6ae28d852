"""Power-average pooling (torch's LPPool): z = (K · avg(x^P))^(1/P)."""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.base import TIE_RTOL, Array, Shape, near
from manual_bp.ops.pooling.fixed import (
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
    _PoolNd,
)
from manual_bp.ops.pooling.windows import (
    Size,
    max_pool_ties,
)

# --- power-average pooling -------------------------------------------------------------

_AVG = {1: AvgPool1d, 2: AvgPool2d, 3: AvgPool3d}
_MAX = {1: MaxPool1d, 2: MaxPool2d, 3: MaxPool3d}


class _LPPoolNd(_PoolNd):
    """z = (K · avg(x^P))^(1/P);  δ_prev = avgᵀ(K δ s^(1/P − 1)/P) · P x^(P−1), s = K · avg(x^P).

    As torch's lp_pool: an average pool without padding of x^P times the kernel's size K
    (so a ceil_mode window hanging over the edge is scaled by K over the cells it holds),
    to the power 1/P; where s = 0 the gradient is 0. P = ∞ is max_pool(|x|), δ routed to
    the winner times sign(x).
    """

    def __init__(
        self,
        norm_type: float,
        kernel_size: Size,
        stride: Size | None = None,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(norm_type, bool) or not isinstance(
            norm_type, (int, float, np.integer, np.floating)
        ):
            raise ValueError(f"norm_type must be a number, got {norm_type!r}")
        if not norm_type >= 1:
            # NOTE: below 1, P x^(P−1) is infinite at x = 0 and torch's gradient with it
            raise ValueError(f"norm_type must be ≥ 1 (or inf), got {norm_type!r}")
        self.norm_type = float(norm_type)
        self.avg = _AVG[self.n_spatial](kernel_size, stride, 0, ceil_mode)
        self.max = _MAX[self.n_spatial](kernel_size, stride, 0, 1, ceil_mode)
        self.K = float(np.prod(self.avg.kernel_size))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(norm_type={self.norm_type}, kernel_size="
            f"{self.avg.kernel_size}, stride={self.avg.stride}, ceil_mode={self.avg.ceil_mode})"
        )

    def shape(self, in_shape: Shape) -> Shape:
        return self.avg.shape(in_shape)

    def _power_sum(self, x: Array) -> tuple[Array, Any]:
        """s = K · avg(x^P), refusing where torch's value or gradient is NaN."""
        P = self.norm_type
        if P != int(P) and (x < 0).any():
            raise ValueError(
                f"{type(self).__name__} with norm_type {P:g} on a negative input: x^{P:g} is "
                "NaN in torch"
            )
        u, cache = self.avg.forward(x**P)
        s = self.K * u
        if P != 1 and (s < 0).any():
            raise ValueError(
                f"{type(self).__name__} with norm_type {P:g}: a window's sum of x^{P:g} is "
                f"negative ({float(s.min()):.6g}); its 1/{P:g}-th power is NaN in torch"
            )
        return s, cache

    def forward(self, x: Array) -> tuple[Array, Any]:
        P = self.norm_type
        if P == np.inf:
            z, cache = self.max.forward(np.abs(x))
            return z, (x, cache)
        s, cache = self._power_sum(x)
        z = s if P == 1 else np.where(s > 0, np.abs(s) ** (1 / P), 0.0)
        return z, (x, s, cache)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        P = self.norm_type
        if P == np.inf:
            x, max_cache = cache
            return self.max.backward(delta, max_cache)[0] * np.sign(x), {}
        x, s, avg_cache = cache
        # NOTE: torch's gradient is 0 where s = 0 (sign(s)·relu(|s|) has slope 0 there)
        nonzero = s != 0
        safe = np.where(nonzero, np.abs(s), 1.0)
        delta_s = np.where(nonzero, delta * safe ** (1 / P - 1) / P, 0.0)  # ∂L/∂s
        delta_xP, _ = self.avg.backward(self.K * delta_s, avg_cache)  # ∂L/∂(x^P)
        return delta_xP * P * x ** (P - 1), {}

    def ties(self, x: Array) -> tuple[Array]:
        """Entries of the windows whose s sits within rounding of the kink s = 0: every entry
        near 0 (relative to max|x|), or x^P cancelling (|s| ≤ TIE_RTOL · Σ|x|^P)."""
        P = self.norm_type
        if P == np.inf:
            return (
                max_pool_ties(np.abs(x), self.max._tables(self.max._out(x.shape)))
                | near(x, (0.0,)),
            )
        small = near(x, (0.0,), float(np.max(np.abs(x), initial=0.0)))
        all_small, cache = self.avg.forward(small.astype(np.float64))
        s, _ = self.avg.forward(x**P)
        S, _ = self.avg.forward(np.abs(x) ** P)
        tied = (all_small >= 1.0) | (np.abs(s) <= TIE_RTOL * S)
        members, _ = self.avg.backward(tied.astype(np.float64), cache)
        return (members > 0,)


class LPPool1d(_LPPoolNd):
    """torch.nn.LPPool1d on (N, C, L) or (C, L)."""

    n_spatial = 1


class LPPool2d(_LPPoolNd):
    """torch.nn.LPPool2d on (N, C, H, W) or (C, H, W)."""

    n_spatial = 2


class LPPool3d(_LPPoolNd):
    """torch.nn.LPPool3d on (N, C, D, H, W) or (C, D, H, W)."""

    n_spatial = 3
