"""Multi-label margin: a hinge between each listed target class and every class not listed,
ℓ = Σ_j Σ_{i ∉ y} max(0, 1 − (x[y_j] − x[i])) / C, one loss per sample."""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.losses.base import Array, Loss, Shape, _input, _numeric
from manual_bp.ops.base import TIE_RTOL


def _rows(x: Array) -> Array:
    """x as (N, C): torch's rule, a (C,) or () input is one sample (of C or 1 classes)."""
    return x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)


class MultiLabelMarginLoss(Loss):
    """ℓ = Σ_{j<k} Σ_{i ∉ y} max(0, z_ji) / C,  z_ji = 1 − x[y_j] + x[i];
    ∂ℓ/∂x[i] = #{j : z_ji > 0} / C,  ∂ℓ/∂x[y_j] −= #{i : z_ji > 0} / C.

    y_0 … y_{k−1} are the sample's target row up to its first −1 (a row starting with −1
    lists none); mean: over the N samples. NOTE: as torch's kernel, a pair counts where
    z > 0 strictly (ℓ′(0) = 0), and a class listed twice counts twice.
    """

    name = "multilabel_margin_loss"
    per_element = True  # reduction='none': one loss per sample

    def check(self, y_shape: Shape, target: Any) -> None:
        loss = type(self).__name__
        y_shape = tuple(y_shape)
        if len(y_shape) > 2 or (len(y_shape) >= 1 and y_shape[-1] == 0):
            raise ValueError(
                f"{loss}: expected input of shape (C,) or (N, C) with C ≥ 1, got shape {y_shape}"
            )
        t = _numeric(loss, "target", target)
        n_classes = y_shape[-1] if y_shape else 1
        fits = t.shape == y_shape if len(y_shape) == 2 else t.ndim <= 1 and t.size == n_classes
        if not fits:
            raise ValueError(
                f"{loss}: expected a target of the input's shape {y_shape} (class indices, "
                f"padded with -1), got shape {t.shape}"
            )
        if t.dtype.kind not in "iu":
            raise ValueError(f"{loss}: expected integer class indices, got dtype {t.dtype}")
        bad = (t < -1) | (t >= n_classes)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{loss}: expected class indices in [0, {n_classes}) or -1, got {t[where]} "
                f"at index {where} (torch raises too)"
            )
        self._check_nonempty(y_shape)

    def output_shape(self, y_shape: Shape) -> Shape:
        return tuple(y_shape[:-1]) if self.reduction == "none" and len(y_shape) == 2 else ()

    def chain(self, delta: Array, dL_dy: Array) -> Array:
        """δ_x = δ_n ∂ℓ_n/∂x along sample n's classes (reduction='none', (N, C)), else δ ∂ℓ/∂x."""
        if self.reduction == "none" and dL_dy.ndim == 2:
            return np.asarray(delta)[:, None] * dL_dy
        return delta * dL_dy

    def _pairs(self, x: Array, target: Array) -> tuple[Array, Array, Array]:
        """listed (N, C) slots before the first −1, one_hot (N, slot, C) of the listed
        classes, z (N, slot, C) = 1 − x[y_j] + x[i], and `on` the pairs that count."""
        t = np.asarray(target).reshape(x.shape)
        C = x.shape[1]
        listed = np.cumprod(t >= 0, axis=1).astype(bool)  # (N, slot)
        y = np.where(listed, t, 0)
        one_hot = (y[:, :, None] == np.arange(C)) & listed[:, :, None]  # (N, slot, C)
        is_target = one_hot.any(axis=1)  # (N, C)
        z = 1.0 - np.take_along_axis(x, y, axis=1)[:, :, None] + x[:, None, :]
        on = listed[:, :, None] & ~is_target[:, None, :]  # (N, slot, C): pairs j, i
        return one_hot, z, on

    def __call__(self, y: Array, target: Array) -> tuple[Any, Array]:
        x = _input(type(self).__name__, y)
        self.check(x.shape, target)
        xs = _rows(x)  # (N, C)
        N, C = xs.shape
        one_hot, z, pairs = self._pairs(xs, target)
        on = pairs & (z > 0)
        terms = np.where(on, z, 0.0).sum(axis=(1, 2)) / C  # (N,)
        per_target = on.sum(axis=2)  # (N, slot): #{i : z_ji > 0}
        dx = (on.sum(axis=1) - np.einsum("njc,nj->nc", one_hot, per_target)) / C
        loss = self._reduce(terms)
        if self.reduction == "none":
            loss = terms.reshape(self.output_shape(x.shape))
        return loss, (dx * self._scale(N)).reshape(x.shape)

    def ties(self, y: Array, target: Array) -> Array:
        """ℓ′ jumps where z_ji = 0: both x[i] and x[y_j] of such a pair."""
        x = _rows(np.asarray(y, dtype=np.float64))
        one_hot, z, pairs = self._pairs(x, target)
        scale = max(1.0, float(np.max(np.abs(x), initial=0.0)))
        kink = pairs & (np.abs(z) <= TIE_RTOL * scale)  # (N, slot, C)
        mask = kink.any(axis=1) | np.einsum("njc,nj->nc", one_hot, kink.any(axis=2)).astype(bool)
        return mask.reshape(np.shape(y))
