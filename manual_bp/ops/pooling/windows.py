"""The windows of a pooling layer, one table per spatial axis, and the max pool's kernels
(first strict maximum in torch's tap order, its ties, δ routed to the winner)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from manual_bp.ops.base import TIE_RTOL, Array, Shape

Size = int | Sequence[int]

# --- windows, one table per spatial axis ---------------------------------------------


def pooling_output_size(L: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling_output_shape: ⌊ or ⌈(L + 2p − d(k − 1) − 1)/s⌉ + 1, the last window
    starting inside the input or its left padding."""
    size = (L + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (size - 1) * s >= L + p:
        size -= 1
    return size


def fixed_windows(k: int, s: int, p: int, d: int, out: int) -> Array:
    """(out, k): the input position s·o − p + d·j of tap j of window o (outside [0, L): padding)."""
    return s * np.arange(out)[:, None] - p + d * np.arange(k)


def adaptive_bounds(L: int, out: int) -> tuple[Array, Array]:
    """torch's adaptive windows: start = ⌊o·L/out⌋, end = ⌈(o+1)·L/out⌉."""
    o = np.arange(out)
    return o * L // out, -(-(o + 1) * L // out)


def adaptive_windows(L: int, out: int) -> Array:
    """(out, k_max): the input positions of each adaptive window, L (padding) past its end."""
    start, end = adaptive_bounds(L, out)
    pos = start[:, None] + np.arange((end - start).max())
    return np.where(pos < end[:, None], pos, L)


def indicator(windows: Array, L: int) -> Array:
    """(out, L): 1 where input position l is in window o (taps on padding dropped)."""
    on_input = (windows >= 0) & (windows < L)
    rows = np.broadcast_to(np.arange(windows.shape[0])[:, None], windows.shape)
    M = np.zeros((windows.shape[0], L))
    M[rows[on_input], windows[on_input]] = 1.0
    return M


def along_axes(x: Array, mats: Sequence[Array]) -> Array:
    """y = x ×₁ M₁ ×₂ M₂ …: the last len(mats) axes each contracted with its (out, in) matrix."""
    n = len(mats)
    for a, M in enumerate(mats):
        axis = x.ndim - n + a
        x = np.swapaxes(np.swapaxes(x, axis, -1) @ M.T, axis, -1)
    return x


def outer(factors: Sequence[Array]) -> Array:
    """f₁ ⊗ f₂ ⊗ …: the per-axis factors multiplied into one array over the output pixels."""
    result = np.ones(())
    for f in factors:
        result = np.multiply.outer(result, f)
    return result


def _pick(x: Array, axis: int, positions: Array) -> Array:
    """x at `positions` along `axis`: a strided view where they are evenly spaced."""
    step = int(positions[1] - positions[0]) if len(positions) > 1 else 1
    if step > 0 and np.array_equal(positions, positions[0] + step * np.arange(len(positions))):
        start, stop = int(positions[0]), int(positions[-1]) + 1
        return x[(slice(None),) * axis + (slice(start, stop, step),)]
    return np.take(x, positions, axis=axis)


def _taps(x: Array, tables: Sequence[Array]) -> Iterator[tuple[Array, Array]]:
    """For each kernel offset, in the window's row-major order: the value each window sees
    there (..., *out), −∞ on padding, and its flat position in the input plane (clipped)."""
    n, lead = len(tables), x.ndim - len(tables)
    spatial = x.shape[lead:]
    # −∞ padding wide enough for every tap outside the input
    pads = [
        (max(0, -int(t.min())), max(0, int(t.max()) - L + 1))
        for t, L in zip(tables, spatial, strict=True)
    ]
    if any(lo or hi for lo, hi in pads):
        x_pad = np.pad(x, ((0, 0),) * lead + tuple(pads), constant_values=-np.inf)
    else:  # every tap on the input: no copy
        x_pad = x
    for taps in np.ndindex(*(t.shape[1] for t in tables)):  # one kernel offset at a time
        at = [t[:, j] for t, j in zip(tables, taps, strict=True)]  # (out_a,) input positions
        value = x_pad
        for axis, (a, (lo, _)) in enumerate(zip(at, pads, strict=True)):
            value = _pick(value, lead + axis, a + lo)  # (..., *out) once every axis is picked
        grid = tuple(
            a.reshape([-1 if b == axis else 1 for b in range(n)]) for axis, a in enumerate(at)
        )
        yield value, np.ravel_multi_index(grid, spatial, mode="clip")


def max_pool(x: Array, tables: Sequence[Array]) -> tuple[Array, Array]:
    """z = max over each window, and which tap of the window won: the first maximum in the
    window's row-major order, as torch keeps it (`if val > maxval`). Returns z and the
    winning taps' flat index into the window (..., *out), as small unsigned ints.

    Taps on padding read −∞ and never win over a finite input."""
    values = [value for value, _ in _taps(x, tables)]  # one strided view per kernel offset
    z = values[0].copy()
    for value in values[1:]:
        np.maximum(z, value, out=z)
    # the first tap equal to the maximum: the later taps are written first, the earlier win
    tap = np.zeros(z.shape, dtype=np.min_scalar_type(len(values) - 1))
    for j in range(len(values) - 1, -1, -1):
        np.copyto(tap, j, where=values[j] == z)
    return z, tap


def winner_positions(tap: Array, tables: Sequence[Array], spatial: Shape, dilation: Shape) -> Array:
    """The flat position in its input plane of each window's winning tap (..., *out): the
    window's first tap's position plus the winning tap's offset from it, d·j along each
    axis (the same for every window; windows start where their tables say)."""
    n = len(tables)
    strides = [int(np.prod(spatial[a + 1 :])) for a in range(n)]  # of each axis in a plane
    first = sum(
        t[:, 0].reshape([-1 if b == a else 1 for b in range(n)]) * stride
        for a, (t, stride) in enumerate(zip(tables, strides, strict=True))
    )  # (*out): may lie on the padding; the winner never does
    kernel = [t.shape[1] for t in tables]
    offsets = sum(
        d * j * stride
        for j, d, stride in zip(np.indices(kernel).reshape(n, -1), dilation, strides, strict=True)
    )  # (K,): tap j's offset from the window's first tap
    return first + offsets[tap]


def max_pool_ties(x: Array, tables: Sequence[Array]) -> Array:
    """The entries of x tied for a window's maximum: within TIE_RTOL · max|x| of it, in a
    window where at least two taps on the input are (the max and its runner-up)."""
    n = len(tables)
    finite = np.abs(x[np.isfinite(x)])
    tol = TIE_RTOL * float(finite.max(initial=0.0))
    z, _ = max_pool(x, tables)
    # taps on the input (not on padding): a window's count of entries within tol of its max
    on_input = [(t >= 0) & (t < L) for t, L in zip(tables, x.shape[-n:], strict=True)]
    valid = [
        outer([ok[:, j] for ok, j in zip(on_input, taps, strict=True)]).astype(bool)
        for taps in np.ndindex(*(t.shape[1] for t in tables))
    ]
    count = np.zeros(z.shape, dtype=np.intp)
    for (value, _), ok in zip(_taps(x, tables), valid, strict=True):
        count += (value >= z - tol) & ok
    # mark the tied taps of every tied window, each input plane at its own offset
    planes = int(np.prod(x.shape[:-n]))
    plane = int(np.prod(x.shape[-n:]))
    offset = (np.arange(planes) * plane).reshape(*x.shape[:-n], *(1,) * n)
    mask = np.zeros(x.size, dtype=bool)
    for (value, position), ok in zip(_taps(x, tables), valid, strict=True):
        tied = (count >= 2) & (value >= z - tol) & ok
        mask[(position + offset)[tied]] = True
    return mask.reshape(x.shape)


def route_to_winner(delta: Array, winner: Array, in_shape: Shape, n: int) -> Array:
    """δ_prev[w(p)] += δ[p]: a scatter-add over flat positions, one offset per input plane."""
    plane = int(np.prod(in_shape[-n:]))
    planes = int(np.prod(in_shape[:-n]))
    offset = (np.arange(planes) * plane).reshape(*in_shape[:-n], *(1,) * n)
    dx = np.bincount((winner + offset).ravel(), weights=delta.ravel(), minlength=planes * plane)
    return dx.reshape(in_shape)
