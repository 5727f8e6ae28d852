"""The convolution's fast kernels: the formulas of manual_bp.ops.conv.reference as one matmul
over channels per block of kernel offsets (im2col restricted to the block), the batch taken
in parts that fit a memory budget, δ_prev phase by phase without the stride's zeros.

The rules that choose blocks, parts and threads are the three numbers of `Tuning`, read at
each call. `tuned(...)` changes them for a block of code: the tests use it to reach every
path on small shapes, the benchmark to measure the choices.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace

import numpy as np

from manual_bp import parallel
from manual_bp.ops.base import Array, Shape
from manual_bp.ops.conv.reference import _output_size
from manual_bp.ops.padding import Pads

#: How many bytes of im2col columns may exist at once (all threads together). The batch is
#: taken in parts whose columns fit (at least one part per thread of manual_bp.parallel);
#: a sample whose columns alone do not fit has its kernel offsets summed in blocks that do,
#: the columns of a block's offsets side by side, down to one offset per matmul (the plain
#: per-offset sum, whose columns cost about the input). Measured on the benchmark's
#: convolutions (reports/benchmark/README.md, "The convolution kernels").
COLUMN_BYTES = 64 * 2**20
#: Output pixels per sample from which each sample gets its own GEMM (N matmuls of
#: (C_out, C_in·K) @ (C_in·K, P), no copy of the result); below it the batch is folded into
#: the GEMM's columns (one matmul of (C_out, C_in·K) @ (C_in·K, N·P)), whose result is then
#: transposed back to (N, C_out, P). Measured as COLUMN_BYTES.
PER_SAMPLE_PIXELS = 512
#: Multiply-adds from which a convolution's batch is split over manual_bp.parallel's threads
#: (when the caller set more than one): handing a part to a thread costs ~50 µs.
SPLIT_MACS = 4_000_000


@dataclass(frozen=True)
class Tuning:
    """The kernels' memory and threading rules (defaults: the constants above)."""

    column_bytes: int = COLUMN_BYTES
    per_sample_pixels: int = PER_SAMPLE_PIXELS
    split_macs: int = SPLIT_MACS


#: the rules in force; change them with `tuned`, never by assignment
TUNING = Tuning()


@contextmanager
def tuned(**settings: int) -> Iterator[Tuning]:
    """Within the block the kernels use `settings` (Tuning's fields by name) instead of the
    rules in force; the previous rules come back after it, also on an exception."""
    global TUNING
    known = {f.name for f in fields(Tuning)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"unknown tuning {unknown}; known: {sorted(known)}")
    saved, TUNING = TUNING, replace(TUNING, **settings)
    try:
        yield TUNING
    finally:
        TUNING = saved


