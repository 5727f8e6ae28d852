"""Resampling: F.interpolate's modes and PixelShuffle, each a linear map beside its transpose.

Interpolation is separable: along each spatial axis, output position o reads a few input
positions with fixed weights, an (L_out, L_in) sparse matrix M (one row per output
position, stored by its 1, 2 or 4 taps: `AxisMap`). The N-d map is the product of the
axes' maps, applied one axis at a time,

    z = x ×_D M_D ×_H M_H ×_W M_W           δ_prev = δ ×_D M_Dᵀ ×_H M_Hᵀ ×_W M_Wᵀ

so the backward is the forward with every matrix transposed: each input cell collects δ
from every output cell that read it, with the weight it was read with. The rows of M are
torch's, computed as torch's CPU kernels compute them (aten/src/ATen/native/UpSample.h),
rounding included where it decides an index:

    nearest        src = min(⌊o · s⌋, L_in − 1), the product rounded to float32
    nearest-exact  src = min(⌊max(s (o + ½) − ½, 0) + ½⌋, L_in − 1), likewise
    linear         r = s (o + ½) − ½ clamped at 0 (r = s·o with align_corners);
                   i₀ = min(⌊r⌋, L_in − 1), λ = clamp(r − i₀, 0, 1): (1 − λ) x[i₀] + λ x[i₀ + 1]
                   (x[i₀] alone on the last cell; the identity when L_out = L_in)
    cubic          r as linear but never clamped; i₀, t = clamp(r − i₀, 0, 1); Keys' cubic
                   convolution (A = −0.75) of x[i₀ − 1 .. i₀ + 2], indices clamped to the input
    area           adaptive average pooling (manual_bp.ops.pooling)

with s = 1/scale_factor when a scale factor reaches the kernel (recompute_scale_factor
False or None), else L_in/L_out; with align_corners, s = (L_in − 1)/(L_out − 1) (0 when
L_out = 1). The output size is ⌊L_in · scale_factor⌋ or `size`.

NOTE: torch's nearest backward computes its indices another way (in float32, and with
shortcuts when L_out is L_in or 2 L_in), so with a scale factor that reaches the kernel
(5 → 5 cells at scale_factor=1.1) its backward can send δ to cells the forward never read:
its gradient is not its forward's. Those calls are refused; `size=` or
recompute_scale_factor=True give a consistent pair.

PixelShuffle and PixelUnshuffle move values between channels and space: each is a
permutation, and each one's backward is the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape
from manual_bp.ops.pooling import AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d

# --- one axis: torch's source indices and weights -------------------------------------


def _floorf(r: Array) -> Array:
    """C's floorf on a double: rounded to float32 first, then floored (as torch does)."""
    return np.floor(np.asarray(r, dtype=np.float64).astype(np.float32)).astype(np.int64)


def _scale32(L_in: int, L_out: int, scale: float | None) -> np.float32:
    """compute_scales_value<float>: 1/scale (when given and > 0) or L_in/L_out, in float32."""
    if scale is not None and scale > 0:
        return np.float32(1.0 / scale)
    return np.float32(L_in) / np.float32(L_out)


def _ratio(L_in: int, L_out: int, align_corners: bool, scale: float | None) -> float:
    """area_pixel_compute_scale in double: the step between source positions."""
    if align_corners:
        return (L_in - 1) / (L_out - 1) if L_out > 1 else 0.0
    return 1.0 / scale if scale is not None and scale > 0 else L_in / L_out


def _source(ratio: float, o: Array, align_corners: bool, cubic: bool) -> Array:
    """area_pixel_compute_source_index: where output o sits on the input axis."""
    if align_corners:
        return ratio * o
    r = ratio * (o + 0.5) - 0.5
    return r if cubic else np.where(r < 0, 0.0, r)


def _guard(r: Array, L_in: int) -> tuple[Array, Array]:
    """guard_index_and_lambda: i₀ = min(⌊r⌋, L_in − 1) and λ = clamp(r − i₀, 0, 1)."""
    i0 = np.minimum(_floorf(r), L_in - 1)
    return i0, np.clip(r - i0, 0.0, 1.0)


