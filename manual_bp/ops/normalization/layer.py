"""LayerNorm and RMSNorm (statistics over the trailing normalized_shape axes), and
LocalResponseNorm."""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape
from manual_bp.ops.normalization.common import (
    _as_float64,
    _mean,
    _normalised_backward,
    _NormCache,
)

# --- layer norm ------------------------------------------------------------------------


class LayerNorm(Layer):
    """z = γ ⊙ (x − μ)/√(v + eps) + β, μ and v over the trailing normalized_shape axes.

    δ_prev = (1/σ)(g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)) with g = δ ⊙ γ, means over the same axes;
    ∂L/∂γ = Σ δ ⊙ x̂, ∂L/∂β = Σ δ (sums over the leading axes).

    weight and bias None: elementwise_affine=False; weight alone: torch's bias=False.
    """

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        weight: Array | None = None,
        bias: Array | None = None,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(map(int, normalized_shape))
        if not self.normalized_shape or min(self.normalized_shape) < 1:
            raise ValueError(
                "expected normalized_shape with at least one dim, all positive, "
                f"got {self.normalized_shape}"
            )
        if not eps > 0:
            raise ValueError(f"expected eps > 0, got {eps}")
        self.eps = float(eps)
        for name, value in (("weight", weight), ("bias", bias)):
            if value is not None:
                self.params[name] = _as_float64(value)
                if self.params[name].shape != self.normalized_shape:
                    raise ValueError(
                        f"expected {name} of shape normalized_shape={self.normalized_shape}, "
                        f"got {self.params[name].shape}"
                    )

    def __repr__(self) -> str:
        return (
            f"LayerNorm({self.normalized_shape}, eps={self.eps}, "
            f"weight={'weight' in self.params}, bias={'bias' in self.params})"
        )

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        k = len(self.normalized_shape)
        if len(in_shape) < k or in_shape[len(in_shape) - k :] != self.normalized_shape:
            dims = ", ".join(map(str, self.normalized_shape))
            raise ValueError(f"expected input of shape (*, {dims}), got shape {in_shape}")
        return in_shape

    def forward(self, x: Array) -> tuple[Array, _NormCache]:
        k = len(self.normalized_shape)
        if x.shape[-k:] != self.normalized_shape:  # (the full check only to say what is wrong)
            self.shape(x.shape)
        axes = tuple(range(x.ndim - k, x.ndim))  # the trailing axes
        mu = _mean(x, axes)
        centred = x - mu
        var = _mean(centred * centred, axes)  # biased: x.var's own steps
        inv_std = 1.0 / np.sqrt(var + self.eps)  # (*, 1, …, 1)
        x_hat = centred * inv_std
        z = x_hat * self.params["weight"] if "weight" in self.params else x_hat  # γ ⊙ x̂
        if "bias" in self.params:
            z = z + self.params["bias"]  # + β
        return z, _NormCache(x_hat, inv_std, axes)

    def backward(self, delta: Array, cache: _NormCache) -> tuple[Array, dict[str, Array]]:
        leading = tuple(range(delta.ndim - len(self.normalized_shape)))
        weight, grads = self.params.get("weight"), {}
        if weight is not None:
            grads["weight"] = (delta * cache.x_hat).sum(axis=leading)  # normalized_shape
        if "bias" in self.params:
            grads["bias"] = delta.sum(axis=leading)
        g = delta if weight is None else delta * weight
        return _normalised_backward(g, cache), grads


