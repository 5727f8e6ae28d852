"""Sliding patches (F.unfold, im2col) and their sum back into an image (F.fold, col2im), each
the other's backward, as torch's 2-d kernels (loops over the kernel offsets only).

    Unfold  z[n, (c, i, j), l] = x_pad[n, c, i·d₀ + s₀·l₀, j·d₁ + s₁·l₁]    x̄ = fold(z̄)
    Fold    z[n, c, p, q] = Σ over the (c, i, j, l) that land on (p, q)     x̄ = unfold(z̄)

with l = (l₀, l₁) the patch's position on the L₀ × L₁ grid of patches,
L_k = ⌊(size_k + 2 p_k − d_k (k_k − 1) − 1) / s_k⌋ + 1. A 3-d input is one unbatched sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape


def _pair(v: Any, what: str) -> tuple[int, int]:
    t = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(t) != 2 or not all(isinstance(n, (int, np.integer)) for n in t):
        raise ValueError(f"{what}: expected an int or a pair of ints, got {v!r}")
    return int(t[0]), int(t[1])


class _Patches(Layer):
    def __init__(
        self, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1
    ) -> None:
        super().__init__()
        self.kernel = _pair(kernel_size, "kernel_size")
        self.dilation = _pair(dilation, "dilation")
        self.padding = _pair(padding, "padding")
        self.stride = _pair(stride, "stride")
        if (
            min(self.kernel) < 1
            or min(self.dilation) < 1
            or min(self.stride) < 1
            or min(self.padding) < 0
        ):
            raise ValueError(
                f"expected kernel_size, dilation, stride >= 1 and padding >= 0, got "
                f"{self.kernel}, {self.dilation}, {self.stride}, {self.padding}"
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kernel={self.kernel}, dilation={self.dilation}, "
            f"padding={self.padding}, stride={self.stride})"
        )

    def _grid(self, size: tuple[int, int]) -> tuple[int, int]:
        L = tuple(
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(
                size, self.padding, self.dilation, self.kernel, self.stride, strict=True
            )
        )
        if min(L) < 1:
            raise ValueError(
                f"the {self.kernel} kernel (dilation {self.dilation}, padding {self.padding}) does "
                f"not fit the {size} image: no patch"
            )
        return L  # type: ignore[return-value]

    def _unfold(self, x: Array, L: tuple[int, int]) -> Array:
        """x (N, C, H, W) → (N, C·k₀·k₁, L₀·L₁)."""
        N, C = x.shape[:2]
        (p0, p1), (d0, d1), (s0, s1), (k0, k1) = (
            self.padding,
            self.dilation,
            self.stride,
            self.kernel,
        )
        xp = np.pad(x, ((0, 0), (0, 0), (p0, p0), (p1, p1)))
        out = np.empty((N, C, k0, k1, L[0], L[1]))
        for i in range(k0):
            for j in range(k1):
                out[:, :, i, j] = xp[
                    :,
                    :,
                    i * d0 : i * d0 + s0 * (L[0] - 1) + 1 : s0,
                    j * d1 : j * d1 + s1 * (L[1] - 1) + 1 : s1,
                ]
        return out.reshape(N, C * k0 * k1, L[0] * L[1])

    def _fold(self, cols: Array, size: tuple[int, int], L: tuple[int, int]) -> Array:
        """cols (N, C·k₀·k₁, L₀·L₁) → (N, C, H, W), overlapping patches added up."""
        (p0, p1), (d0, d1), (s0, s1), (k0, k1) = (
            self.padding,
            self.dilation,
            self.stride,
            self.kernel,
        )
        N = cols.shape[0]
        C = cols.shape[1] // (k0 * k1)
        c = cols.reshape(N, C, k0, k1, L[0], L[1])
        xp = np.zeros((N, C, size[0] + 2 * p0, size[1] + 2 * p1))
        for i in range(k0):
            for j in range(k1):
                xp[
                    :,
                    :,
                    i * d0 : i * d0 + s0 * (L[0] - 1) + 1 : s0,
                    j * d1 : j * d1 + s1 * (L[1] - 1) + 1 : s1,
                ] += c[:, :, i, j]
        return xp[:, :, p0 : p0 + size[0], p1 : p1 + size[1]]


class Unfold(_Patches):
    """z = F.unfold(x, kernel_size, dilation, padding, stride): (N, C, H, W) → (N, C·k₀·k₁, L);
    x̄ = fold(z̄) (each entry's δ summed over the patches that read it)."""

    def shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) not in (3, 4):
            raise ValueError(f"unfold: expected a 3-d or 4-d input, got shape {tuple(in_shape)}")
        *lead, C, H, W = in_shape
        L = self._grid((H, W))
        return (*lead, C * self.kernel[0] * self.kernel[1], L[0] * L[1])

    def forward(self, x: Array) -> tuple[Array, Any]:
        self.shape(x.shape)
        x4 = x if x.ndim == 4 else x[None]
        L = self._grid(x4.shape[2:])
        z = self._unfold(x4, L)
        return (z if x.ndim == 4 else z[0]), (x.shape, L)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        shape, L = cache
        d4 = delta if delta.ndim == 3 else delta[None]
        g = self._fold(d4, shape[-2:], L)
        return g.reshape(shape), {}


class Fold(_Patches):
    """z = F.fold(x, output_size, kernel_size, dilation, padding, stride): (N, C·k₀·k₁, L) →
    (N, C, H, W), overlaps added;  x̄ = unfold(z̄)."""

    def __init__(
        self,
        output_size: Any,
        kernel_size: Any,
        dilation: Any = 1,
        padding: Any = 0,
        stride: Any = 1,
    ) -> None:
        super().__init__(kernel_size, dilation, padding, stride)
        self.output_size = _pair(output_size, "output_size")

    def __repr__(self) -> str:
        return f"Fold(output_size={self.output_size}, " + super().__repr__()[5:]

    def shape(self, in_shape: Shape) -> Shape:
        k = self.kernel[0] * self.kernel[1]
        L = self._grid(self.output_size)
        if len(in_shape) not in (2, 3) or in_shape[-2] % k or in_shape[-1] != L[0] * L[1]:
            raise ValueError(
                f"fold: expected an input (N, C·{k}, {L[0] * L[1]}) for output_size "
                f"{self.output_size}, got shape {tuple(in_shape)}"
            )
        return (*in_shape[:-2], in_shape[-2] // k, *self.output_size)

    def forward(self, x: Array) -> tuple[Array, Any]:
        self.shape(x.shape)
        x3 = x if x.ndim == 3 else x[None]
        L = self._grid(self.output_size)
        z = self._fold(x3, self.output_size, L)
        return (z if x.ndim == 3 else z[0]), (x.shape, L)

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        shape, L = cache
        d4 = delta if delta.ndim == 4 else delta[None]
        return self._unfold(d4, L).reshape(shape), {}