def nearest_source(L_in: int, L_out: int, scale: float | None, exact: bool) -> Array:
    """The input position each output position copies, as torch's forward computes it
    (double precision, floorf): ⌊s·o⌋, or ⌊max(s(o + ½) − ½, 0) + ½⌋ for nearest-exact."""
    o = np.arange(L_out)
    s = _ratio(L_in, L_out, False, scale)
    if exact:
        src = _floorf(_source(s, o, align_corners=False, cubic=False) + 0.5)
    else:
        src = _floorf(s * o)
    return np.minimum(src, L_in - 1)


def nearest_source_in_backward(L_in: int, L_out: int, scale: float | None, exact: bool) -> Array:
    """The input position torch's nearest backward sends each output position's δ to
    (UpSample.h's nearest_idx / nearest_exact_idx): float32 arithmetic, and for nearest the
    shortcuts o when L_out = L_in and o >> 1 when L_out = 2 L_in. Where it differs from
    `nearest_source`, torch's gradient is not its forward's (such calls are refused)."""
    o = np.arange(L_out)
    s = _scale32(L_in, L_out, scale)
    if exact:  # (o + 0.5) is a double; floorf rounds the product to float32
        return np.minimum(_floorf((o + 0.5) * np.float64(s)), L_in - 1)
    if L_out == L_in:
        return o
    if L_out == 2 * L_in:
        return o >> 1
    return np.minimum(np.floor(o.astype(np.float32) * s).astype(np.int64), L_in - 1)


@dataclass(frozen=True)
class AxisMap:
    """One axis's (L_out, L_in) interpolation matrix M, stored by its taps: output position
    o = Σ_j weight[j, o] · x[index[j, o]] (1 tap for nearest, 2 linear, 4 cubic). Taps
    clamped onto one border cell stay separate terms, as torch sums them."""

    index: Array  # (taps, L_out) input positions
    weight: Array  # (taps, L_out)
    L_in: int

    def apply(self, x: Array, axis: int) -> Array:
        """x ×_axis M: the axis of size L_in replaced by L_out."""
        xf = np.moveaxis(x, axis, 0)  # (L_in, ...)
        shape = (-1,) + (1,) * (xf.ndim - 1)
        y = self.weight[0].reshape(shape) * xf[self.index[0]]
        for i, w in zip(self.index[1:], self.weight[1:], strict=True):
            y = y + w.reshape(shape) * xf[i]  # (L_out, ...)
        return np.moveaxis(y, 0, axis)

    def apply_transpose(self, g: Array, axis: int) -> Array:
        """g ×_axis Mᵀ: each input position collects what read it, with its weight."""
        gf = np.moveaxis(g, axis, 0)  # (L_out, ...)
        shape = (-1,) + (1,) * (gf.ndim - 1)
        dx = np.zeros((self.L_in, *gf.shape[1:]))
        for i, w in zip(self.index, self.weight, strict=True):
            np.add.at(dx, i, w.reshape(shape) * gf)  # (L_in, ...)
        return np.moveaxis(dx, 0, axis)

    def dense(self) -> Array:
        """M itself, (L_out, L_in)."""
        M = np.zeros((self.index.shape[1], self.L_in))
        rows = np.arange(self.index.shape[1])
        for i, w in zip(self.index, self.weight, strict=True):
            np.add.at(M, (rows, i), w)
        return M


def nearest_map(L_in: int, L_out: int, scale: float | None, exact: bool) -> AxisMap:
    """nearest / nearest-exact: one source per output position, weight 1."""
    src = nearest_source(L_in, L_out, scale, exact)
    return AxisMap(src[None], np.ones((1, L_out)), L_in)


def linear_map(L_in: int, L_out: int, align_corners: bool, scale: float | None) -> AxisMap:
    """linear: (1 − λ) x[i₀] + λ x[i₁], i₁ = i₀ + 1 but on the last cell."""
    o = np.arange(L_out)
    if L_out == L_in:  # NOTE: torch copies, whatever the scale factor
        return AxisMap(np.stack([o, o]), np.stack([np.ones(L_out), np.zeros(L_out)]), L_in)
    r = _source(_ratio(L_in, L_out, align_corners, scale), o, align_corners, cubic=False)
    i0, lam = _guard(r, L_in)
    i1 = i0 + (i0 < L_in - 1)
    return AxisMap(np.stack([i0, i1]), np.stack([1.0 - lam, lam]), L_in)


