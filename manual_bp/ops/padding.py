"""Padding: F.pad's four modes, each a pad and its fold (the pad's transpose), side by side.

A pad is linear and copies: every cell of x_pad is a cell of x, or a constant. Its backward
folds the gradient of each padded cell back onto the input cell it copies (and drops the
constant's). Along one axis of size L, padded by lo before and hi after (j ≥ 1):

    constant   x_pad[lo − j] = c                 x_pad[lo + L − 1 + j] = c        fold: crop
    reflect    x_pad[lo − j] = x[j]              x_pad[lo + L − 1 + j] = x[L − 1 − j]
    replicate  x_pad[lo − j] = x[0]              x_pad[lo + L − 1 + j] = x[L − 1]
    circular   x_pad[lo − j] = x[L − j]          x_pad[lo + L − 1 + j] = x[j − 1]

Pads are separable: an N-d pad is one such pad per axis, and so is its fold.

Negative pads crop, as in torch's F.pad. Reflect and replicate index the original input
(pad first, then crop: `F.pad([1..5], (-3, 4), 'reflect')` is [4, 5, 4, 3, 2, 1]); circular
wraps around what is left after the crop (crop first, then pad: `(-1, 2)` gives
[2, 3, 4, 5, 2, 3]); for constant the order does not matter. The backward runs the same
steps in reverse, each transposed: the transpose of a crop is a zero pad.

Conv's padding_mode uses `pad` and `fold_pad` with non-negative pads ("zeros" is conv's name
for constant 0); F.pad and the padding modules are the `Pad` layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape

Pads = tuple[tuple[int, int], ...]  # (before, after) for each padded trailing axis

# --- the fold of each mode along one axis (the pad's transpose) -----------------------


def _along(axis: int, start: int, stop: int) -> tuple[slice, ...]:
    """Index of positions start..stop−1 along `axis`."""
    return (slice(None),) * axis + (slice(start, stop),)


def _fold_constant(g: Array, axis: int, lo: int, hi: int) -> Array:
    """A constant (zeros) is not x: the gradient of the padded cells is dropped."""
    return g[_along(axis, lo, g.shape[axis] - hi)]


def _fold_reflect(g: Array, axis: int, lo: int, hi: int) -> Array:
    """x_pad[lo − j] = x[j], x_pad[lo + L − 1 + j] = x[L − 1 − j] (j ≥ 1): mirror it back."""
    L = g.shape[axis] - lo - hi
    dx = g[_along(axis, lo, lo + L)].copy()
    dx[_along(axis, 1, lo + 1)] += np.flip(g[_along(axis, 0, lo)], axis)
    dx[_along(axis, L - 1 - hi, L - 1)] += np.flip(g[_along(axis, lo + L, lo + L + hi)], axis)
    return dx


def _fold_replicate(g: Array, axis: int, lo: int, hi: int) -> Array:
    """x_pad = x[0] left of the input, x[L − 1] right of it: the edges collect the sums."""
    L = g.shape[axis] - lo - hi
    dx = g[_along(axis, lo, lo + L)].copy()
    dx[_along(axis, 0, 1)] += g[_along(axis, 0, lo)].sum(axis, keepdims=True)
    dx[_along(axis, L - 1, L)] += g[_along(axis, lo + L, lo + L + hi)].sum(axis, keepdims=True)
    return dx


def _fold_circular(g: Array, axis: int, lo: int, hi: int) -> Array:
    """x_pad[j] = x[(j − lo) mod L]: the left pad copies the input's end, the right its start."""
    L = g.shape[axis] - lo - hi
    dx = g[_along(axis, lo, lo + L)].copy()
    dx[_along(axis, L - lo, L)] += g[_along(axis, 0, lo)]
    dx[_along(axis, 0, hi)] += g[_along(axis, lo + L, lo + L + hi)]
    return dx


