"""Sampling an image at given points (F.grid_sample) and the grids of affine maps
(F.affine_grid), forward beside backward, as torch's 2-d kernels compute them.

    AffineGrid   g[n, h, w] = θ_n · (x_w, y_h, 1)            θ̄_n = Σ_hw ḡ[n, h, w] ⊗ (x_w, y_h, 1)
    GridSample   z[n, c, h, w] = Σ_taps w_tap(g) · a[n, c, tap]
                 ā = the same taps, δ scattered with their weights;
                 ḡ = Σ_c δ · Σ_taps ∂w_tap/∂(ix, iy) · a[tap] · ∂(ix, iy)/∂g

Grid coordinates are in [−1, 1]; align_corners=True puts −1 and 1 on the centres of the
corner pixels, False on their outer edges. Padding: zeros (taps outside read 0), border
(coordinates clipped to the image), reflection (reflected at the edges, then clipped); the
clip and the reflection carry their derivative (0 outside, −1 where reflected), as torch's
`clip_coordinates_set_grad` / `reflect_coordinates_set_grad`. Bicubic uses the cubic
convolution kernel with A = −0.75 on a 4 × 4 neighbourhood, each tap's position padded on its
own (its weights do not see the padding). Nearest rounds half to even; its ḡ is 0.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape, near

MODES = ("bilinear", "nearest", "bicubic")
PADDINGS = ("zeros", "border", "reflection")
_A = -0.75  # torch's bicubic coefficient


def _linspace(n: int, align_corners: bool) -> Array:
    """torch's linspace_from_neg_one: the grid's coordinates of n pixels."""
    if n <= 1:
        return np.zeros(max(n, 0))
    r = np.linspace(-1.0, 1.0, n)
    return r if align_corners else r * (n - 1) / n


class AffineGrid(Layer):
    """g = F.affine_grid(θ, size, align_corners): 2-d, θ (N, 2, 3) and size (N, C, H, W) →
    (N, H, W, 2); 3-d, θ (N, 3, 4) and size (N, C, D, H, W) → (N, D, H, W, 3);
    g[n, …] = θ_n (x, y[, z], 1)ᵀ;  θ̄_n = Σ ḡ[n, …] ⊗ (x, y[, z], 1)."""

    def __init__(self, size: tuple[int, ...], align_corners: bool = False) -> None:
        super().__init__()
        self.size, self.align_corners = tuple(int(n) for n in size), bool(align_corners)
        if len(self.size) not in (4, 5):
            raise ValueError(
                f"affine_grid: expected size (N, C, H, W) or (N, C, D, H, W), got {self.size}"
            )

    def __repr__(self) -> str:
        return f"AffineGrid({self.size}, align_corners={self.align_corners})"

    def shape(self, theta_shape: Shape) -> Shape:
        N, spatial = self.size[0], self.size[2:]
        k = len(spatial)
        if tuple(theta_shape) != (N, k, k + 1):
            raise ValueError(
                f"affine_grid: expected θ of shape ({N}, {k}, {k + 1}) for size {self.size}, got "
                f"{tuple(theta_shape)}"
            )
        return (N, *spatial, k)

    def _base(self) -> Array:
        spatial = self.size[2:]
        k = len(spatial)
        base = np.ones((*spatial, k + 1))
        for c in range(k):  # x along the last spatial dim, y the one before, z before that
            axis = k - 1 - c
            shape = [1] * k
            shape[axis] = spatial[axis]
            base[..., c] = _linspace(spatial[axis], self.align_corners).reshape(shape)
        return base.reshape(-1, k + 1)

    def forward(self, theta: Array) -> tuple[Array, Array]:
        out = self.shape(theta.shape)
        base = self._base()
        return (base @ np.swapaxes(theta, 1, 2)).reshape(out), base

    def backward(self, delta: Array, base: Array) -> tuple[Array, dict[str, Array]]:
        N, k = delta.shape[0], delta.shape[-1]
        D = delta.reshape(N, -1, k)
        return np.swapaxes(D, 1, 2) @ base, {}


def _unnormalize(g: Array, n: int, align_corners: bool) -> tuple[Array, float]:
    """The pixel coordinate of a grid coordinate, and d(pixel)/d(grid)."""
    if align_corners:
        return (g + 1.0) / 2.0 * (n - 1), (n - 1) / 2.0
    return ((g + 1.0) * n - 1.0) / 2.0, n / 2.0


def _clip(x: Array, n: int) -> tuple[Array, Array]:
    """x clipped to [0, n − 1] and its derivative (1 inside, 0 where clipped)."""
    clipped = np.clip(x, 0.0, n - 1.0)
    return clipped, ((x > 0.0) & (x < n - 1.0)).astype(np.float64)


def _reflect(x: Array, lo2: float, hi2: float) -> tuple[Array, Array]:
    """x reflected into [lo2/2, hi2/2] (torch's reflect_coordinates_set_grad) and its
    derivative (±1)."""
    if lo2 == hi2:
        return np.zeros_like(x), np.zeros_like(x)
    lo, span = lo2 / 2.0, (hi2 - lo2) / 2.0
    grad = np.where(x < lo, -1.0, 1.0)
    y = np.abs(x - lo)
    extra = np.fmod(y, span)
    flips = np.floor(y / span)
    even = np.fmod(flips, 2.0) == 0
    out = np.where(even, extra + lo, span - extra + lo)
    return out, np.where(even, grad, -grad)


def _pad_coordinate(x: Array, n: int, padding: str, align_corners: bool) -> tuple[Array, Array]:
    """torch's compute_coordinates (with the derivative): border clips, reflection reflects
    then clips; zeros leaves x as it is."""
    if padding == "zeros":
        return x, np.ones_like(x)
    if padding == "border":
        return _clip(x, n)
    if align_corners:
        r, dr = _reflect(x, 0.0, 2.0 * (n - 1))
    else:
        r, dr = _reflect(x, -1.0, 2.0 * n - 1.0)
    c, dc = _clip(r, n)
    return c, dr * dc


def _cubic(t: Array) -> tuple[list[Array], list[Array]]:
    """The four cubic-convolution weights at offsets −1, 0, 1, 2 for a fraction t, and their
    derivatives in t."""
    A = _A

    def inner(x: Array) -> tuple[Array, Array]:  # |x| ≤ 1
        return ((A + 2) * x - (A + 3)) * x * x + 1, (3 * (A + 2) * x - 2 * (A + 3)) * x

    def outer(x: Array) -> tuple[Array, Array]:  # 1 < |x| < 2
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A, (3 * A * x - 10 * A) * x + 8 * A

    w0, d0 = outer(t + 1.0)
    w1, d1 = inner(t)
    w2, d2 = inner(1.0 - t)
    w3, d3 = outer(2.0 - t)
    return [w0, w1, w2, w3], [d0, d1, -d2, -d3]


class GridSample(Layer):
    """z = F.grid_sample(a, g, mode, padding_mode, align_corners): 2-d, a (N, C, H, W) and g
    (N, Ho, Wo, 2) of (x, y); 3-d, a (N, C, D, H, W) and g (N, Do, Ho, Wo, 3) of (x, y, z)
    (bilinear is then trilinear; bicubic is 2-d only, as torch's); coordinates in [−1, 1].
    The taps and weights of the module docstring; ā scattered back with the weights, ḡ through
    the weights' derivatives."""

    n_inputs = 2

    def __init__(
        self, mode: str = "bilinear", padding_mode: str = "zeros", align_corners: bool = False
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"grid_sample: expected mode in {MODES}, got {mode!r}")
        if padding_mode not in PADDINGS:
            raise ValueError(
                f"grid_sample: expected padding_mode in {PADDINGS}, got {padding_mode!r}"
            )
        self.mode, self.padding_mode, self.align_corners = mode, padding_mode, bool(align_corners)

    def __repr__(self) -> str:
        return (
            f"GridSample(mode={self.mode!r}, padding_mode={self.padding_mode!r}, "
            f"align_corners={self.align_corners})"
        )

    def shape(self, a_shape: Shape, g_shape: Shape) -> Shape:
        k = len(a_shape) - 2
        if k not in (2, 3) or len(g_shape) != k + 2 or g_shape[-1] != k or a_shape[0] != g_shape[0]:
            raise ValueError(
                "grid_sample: expected an input (N, C, H, W) with a grid (N, Ho, Wo, 2), or "
                f"(N, C, D, H, W) with (N, Do, Ho, Wo, 3); got {tuple(a_shape)} and "
                f"{tuple(g_shape)}"
            )
        if k == 3 and self.mode == "bicubic":
            raise ValueError("grid_sample: bicubic interpolation is 2-d only (as torch's)")
        return (a_shape[0], a_shape[1], *g_shape[1:-1])

    def _taps(self, g: Array, spatial: Shape) -> list[tuple[tuple[Array, ...], Array, list[Array]]]:
        """Each tap as (its position along each spatial axis, its weight, ∂weight/∂g_c for each
        grid component c = x, y[, z]), arrays of the grid's point shape."""
        ac, pad, k = self.align_corners, self.padding_mode, len(spatial)
        size = [spatial[k - 1 - c] for c in range(k)]  # the axis grid component c runs along
        raw = [_unnormalize(g[..., c], size[c], ac) for c in range(k)]
        if self.mode == "bicubic":
            (ix, sx), (iy, sy) = raw
            x0, y0 = np.floor(ix), np.floor(iy)
            wx, dwx = _cubic(ix - x0)
            wy, dwy = _cubic(iy - y0)
            taps = []
            for i in range(4):
                for j in range(4):
                    col, _ = _pad_coordinate(x0 - 1 + j, size[0], pad, ac)
                    row, _ = _pad_coordinate(y0 - 1 + i, size[1], pad, ac)
                    w = wy[i] * wx[j]
                    taps.append(((row, col), w, [wy[i] * dwx[j] * sx, dwy[i] * wx[j] * sy]))
            return taps
        padded = [_pad_coordinate(raw[c][0], size[c], pad, ac) for c in range(k)]
        if self.mode == "nearest":
            zero = np.zeros_like(padded[0][0])
            pos = tuple(np.rint(padded[k - 1 - a][0]) for a in range(k))
            return [(pos, np.ones_like(zero), [zero] * k)]
        lo = [np.floor(c) for c, _ in padded]
        t = [c - f for (c, _), f in zip(padded, lo, strict=True)]
        scale = [dc * raw[c][1] for c, (_, dc) in enumerate(padded)]  # d(pixel)/d(grid)
        taps = []
        for corner in itertools.product((0, 1), repeat=k):  # corner[c]: the upper tap along c
            factors = [t[c] if corner[c] else 1.0 - t[c] for c in range(k)]
            w = np.prod(factors, axis=0)
            dw = []
            for c in range(k):
                rest = np.prod([f for j, f in enumerate(factors) if j != c], axis=0)
                dw.append((1.0 if corner[c] else -1.0) * rest * scale[c])
            pos = tuple(lo[k - 1 - a] + corner[k - 1 - a] for a in range(k))
            taps.append((pos, w, dw))
        return taps

    def _index(self, n: Array, pos: tuple[Array, ...]) -> tuple[Any, ...]:
        return (n, slice(None), *pos)

    def forward(self, a: Array, g: Array) -> tuple[Array, Any]:
        self.shape(a.shape, g.shape)
        N, C, *spatial = a.shape
        points = g.shape[1:-1]
        n = np.arange(N).reshape(N, *(1,) * len(points))
        z = np.zeros((N, C, *points))
        reads = []
        for pos, w, dw in self._taps(g, tuple(spatial)):
            inside = np.all([(p >= 0) & (p <= L - 1) for p, L in zip(pos, spatial, strict=True)], 0)
            idx = tuple(np.where(inside, p, 0).astype(np.int64) for p in pos)
            v = np.moveaxis(a[self._index(n, idx)], -1, 1)  # (N, C, *points)
            v = np.where(inside[:, None], v, 0.0)
            z += w[:, None] * v
            reads.append((idx, inside, w, dw, v))
        return z, (a.shape, reads)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, Array], dict]:
        a_shape, reads = cache
        N, k = a_shape[0], len(a_shape) - 2
        n = np.arange(N).reshape(N, *(1,) * k)
        da = np.zeros(a_shape)
        gg = np.zeros((N, *delta.shape[2:], k))
        for idx, inside, w, dw, v in reads:
            contrib = np.where(inside[:, None], w[:, None] * delta, 0.0)  # (N, C, *points)
            np.add.at(da, self._index(n, idx), np.moveaxis(contrib, 1, -1))
            dv = (delta * v).sum(axis=1)  # (N, *points)
            for c in range(k):
                gg[..., c] += dw[c] * dv
        return (da, gg), {}

    def ties(self, a: Array, g: Array) -> tuple[None, Array]:
        """Grid points on a pixel boundary (floor / round decided by rounding), or on the
        image's edge where a clip or reflection switches."""
        spatial = a.shape[2:]
        k = len(spatial)
        big = max(spatial)
        mask = np.zeros(g.shape[:-1], dtype=bool)
        for c in range(k):
            L = spatial[k - 1 - c]
            i, _ = _unnormalize(g[..., c], L, self.align_corners)
            if self.mode == "nearest":
                on = np.abs(np.abs(i - np.floor(i)) - 0.5) <= 1e-9 * big
            else:
                on = np.abs(i - np.rint(i)) <= 1e-9 * big
            mask |= on | near(i, (-1.0, -0.5, L - 1.0, L - 0.5), big)
        return None, np.repeat(mask[..., None], k, axis=-1)