def cubic_coefficients(t: Array, A: float = -0.75) -> list[Array]:
    """Keys' cubic convolution weights of x[i₀ − 1], x[i₀], x[i₀ + 1], x[i₀ + 2] at offset t."""

    def near(x: Array) -> Array:  # |x| ≤ 1
        return ((A + 2) * x - (A + 3)) * x * x + 1

    def far(x: Array) -> Array:  # 1 < |x| < 2
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A

    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]


def cubic_map(L_in: int, L_out: int, align_corners: bool, scale: float | None) -> AxisMap:
    """bicubic along one axis: four taps around i₀, indices clamped to the input."""
    o = np.arange(L_out)
    r = _source(_ratio(L_in, L_out, align_corners, scale), o, align_corners, cubic=True)
    i0, t = _guard(r, L_in)
    index = np.stack([np.clip(i0 - 1 + j, 0, L_in - 1) for j in range(4)])
    return AxisMap(index, np.stack(cubic_coefficients(t)), L_in)


def axis_map(mode: str, L_in: int, L_out: int, align_corners: bool, scale: float | None) -> AxisMap:
    """M (L_out, L_in) of one axis: output position o = Σ_i M[o, i] · input position i."""
    if mode in ("nearest", "nearest-exact"):
        return nearest_map(L_in, L_out, scale, exact=mode == "nearest-exact")
    if mode == "bicubic":
        return cubic_map(L_in, L_out, align_corners, scale)
    return linear_map(L_in, L_out, align_corners, scale)


# --- F.interpolate ---------------------------------------------------------------------

#: the input rank each mode takes (torch raises NotImplementedError for the others)
MODE_RANKS: dict[str, tuple[int, ...]] = {
    "nearest": (3, 4, 5),
    "nearest-exact": (3, 4, 5),
    "area": (3, 4, 5),
    "linear": (3,),
    "bilinear": (4,),
    "bicubic": (4,),
    "trilinear": (5,),
}
_AREA = {1: AdaptiveAvgPool1d, 2: AdaptiveAvgPool2d, 3: AdaptiveAvgPool3d}


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