@dataclass(frozen=True)
class PaddingMode:
    """How a mode pads (NumPy's np.pad name), how its gradient folds, how wide it may be."""

    numpy_mode: str
    fold: Callable[[Array, int, int, int], Array]
    #: the widest padding torch allows on a side of an input of size L, and its rule in words
    max_pad: Callable[[int], float]
    rule: str


_CONSTANT = PaddingMode("constant", _fold_constant, lambda L: np.inf, "")

#: keyed by torch's names: conv's padding_mode ("zeros", ...) and F.pad's mode ("constant", ...)
PADDING_MODES: dict[str, PaddingMode] = {
    "zeros": _CONSTANT,
    "constant": _CONSTANT,
    "reflect": PaddingMode("reflect", _fold_reflect, lambda L: L - 1, "smaller than"),
    "replicate": PaddingMode("edge", _fold_replicate, lambda L: np.inf, ""),
    "circular": PaddingMode("wrap", _fold_circular, lambda L: L, "at most"),
}


def pad(x: Array, pads: Pads, mode: str, value: float = 0.0) -> Array:
    """x_pad: x's trailing len(pads) axes padded by (before, after) ≥ 0 as F.pad(x, ·, mode)."""
    width = ((0, 0),) * (x.ndim - len(pads)) + tuple(pads)
    numpy_mode = PADDING_MODES[mode].numpy_mode
    if numpy_mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=value)
    return np.pad(x, width, mode=numpy_mode)


def fold_pad(g: Array, pads: Pads, mode: str) -> Array:
    """∂L/∂x from ∂L/∂x_pad: the transpose of `pad`, one trailing axis at a time."""
    fold = PADDING_MODES[mode].fold
    for axis, (lo, hi) in enumerate(pads, start=g.ndim - len(pads)):
        g = fold(g, axis, lo, hi)
    return g


# --- negative pads: crops, and their transpose ----------------------------------------


def _crop(x: Array, crops: Pads) -> Array:
    """x with crops[a] = (before, after) ≥ 0 cells removed from each trailing axis."""
    lead = x.ndim - len(crops)
    keep = (slice(lo, x.shape[lead + a] - hi) for a, (lo, hi) in enumerate(crops))
    return x[(slice(None),) * lead + tuple(keep)]


def _uncrop(g: Array, crops: Pads) -> Array:
    """The transpose of a crop: the removed cells back, as zeros."""
    return np.pad(g, ((0, 0),) * (g.ndim - len(crops)) + tuple(crops))


def _split(pads: Pads) -> tuple[Pads, Pads]:
    """Signed pads as (growth ≥ 0, crop ≥ 0) per side."""
    grow = tuple((max(lo, 0), max(hi, 0)) for lo, hi in pads)
    crop = tuple((max(-lo, 0), max(-hi, 0)) for lo, hi in pads)
    return grow, crop


# --- the layer -------------------------------------------------------------------------

_NON_CONSTANT_RANKS = {1: (2, 3), 2: (3, 4), 3: (4, 5)}
_NAMES = {1: "L", 2: "H, W", 3: "D, H, W"}


def pads_from_torch(pad_arg: Sequence[int]) -> Pads:
    """torch's flat pad (left, right, top, bottom, front, back), last axis first, as
    ((before, after), …) for the trailing axes in order."""
    pairs = [(int(pad_arg[i]), int(pad_arg[i + 1])) for i in range(0, len(pad_arg), 2)]
    return tuple(reversed(pairs))