def offset_blocks(kernel: Shape, bytes_per_offset: int, budget: int) -> list[list[int]]:
    """The kernel's flat offsets 0..K−1 in consecutive blocks, as many per block as `budget`
    bytes of columns allow (at least one)."""
    K = int(np.prod(kernel))
    per_block = max(1, min(K, budget // max(1, bytes_per_offset)))
    return [list(range(i, min(K, i + per_block))) for i in range(0, K, per_block)]


def windows(a: Array, kernel: Shape, out: Shape, stride: Shape, dilation: Shape) -> Array:
    """a[n, c, s·p + d·k] for every kernel offset k and output pixel p: a read-only view
    (N, C, *kernel, *out) of a, nothing copied (`shifted` is one of its slices)."""
    n, lead = len(kernel), a.strides[:2]
    steps = a.strides[2:]
    return np.lib.stride_tricks.as_strided(
        a,
        shape=(*a.shape[:2], *kernel, *out),
        strides=(
            *lead,
            *(d * t for d, t in zip(dilation, steps, strict=True)),
            *(s * t for s, t in zip(stride, steps, strict=True)),
        )[: 2 + 2 * n],
        writeable=False,
    )


def columns(
    a: Array, block: list[int], kernel: Shape, out: Shape, stride: Shape, dilation: Shape,
    groups: int, per_sample: bool,
) -> Array:  # fmt: skip
    """im2col over a block of kernel offsets: a[n, c, s·p + d·k] for c, k ∈ block, p.

    Per sample: (N, G, C/G · |block|, P); batch folded: (G, C/G · |block|, N · P). Rows are
    (channel, offset) in W's own order, so W[:, :, block] flattened is the matching matrix."""
    N, C = a.shape[:2]
    P, K = int(np.prod(out)), int(np.prod(kernel))
    w = windows(a, kernel, out, stride, dilation)  # (N, C, *kernel, *out), a view
    if len(block) < K:  # the block's offsets only: (N, C, |block|, *out), a copy
        w = w[(slice(None), slice(None), *np.unravel_index(block, kernel))]
    rows = C // groups * len(block)
    if per_sample:
        return w.reshape(N, groups, rows, P)  # (one copy: the view's axes do not merge)
    n = len(out)
    w = w.transpose(1, *range(2, w.ndim - n), 0, *range(w.ndim - n, w.ndim))  # (C, ·, N, *out)
    return w.reshape(groups, rows, N * P)  # (one copy)


def _plan(N: int, C_in: int, C_out: int, kernel: Shape, P: int, groups: int) -> tuple:
    """How a convolution's batch is taken: (parts, whether they go to manual_bp.parallel's
    threads — from Tuning.split_macs multiply-adds —, the bytes of columns one part may use)."""
    K = int(np.prod(kernel))
    split = N * P * C_out * (C_in // groups) * K >= TUNING.split_macs
    threads = parallel.workers() if split else 1
    budget = max(1, TUNING.column_bytes // threads)
    sample = C_in * K * P * 8  # one sample's columns
    return max(threads, -(-N * sample // budget)), split, budget


# --- the fast kernels ------------------------------------------------------------------


def correlate(x_pad: Array, W: Array, stride: Shape, dilation: Shape, groups: int) -> Array:
    """z = W ⋆ x_pad (no bias) = Σ_k W[:, :, k] · shifted_k(x_pad), per group: (N, C_out, *out).

    One matmul of W against the columns (im2col) per part of the batch (`_plan`), or per
    block of kernel offsets within it where a part's columns would not fit Tuning.column_bytes."""
    N, C_in = x_pad.shape[:2]
    C_out, kernel = W.shape[0], W.shape[2:]
    out = _output_size(x_pad, kernel, stride, dilation)
    z = np.empty((N, C_out, *out))
    parts, split, budget = _plan(N, C_in, C_out, kernel, int(np.prod(out)), groups)
    parallel.map_parts(
        lambda part: _correlate(x_pad[part], W, stride, dilation, groups, z[part], budget),
        N,
        parts=parts,
        worth_splitting=split,
    )
    return z


def _correlate(
    x_pad: Array, W: Array, stride: Shape, dilation: Shape, groups: int, z: Array, budget: int
) -> None:
    """`correlate` on one part of the batch, written into z (that part of the output)."""
    N, C_in = x_pad.shape[:2]
    C_out, C_g, *kernel = W.shape
    out = z.shape[2:]
    P = int(np.prod(out))
    if N == 0:
        return
    per_sample = P >= TUNING.per_sample_pixels
    W_g = W.reshape(groups, C_out // groups, C_g, -1)  # (G, C_out/G, C_in/G, K)
    z_g = z.reshape(N, groups, C_out // groups, P)  # (a view: the part is contiguous)
    total = None
    for i, block in enumerate(offset_blocks(kernel, N * C_in * P * 8, budget)):
        W_b = W_g[..., block].reshape(groups, C_out // groups, -1)  # (G, C_out/G, C_in/G·|b|)
        cols = columns(x_pad, block, kernel, out, stride, dilation, groups, per_sample)
        if per_sample:  # (N, G, C_out/G, P), summed in place
            if i == 0:
                np.matmul(W_b, cols, out=z_g)
            else:
                z_g += np.matmul(W_b, cols)
        else:  # (G, C_out/G, N·P)
            z_b = np.matmul(W_b, cols)
            total = z_b if total is None else total + z_b
    if not per_sample:
        z_g[...] = total.reshape(groups, C_out // groups, N, P).transpose(2, 0, 1, 3)


def correlate_weight_grad(
    x_pad: Array, delta: Array, kernel: Shape, stride: Shape, dilation: Shape, groups: int
) -> Array:
    """∂L/∂W[:, :, k] = Σ_{n, p} δ[n, :, p] · shifted_k(x_pad)[n, :, p]ᵀ, per group: Linear's
    δᵀ a at each kernel offset, over the parts and blocks `correlate` uses (the parts' sums
    added). Returns (C_out, C_in/G, *kernel)."""
    N, C_in = x_pad.shape[:2]
    C_out = delta.shape[1]
    parts, split, budget = _plan(N, C_in, C_out, kernel, int(np.prod(delta.shape[2:])), groups)
    sums = parallel.map_parts(
        lambda part: _weight_grad(
            x_pad[part], delta[part], kernel, stride, dilation, groups, budget
        ),
        N,
        parts=parts,
        worth_splitting=split,
    )
    return sums[0] if len(sums) == 1 else np.sum(sums, axis=0)


def _weight_grad(
    x_pad: Array,
    delta: Array,
    kernel: Shape,
    stride: Shape,
    dilation: Shape,
    groups: int,
    budget: int,
) -> Array:
    """`correlate_weight_grad` on one part of the batch."""
    N, C_in = x_pad.shape[:2]
    C_out, out = delta.shape[1], delta.shape[2:]
    P, K, C_g = int(np.prod(out)), int(np.prod(kernel)), C_in // groups
    per_sample = P >= TUNING.per_sample_pixels
    dW = np.empty((groups, C_out // groups, C_g, K))  # (G, C_out/G, C_in/G, K)
    if per_sample:
        delta_g = delta.reshape(N, groups, C_out // groups, P)  # (N, G, C_out/G, P)
    else:  # the batch folded into the columns: δ as (G, C_out/G, N·P)
        delta_g = delta.reshape(N, groups, C_out // groups, P).transpose(1, 2, 0, 3)
        delta_g = delta_g.reshape(groups, C_out // groups, N * P)
    for block in offset_blocks(kernel, N * C_in * P * 8, budget):
        cols = columns(x_pad, block, kernel, out, stride, dilation, groups, per_sample)
        dW_b = np.matmul(delta_g, cols.swapaxes(-1, -2))  # (N, G, C_out/G, ·) or (G, C_out/G, ·)
        if per_sample:
            dW_b = dW_b.sum(axis=0)
        dW[..., block] = dW_b.reshape(groups, C_out // groups, C_g, len(block))
    return dW.reshape(C_out, C_g, *kernel)


def full_conv_rot180(
    delta: Array,
    W: Array,
    stride: Shape,
    dilation: Shape,
    groups: int,
    padded: Shape,
    crop: Pads | None = None,
) -> Array:
    """∂L/∂x_pad = full_conv(dilate_s(δ), rot180(W)ᵀ): the rotated-kernel convolution.

    ∂L/∂x_pad[n, c, q] = Σ_k Σ_o rot180(W)[o, c, k] · δ̃[n, o, q + d·k], δ̃ = full(dilate_s(δ)).
    `crop` (per axis, cells before and after): cells of x_pad whose gradient nobody reads
    (zero padding's), left out; the result then covers x_pad[before : L_pad − after] only.

    The spread δ̃ is zero but at multiples of s, so the sum is taken phase by phase, without
    the zeros: cell q = s·m + φ of x_pad meets only the kernel taps k with d·k ≡ φ (mod s),
    which are every (s/g)-th tap (g = gcd(d, s)), and reach δ at m − e₀ − i·d/g for the i-th
    of them. So phase φ is the same full correlation, stride 1, of δ itself with the rotated
    sub-kernel of those taps (`full_correlation`), written into x_pad[φ::s]. With stride 1
    there is one phase and it is the formula as written.
    """
    N = delta.shape[0]
    C_in, out = W.shape[1] * groups, delta.shape[2:]
    crop = crop or ((0, 0),) * len(out)
    wanted = [L - lo - hi for (lo, hi), L in zip(crop, padded[2:], strict=True)]
    dx = np.zeros((N, C_in, *wanted))
    for phase in np.ndindex(*stride):
        taps, sub_dilation, cells, into = [], [], [], []
        for axis, phi in enumerate(phase):
            s, d, K = stride[axis], dilation[axis], W.shape[2 + axis]
            (lo, hi), L, o = crop[axis], padded[2 + axis], out[axis]
            ks = [k for k in range(K) if (d * k) % s == phi]  # the taps reaching phase φ
            if not ks:
                break
            g = np.gcd(d, s)
            e0 = (d * ks[0] - phi) // s  # cell s·m + φ meets δ at m − e₀ − i·d/g
            # the wanted cells of this phase: m with lo ≤ s·m + φ < L − hi, as j = m − e₀
            # within the full correlation's o + (d/g)·(len(ks) − 1) cells
            m_start, m_stop = -((phi - lo) // s), -((phi - L + hi) // s)
            j_start = max(m_start - e0, 0)
            j_stop = min(m_stop - e0, o + d // g * (len(ks) - 1))
            if j_stop <= j_start:
                break
            taps.append(slice(ks[0], None, s // g))
            sub_dilation.append(d // g)
            cells.append(slice(j_start, j_stop))
            into.append(slice(s * (j_start + e0) + phi - lo, None, s))
        else:  # every axis has taps and wanted cells in this phase
            y = full_correlation(delta, W[(..., *taps)], tuple(sub_dilation), groups, cells)
            dx[(..., *(slice(i.start, i.start + y.shape[2 + a] * i.step, i.step)
                       for a, i in enumerate(into)))] = y  # fmt: skip
    return dx


def full_correlation(
    delta: Array, W: Array, dilation: Shape, groups: int, cells: Sequence[slice]
) -> Array:
    """y = full(δ) ⋆ rot180(W)ᵀ, stride 1, at the cells `cells` (per axis, within the
    o + reach cells a full correlation has): y[j] = Σ_k Σ_o rot180(W)[o, c, k] · δ̂[j + d·k],
    δ̂ = δ padded by the kernel's reach d·(k − 1) on each side."""
    n = W.ndim - 2
    N, C_out, *out = delta.shape
    C_g, kernel = W.shape[1], W.shape[2:]
    # full: pad δ by the kernel's reach, so partly covered border cells collect too
    reach = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    padded = np.zeros((N, C_out, *(o + 2 * r for o, r in zip(out, reach, strict=True))))
    padded[(..., *(slice(r, r + o) for r, o in zip(reach, out, strict=True)))] = delta
    # the kernel rotated by 180°, its channel axes swapped within each group: (C_in, C_out/G, *k)
    W_rot = np.flip(W, axis=tuple(range(2, 2 + n)))
    W_rot = W_rot.reshape(groups, C_out // groups, C_g, *kernel).swapaxes(1, 2)
    W_rot = W_rot.reshape(groups * C_g, C_out // groups, *kernel)
    window = padded[(..., *(slice(c.start, c.stop + r) for c, r in zip(cells, reach, strict=True)))]
    return correlate(window, W_rot, (1,) * n, dilation, groups)  # (N, C_in, *cells)