class Interpolate(Layer):
    """z = x ×_D M_D ×_H M_H ×_W M_W (F.interpolate);  δ_prev = δ ×_D M_Dᵀ ×_H M_Hᵀ ×_W M_Wᵀ.

    Also nn.Upsample (the same arguments), nn.UpsamplingNearest2d (mode="nearest") and
    nn.UpsamplingBilinear2d (mode="bilinear", align_corners=True). antialias=True is refused.
    """

    def __init__(
        self,
        size: int | Sequence[int] | None = None,
        scale_factor: float | Sequence[float] | None = None,
        mode: str = "nearest",
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
        antialias: bool = False,
    ) -> None:
        super().__init__()
        if mode not in MODE_RANKS:
            raise ValueError(f"unknown interpolation mode {mode!r}; known: {sorted(MODE_RANKS)}")
        if antialias:
            raise ValueError(
                "antialias=True is not supported (its backward is not a transpose we replicate)"
            )
        if mode in ("nearest", "nearest-exact", "area"):
            if align_corners is not None:
                raise ValueError(
                    "align_corners option can only be set with the interpolating modes: "
                    f"linear | bilinear | bicubic | trilinear, got mode {mode!r}"
                )
        elif align_corners is None:
            align_corners = False
        if size is not None and scale_factor is not None:
            raise ValueError("only one of size or scale_factor should be defined")
        if size is None and scale_factor is None:
            raise ValueError("either size or scale_factor should be defined")
        if size is not None:
            sizes = size if isinstance(size, (tuple, list)) else (size,)
            if not all(_is_int(s) for s in sizes):
                raise ValueError(f"expected size as an int or a tuple of ints, got {size!r}")
            if recompute_scale_factor:
                raise ValueError("recompute_scale_factor is not meaningful with an explicit size")
        else:
            scales = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,)
            if not all(_is_number(s) and np.isfinite(s) for s in scales):
                raise ValueError(
                    f"expected scale_factor as a finite number or a tuple of them, got "
                    f"{scale_factor!r}"
                )
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners = bool(align_corners) if align_corners is not None else None
        # "area" always needs a size: torch takes the recompute path for it
        self.recompute_scale_factor = bool(recompute_scale_factor) or (
            mode == "area" and size is None
        )

    def __repr__(self) -> str:
        return (
            f"Interpolate(size={self.size}, scale_factor={self.scale_factor}, mode={self.mode!r}, "
            f"align_corners={self.align_corners}, "
            f"recompute_scale_factor={self.recompute_scale_factor})"
        )

    def plan(self, in_shape: Shape) -> tuple[tuple[int, ...], tuple[float | None, ...]]:
        """(output sizes, the scale factors torch's kernel sees) for an input shape."""
        in_shape = tuple(in_shape)
        if len(in_shape) not in MODE_RANKS[self.mode]:
            ranks = " or ".join(f"{r}D" for r in MODE_RANKS[self.mode])
            raise ValueError(
                f"interpolation mode {self.mode!r} takes {ranks} input (N, C, *spatial), got "
                f"shape {in_shape}"
            )
        spatial = in_shape[2:]
        dim = len(spatial)
        if self.size is not None:
            if isinstance(self.size, (tuple, list)):
                if len(self.size) != dim:
                    raise ValueError(
                        f"expected size with {dim} entries for input of shape {in_shape}, got "
                        f"{tuple(self.size)}"
                    )
                out = tuple(int(s) for s in self.size)
            else:
                out = (int(self.size),) * dim
            scales: tuple[float | None, ...] = (None,) * dim
        else:
            if isinstance(self.scale_factor, (tuple, list)):
                if len(self.scale_factor) != dim:
                    raise ValueError(
                        f"expected scale_factor with {dim} entries for input of shape "
                        f"{in_shape}, got {tuple(self.scale_factor)}"
                    )
                factors = tuple(float(s) for s in self.scale_factor)
            else:
                factors = (float(self.scale_factor),) * dim  # type: ignore[arg-type]
            out = tuple(int(L * s) for L, s in zip(spatial, factors, strict=True))  # truncated
            scales = (None,) * dim if self.recompute_scale_factor else factors
        if min(spatial, default=0) < 1 or min(out) < 1:
            raise ValueError(
                f"input and output sizes should be greater than 0, got input {spatial} and "
                f"output {out} (input shape {in_shape})"
            )
        if self.mode in ("nearest", "nearest-exact"):
            exact = self.mode == "nearest-exact"
            for axis, (L, o, s) in enumerate(zip(spatial, out, scales, strict=True)):
                forward = nearest_source(L, o, s, exact)
                backward = nearest_source_in_backward(L, o, s, exact)
                if not np.array_equal(forward, backward):
                    cell = int(np.flatnonzero(forward != backward)[0])
                    raise ValueError(
                        f"{self.mode} interpolation of size {L} → {o} with scale_factor {s} "
                        f"(spatial dim {axis} of input shape {in_shape}): torch's forward copies "
                        f"input cell {forward[cell]} to output cell {cell} but its backward sends "
                        f"that cell's gradient to input cell {backward[cell]}, so its gradient is "
                        "not its forward's; pass size= or recompute_scale_factor=True"
                    )
        return out, scales

    def shape(self, in_shape: Shape) -> Shape:
        out, _ = self.plan(in_shape)
        return (*tuple(in_shape)[:2], *out)

    def forward(self, x: Array) -> tuple[Array, Any]:
        out, scales = self.plan(x.shape)
        if self.mode == "area":
            pool = _AREA[len(out)](out)
            z, cache = pool.forward(x)
            return z, (pool, cache)
        maps = [
            axis_map(self.mode, L, o, bool(self.align_corners), s)
            for L, o, s in zip(x.shape[2:], out, scales, strict=True)
        ]
        z = x
        for axis in reversed(range(len(maps))):  # W first, as torch's kernels sum
            z = maps[axis].apply(z, 2 + axis)
        return z, maps

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        if self.mode == "area":
            pool, pool_cache = cache
            return pool.backward(delta, pool_cache)
        dx = delta
        for axis, M in enumerate(cache):
            dx = M.apply_transpose(dx, 2 + axis)  # Mᵀ: each input collects what read it
        return dx, {}