class Pad(Layer):
    """z = F.pad(x, pad, mode, value);  δ_prev = the fold of δ (each copy's gradient summed
    onto the cell it copies; constants' dropped, cropped cells' zero)."""

    def __init__(
        self, pad: Sequence[int], mode: str = "constant", value: float | None = None
    ) -> None:
        super().__init__()
        if mode not in ("constant", "reflect", "replicate", "circular"):
            raise ValueError(
                f"unknown padding mode {mode!r}; known: constant, reflect, replicate, circular"
            )
        pad = tuple(pad) if isinstance(pad, (tuple, list)) else pad
        if not isinstance(pad, tuple) or not all(
            isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in pad
        ):
            raise ValueError(f"expected pad as a tuple of ints, got {pad!r}")
        if len(pad) % 2:
            raise ValueError(f"pad length must be divisible by 2, got {len(pad)}: {pad}")
        if mode != "constant":
            if value not in (None, 0, 0.0):
                raise ValueError(f"padding mode {mode!r} takes no value, got value={value!r}")
            if len(pad) // 2 not in _NON_CONSTANT_RANKS:
                raise ValueError(
                    f"{mode} padding pads 1, 2 or 3 trailing dims: pad of length 2, 4 or 6, "
                    f"got {len(pad)}: {pad}"
                )
        elif value is not None and not (
            isinstance(value, (int, float, np.integer, np.floating)) and not np.isnan(value)
        ):  # (±inf pads before a max: a morphological dilation)
            raise ValueError(f"expected a finite number or ±inf as padding value, got {value!r}")
        self.pad = tuple(int(p) for p in pad)
        self.pads = pads_from_torch(self.pad)
        self.mode = mode
        self.value = 0.0 if value is None else float(value)

    def __repr__(self) -> str:
        value = f", value={self.value}" if self.mode == "constant" else ""
        return f"Pad({self.pad}, mode={self.mode!r}{value})"

    def shape(self, in_shape: Shape) -> Shape:
        in_shape, k = tuple(in_shape), len(self.pads)
        if self.mode == "constant":
            if k > len(in_shape):
                raise ValueError(
                    f"pad {self.pad} pads {k} dims, more than the {len(in_shape)} of the "
                    f"input shape {in_shape}"
                )
        elif len(in_shape) not in _NON_CONSTANT_RANKS[k]:
            names = _NAMES[k]
            raise ValueError(
                f"{self.mode} padding of {k} dims (pad {self.pad}) expects input (N, C, {names}) "
                f"or (C, {names}), got shape {in_shape}"
            )
        mode, lead = PADDING_MODES[self.mode], len(in_shape) - k
        out = list(in_shape[:lead])
        for axis, (L, (lo, hi)) in enumerate(zip(in_shape[lead:], self.pads, strict=True)):
            where = f"along dim {lead + axis} of input shape {in_shape} (pad {self.pad})"
            size = L + lo + hi
            if self.mode == "circular":
                kept = L - max(-lo, 0) - max(-hi, 0)
                # NOTE: torch errors (overlapping copies) or reads uninitialised memory past this
                if max(lo, hi) > kept:
                    raise ValueError(
                        f"circular padding ({lo}, {hi}) must be at most the size {kept} left "
                        f"after cropping {where}"
                    )
            elif max(lo, hi) > mode.max_pad(L):
                raise ValueError(
                    f"{self.mode} padding ({lo}, {hi}) must be {mode.rule} the input size {L} "
                    f"{where}"
                )
            smallest = 0 if self.mode in ("constant", "circular") else 1
            if size < smallest:
                raise ValueError(
                    f"padding ({lo}, {hi}) leaves {size} cells {where}; {self.mode} padding "
                    f"needs at least {smallest}"
                )
            out.append(size)
        return tuple(out)

    def forward(self, x: Array) -> tuple[Array, Any]:
        grow, crop = _split(self.pads)
        if self.mode == "circular":  # wrap around what is left after the crop
            z = pad(_crop(x, crop), grow, self.mode)
        else:  # reflect and replicate read the original input; constant: either order
            z = _crop(pad(x, grow, self.mode, self.value), crop)
        return z, None

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        grow, crop = _split(self.pads)
        if self.mode == "circular":
            return _uncrop(fold_pad(delta, grow, self.mode), crop), {}
        return fold_pad(_uncrop(delta, crop), grow, self.mode), {}
