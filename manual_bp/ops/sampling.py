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
    """g = F.affine_grid(θ, size, align_corners): θ (N, 2, 3), size (N, C, H, W) → (N, H, W, 2);
    g[n, h, w] = θ_n (x_w, y_h, 1)ᵀ;  θ̄_n = Σ_hw ḡ[n, h, w] (x_w, y_h, 1)."""

    def __init__(self, size: tuple[int, ...], align_corners: bool = False) -> None:
        super().__init__()
        self.size, self.align_corners = tuple(int(n) for n in size), bool(align_corners)
        if len(self.size) != 4:
            raise ValueError(
                f"affine_grid: only 2-d grids (size (N, C, H, W)) are supported, got {self.size}"
            )

    def __repr__(self) -> str:
        return f"AffineGrid({self.size}, align_corners={self.align_corners})"

    def shape(self, theta_shape: Shape) -> Shape:
        N, _, H, W = self.size
        if tuple(theta_shape) != (N, 2, 3):
            raise ValueError(
                f"affine_grid: expected θ of shape ({N}, 2, 3) for size {self.size}, got "
                f"{tuple(theta_shape)}"
            )
        return (N, H, W, 2)

    def _base(self) -> Array:
        _, _, H, W = self.size
        base = np.ones((H, W, 3))
        base[..., 0] = _linspace(W, self.align_corners)[None, :]
        base[..., 1] = _linspace(H, self.align_corners)[:, None]
        return base.reshape(H * W, 3)

    def forward(self, theta: Array) -> tuple[Array, Array]:
        N, _, H, W = self.size
        self.shape(theta.shape)
        base = self._base()
        return (base @ np.swapaxes(theta, 1, 2)).reshape(N, H, W, 2), base

    def backward(self, delta: Array, base: Array) -> tuple[Array, dict[str, Array]]:
        N = delta.shape[0]
        D = delta.reshape(N, -1, 2)
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
    """z = F.grid_sample(a, g, mode, padding_mode, align_corners): a (N, C, H, W), g
    (N, Ho, Wo, 2) of (x, y) in [−1, 1] → z (N, C, Ho, Wo); the taps and weights of the module
    docstring, ā scattered back with the weights, ḡ through the weights' derivatives."""

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
        if len(a_shape) != 4 or len(g_shape) != 4 or g_shape[-1] != 2 or a_shape[0] != g_shape[0]:
            raise ValueError(
                "grid_sample: only 2-d sampling is supported: expected an input (N, C, H, W) and "
                f"a grid (N, Ho, Wo, 2), got {tuple(a_shape)} and {tuple(g_shape)}"
            )
        return (a_shape[0], a_shape[1], g_shape[1], g_shape[2])

    def _taps(self, g: Array, H: int, W: int) -> list[tuple[Array, Array, Array, Array, Array]]:
        """Each tap as (row, col, weight, ∂weight/∂gx, ∂weight/∂gy), arrays of (N, Ho, Wo)."""
        ac, pad = self.align_corners, self.padding_mode
        ix, sx = _unnormalize(g[..., 0], W, ac)
        iy, sy = _unnormalize(g[..., 1], H, ac)
        if self.mode == "bicubic":
            x0, y0 = np.floor(ix), np.floor(iy)
            wx, dwx = _cubic(ix - x0)
            wy, dwy = _cubic(iy - y0)
            taps = []
            for i in range(4):
                for j in range(4):
                    col, _ = _pad_coordinate(x0 - 1 + j, W, pad, ac)
                    row, _ = _pad_coordinate(y0 - 1 + i, H, pad, ac)
                    w = wy[i] * wx[j]
                    taps.append((row, col, w, wy[i] * dwx[j] * sx, dwy[i] * wx[j] * sy))
            return taps
        ix, dix = _pad_coordinate(ix, W, pad, ac)
        iy, diy = _pad_coordinate(iy, H, pad, ac)
        if self.mode == "nearest":
            zero = np.zeros_like(ix)
            return [(np.rint(iy), np.rint(ix), np.ones_like(ix), zero, zero)]
        x0, y0 = np.floor(ix), np.floor(iy)
        tx, ty = ix - x0, iy - y0
        gx, gy = dix * sx, diy * sy  # d(pixel)/d(grid) with the padding's derivative
        return [
            (y0, x0, (1 - tx) * (1 - ty), -(1 - ty) * gx, -(1 - tx) * gy),
            (y0, x0 + 1, tx * (1 - ty), (1 - ty) * gx, -tx * gy),
            (y0 + 1, x0, (1 - tx) * ty, -ty * gx, (1 - tx) * gy),
            (y0 + 1, x0 + 1, tx * ty, ty * gx, tx * gy),
        ]

    def forward(self, a: Array, g: Array) -> tuple[Array, Any]:
        self.shape(a.shape, g.shape)
        N, C, H, W = a.shape
        n = np.arange(N)[:, None, None]
        z = np.zeros((N, C, *g.shape[1:3]))
        reads = []
        for row, col, w, dgx, dgy in self._taps(g, H, W):
            inside = (row >= 0) & (row <= H - 1) & (col >= 0) & (col <= W - 1)
            r = np.where(inside, row, 0).astype(np.int64)
            c = np.where(inside, col, 0).astype(np.int64)
            v = np.where(inside[:, None], np.moveaxis(a[n, :, r, c], -1, 1), 0.0)  # (N, C, Ho, Wo)
            z += w[:, None] * v
            reads.append((r, c, inside, w, dgx, dgy, v))
        return z, (a.shape, reads)

    def backward(self, delta: Array, cache: Any) -> tuple[tuple[Array, Array], dict]:
        a_shape, reads = cache
        N = a_shape[0]
        n = np.arange(N)[:, None, None]
        da = np.zeros(a_shape)
        gg = np.zeros((*delta.shape[:1], *delta.shape[2:], 2))
        for r, c, inside, w, dgx, dgy, v in reads:
            contrib = np.where(inside[:, None], w[:, None] * delta, 0.0)  # (N, C, Ho, Wo)
            np.add.at(da, (n, slice(None), r, c), np.moveaxis(contrib, 1, -1))
            dv = (delta * v).sum(axis=1)  # (N, Ho, Wo)
            gg[..., 0] += dgx * dv
            gg[..., 1] += dgy * dv
        return (da, gg), {}

    def ties(self, a: Array, g: Array) -> tuple[None, Array]:
        """Grid points on a pixel boundary (floor / round decided by rounding), or on the
        image's edge where a clip or reflection switches."""
        N, C, H, W = a.shape
        ac = self.align_corners
        ix, _ = _unnormalize(g[..., 0], W, ac)
        iy, _ = _unnormalize(g[..., 1], H, ac)
        if self.mode == "nearest":
            points = lambda t: np.abs(np.abs(t - np.floor(t)) - 0.5) <= 1e-9 * max(H, W)  # noqa: E731
        else:
            points = lambda t: np.abs(t - np.rint(t)) <= 1e-9 * max(H, W)  # noqa: E731
        edge = near(ix, (-1.0, -0.5, W - 1.0, W - 0.5), max(H, W)) | near(
            iy, (-1.0, -0.5, H - 1.0, H - 0.5), max(H, W)
        )
        mask = points(ix) | points(iy) | edge
        return None, np.repeat(mask[..., None], 2, axis=-1)