class RMSNorm(Layer):
    """z = γ ⊙ x / √(mean(x²) + eps), the mean over the trailing normalized_shape axes.

    With r = 1/√(mean(x²) + eps), x̂ = x r, g = δ ⊙ γ:  δ_prev = r (g − x̂ ⊙ mean(g ⊙ x̂)),
    ∂L/∂γ = Σ δ ⊙ x̂ (sums over the leading axes). weight None: elementwise_affine=False."""

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        weight: Array | None = None,
        eps: float | None = None,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(map(int, normalized_shape))
        if not self.normalized_shape or min(self.normalized_shape) < 1:
            raise ValueError(
                "expected normalized_shape with at least one dim, all positive, "
                f"got {self.normalized_shape}"
            )
        # NOTE: eps None is torch's finfo(dtype).eps; the oracle's values are float64
        self.eps = float(np.finfo(np.float64).eps) if eps is None else float(eps)
        if not self.eps >= 0:
            raise ValueError(f"expected eps >= 0, got {eps}")
        if weight is not None:
            self.params["weight"] = _as_float64(weight)
            if self.params["weight"].shape != self.normalized_shape:
                raise ValueError(
                    f"expected weight of shape normalized_shape={self.normalized_shape}, "
                    f"got {self.params['weight'].shape}"
                )

    def __repr__(self) -> str:
        return f"RMSNorm({self.normalized_shape}, eps={self.eps}, weight={'weight' in self.params})"

    def shape(self, in_shape: Shape) -> Shape:
        in_shape = tuple(in_shape)
        k = len(self.normalized_shape)
        if len(in_shape) < k or in_shape[len(in_shape) - k :] != self.normalized_shape:
            dims = ", ".join(map(str, self.normalized_shape))
            raise ValueError(f"expected input of shape (*, {dims}), got shape {in_shape}")
        return in_shape

    def forward(self, x: Array) -> tuple[Array, tuple[Array, Array, tuple[int, ...]]]:
        self.shape(x.shape)
        axes = tuple(range(x.ndim - len(self.normalized_shape), x.ndim))
        r = 1.0 / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + self.eps)
        x_hat = x * r
        z = x_hat * self.params["weight"] if "weight" in self.params else x_hat
        return z, (x_hat, r, axes)

    def backward(
        self, delta: Array, cache: tuple[Array, Array, tuple[int, ...]]
    ) -> tuple[Array, dict[str, Array]]:
        x_hat, r, axes = cache
        grads = {}
        if "weight" in self.params:
            leading = tuple(range(delta.ndim - len(self.normalized_shape)))
            grads["weight"] = (delta * x_hat).sum(axis=leading)
        g = delta * self.params["weight"] if "weight" in self.params else delta
        return r * (g - x_hat * np.mean(g * x_hat, axis=axes, keepdims=True)), grads


class LocalResponseNorm(Layer):
    """z = x / (k + α/n · Σ_{c′ ∈ w(c)} x_{c′}²)^β over channels (dim 1), the window w(c) =
    [c − ⌊n/2⌋, c + ⌊(n−1)/2⌋] zero-padded (torch's avg_pool of x² with count_include_pad).

    With D = k + α/n · S:
    δ_prev_c = δ_c D_c^(−β) − (2α/n) x_c Σ_{c″ : c ∈ w(c″)} β δ_c″ x_c″ D_c″^(−β−1)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"local_response_norm: expected an int size >= 1, got {size!r}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def __repr__(self) -> str:
        return f"LocalResponseNorm({self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k})"

    def shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) < 3:
            raise ValueError(
                f"local_response_norm: expected an input of 3 or more dims, got {tuple(in_shape)}"
            )
        return tuple(in_shape)

    def _window_sum(self, t: Array, before: int, after: int) -> Array:
        """Σ over a window of channels [c − before, c + after], zero-padded."""
        C = t.shape[1]
        pad = [(0, 0)] * t.ndim
        pad[1] = (before, after)
        tp = np.pad(t, pad)
        out = np.zeros(t.shape)
        for j in range(before + after + 1):  # NOTE: a loop over the window's offsets
            out += tp[:, j : j + C]
        return out

    def forward(self, x: Array) -> tuple[Array, Any]:
        self.shape(x.shape)
        n = self.size
        S = self._window_sum(x * x, n // 2, (n - 1) // 2)
        D = (S / n) * self.alpha + self.k
        Dp = D**self.beta
        return x / Dp, (x, D, Dp)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        x, D, Dp = cache
        n = self.size
        t = self.beta * delta * x / (D * Dp)  # β δ x D^(−β−1)
        back = self._window_sum(t, (n - 1) // 2, n // 2)  # the windows that hold c
        return delta / Dp - (2.0 * self.alpha / n) * x * back, {}