# --- pixel shuffle ------------------------------------------------------------------------


def _shuffle(x: Array, r: int) -> Array:
    """(*, C·r², H, W) → (*, C, H·r, W·r): channel c·r² + i·r + j to pixel (h·r + i, w·r + j)."""
    *lead, Cr2, H, W = x.shape
    C = Cr2 // (r * r)
    y = x.reshape(*lead, C, r, r, H, W)
    n = len(lead)
    y = y.transpose(*range(n), n, n + 3, n + 1, n + 4, n + 2)  # (*, C, H, r, W, r)
    return y.reshape(*lead, C, H * r, W * r)


def _unshuffle(x: Array, r: int) -> Array:
    """(*, C, H·r, W·r) → (*, C·r², H, W): the inverse permutation of `_shuffle`."""
    *lead, C, Hr, Wr = x.shape
    H, W = Hr // r, Wr // r
    y = x.reshape(*lead, C, H, r, W, r)
    n = len(lead)
    y = y.transpose(*range(n), n, n + 2, n + 4, n + 1, n + 3)  # (*, C, r, r, H, W)
    return y.reshape(*lead, C * r * r, H, W)


def _factor(r: Any, name: str) -> int:
    if not _is_int(r) or r < 1:
        raise ValueError(f"{name} must be a positive int, got {r!r}")
    return int(r)


class PixelShuffle(Layer):
    """z = shuffle_r(x): (*, C·r², H, W) → (*, C, H·r, W·r);  δ_prev = unshuffle_r(δ)."""

    def __init__(self, upscale_factor: int) -> None:
        super().__init__()
        self.upscale_factor = _factor(upscale_factor, "upscale_factor")

    def __repr__(self) -> str:
        return f"PixelShuffle({self.upscale_factor})"

    def shape(self, in_shape: Shape) -> Shape:
        in_shape, r = tuple(in_shape), self.upscale_factor
        if len(in_shape) < 3 or in_shape[-3] % (r * r):
            raise ValueError(
                f"pixel_shuffle expects input (*, C·r², H, W) with r = {r}: channels "
                f"divisible by {r * r}, got shape {in_shape}"
            )
        *lead, C, H, W = in_shape
        return (*lead, C // (r * r), H * r, W * r)

    def forward(self, x: Array) -> tuple[Array, None]:
        return _shuffle(x, self.upscale_factor), None

    def backward(self, delta: Array, cache: None) -> tuple[Array, dict[str, Array]]:
        return _unshuffle(delta, self.upscale_factor), {}


class PixelUnshuffle(Layer):
    """z = unshuffle_r(x): (*, C, H·r, W·r) → (*, C·r², H, W);  δ_prev = shuffle_r(δ)."""

    def __init__(self, downscale_factor: int) -> None:
        super().__init__()
        self.downscale_factor = _factor(downscale_factor, "downscale_factor")

    def __repr__(self) -> str:
        return f"PixelUnshuffle({self.downscale_factor})"

    def shape(self, in_shape: Shape) -> Shape:
        in_shape, r = tuple(in_shape), self.downscale_factor
        if len(in_shape) < 3 or in_shape[-2] % r or in_shape[-1] % r:
            raise ValueError(
                f"pixel_unshuffle expects input (*, C, H·r, W·r) with r = {r}: H and W "
                f"divisible by {r}, got shape {in_shape}"
            )
        *lead, C, H, W = in_shape
        return (*lead, C * r * r, H // r, W // r)

    def forward(self, x: Array) -> tuple[Array, None]:
        return _unshuffle(x, self.downscale_factor), None

    def backward(self, delta: Array, cache: None) -> tuple[Array, dict[str, Array]]:
        return _shuffle(delta, self.downscale_factor), {}
