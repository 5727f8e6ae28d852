"""Convolutions: Conv1d/2d/3d as one N-d layer and its transpose, forward beside backward.

A convolution is a locally connected, weight-shared Linear layer. Unfold the padded input
into columns, one column per output pixel holding the window it sees (im2col), and the
layer is Linear on the columns, group by group (torch's cross-correlation; s stride,
d dilation, k a kernel offset, p an output pixel):

    z[n, o, p]  = b[o] + Σ_{c, k} W[o, c, k] · x_pad[n, c, s·p + d·k]
    ∂L/∂W[…, k] = Σ_{n, p} δ[n, :, p] · x_pad[n, :, s·p + d·k]ᵀ       (Linear's δᵀ a, per k)
    ∂L/∂b       = Σ_{n, p} δ[n, :, p]
    δ_prev      = fold_pad(full_conv(dilate_s(δ), rot180(W)ᵀ))

The last line is "δ convolved with the kernel rotated by 180°" (LeCun et al. 1998,
"Gradient-based learning applied to document recognition"; Dumoulin & Visin 2016, "A guide
to convolution arithmetic for deep learning", §4): each input pixel collects δ from every
output pixel whose window saw it, weighted by the kernel entry that joined them. With
stride s, δ is first spread out (s − 1 zeros between entries) so that output pixel p sits
at s·p; "full" pads it by the kernel's reach d·(k − 1) on each side so that border pixels
collect from the windows that only partly cover them; the kernel's channel axes are swapped
within each group (o ↔ c). `adjoint_inner_products` checks that this is the transpose of
the forward map: ⟨z − b, δ⟩ = ⟨x, δ_prev⟩.

The three formulas are written out literally first (`conv_reference`,
`weight_grad_reference`, `input_grad_reference`: a loop over the kernel offsets, one
einsum each), and the fast kernels after them are tested against them on random shapes,
strides, paddings, dilations and groups (tests/test_conv_reference.py).

The fast kernels compute all three as sums over the kernel offsets k, one matmul over channels per
block of offsets: the block's columns (im2col restricted to those offsets, built from one
strided view of x_pad, or of the spread δ) side by side, so that the matmul's inner
dimension is C_in · |block| rather than C_in alone. How many offsets make a block is a
memory budget (`COLUMN_BYTES`): with room for all of them this is one GEMM over the whole
im2col, the fastest for the narrow-channel layers near the input; with room for one it is
the plain per-offset sum, whose columns cost about the input. Small images (few output
pixels per sample) fold the batch into the GEMM's columns (`PER_SAMPLE_PIXELS`). The
forward keeps x_pad alone for ∂L/∂W. With zero padding, δ_prev is formed for the cells of
x only: the padding's cells, which the fold would drop, are never computed.

Padding. torch pads with zeros inside the convolution, and for the other modes pads first
(F.pad) and convolves unpadded; both are z = conv(pad(x)). The backward of a pad folds the
gradient of each padded cell back onto the input cell it copies (manual_bp.ops.padding).

The transposed convolution (ConvTranspose1d/2d/3d) is the same pair read the other way.
Write C(W) for the convolution y ↦ W ⋆ pad_p(y) (stride s, dilation d, groups g) from
C_out to C_in channels, whose weight has torch's transposed layout (C_in, C_out/g, *k). Then

    ConvTranspose(W) x     = C(W)ᵀ x + b    (the forward is C's backward-data)
    δ_prev                 = C(W) δ         (the backward-data is C's forward)
    ∂L/∂W                  = C's weight gradient with input pad_p(δ) and output gradient x

so both directions run the kernels above, and ⟨C(W) y, x⟩ = ⟨y, C(W)ᵀ x⟩ is the adjoint
identity that ties them (`transpose_inner_products`). output_padding adds cells after the
last window, which only the backward's zeros reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from manual_bp import parallel
from manual_bp.ops.base import Array, Layer, Shape
from manual_bp.ops.padding import PADDING_MODES, Pads, fold_pad, pad

# --- arguments -----------------------------------------------------------------------


def ntuple(value: int | Sequence[int], n: int, name: str, *, minimum: int) -> tuple[int, ...]:
    """An int or a length-n sequence of ints, each ≥ minimum, as an n-tuple (torch's _ntuple)."""
    values = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != n or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum
        for v in values
    ):
        raise ValueError(f"{name} must be an int ≥ {minimum} or {n} of them, got {value!r}")
    return tuple(int(v) for v in values)


def _spatial_names(n: int) -> str:
    return {1: "L", 2: "H, W", 3: "D, H, W"}[n]


#: torch's Conv padding_mode values (F.pad's "constant" is "zeros" here)
CONV_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

# --- the convolution proper -------------------------------------------------------------

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


def shifted(a: Array, k: Shape, out: Shape, stride: Shape, dilation: Shape) -> Array:
    """a[n, c, s·p + d·k] for every output pixel p: the pixels kernel offset k sees, a view."""
    steps = zip(k, out, stride, dilation, strict=True)
    return a[(..., *(slice(d * j, d * j + s * (o - 1) + 1, s) for j, o, s, d in steps))]


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


def _output_size(a: Array, kernel: Shape, stride: Shape, dilation: Shape) -> tuple[int, ...]:
    return tuple(
        (L - d * (k - 1) - 1) // s + 1
        for L, k, s, d in zip(a.shape[2:], kernel, stride, dilation, strict=True)
    )


def _plan(N: int, C_in: int, C_out: int, kernel: Shape, P: int, groups: int) -> tuple:
    """How a convolution's batch is taken: (parts, whether they go to manual_bp.parallel's
    threads — from SPLIT_MACS multiply-adds —, the bytes of columns one part may use)."""
    K = int(np.prod(kernel))
    split = N * P * C_out * (C_in // groups) * K >= SPLIT_MACS
    threads = parallel.workers() if split else 1
    budget = max(1, COLUMN_BYTES // threads)
    sample = C_in * K * P * 8  # one sample's columns
    return max(threads, -(-N * sample // budget)), split, budget


# --- the formulas, literally: the reference the fast kernels below are tested against -----


def conv_reference(x_pad: Array, W: Array, stride: Shape, dilation: Shape, groups: int) -> Array:
    """z[n, o, p] = Σ_{c, k} W[o, c, k] · x_pad[n, c, s·p + d·k], within each group."""
    N, C_g, kernel = x_pad.shape[0], W.shape[1], W.shape[2:]
    out = _output_size(x_pad, kernel, stride, dilation)
    x_g = x_pad.reshape(N, groups, C_g, *x_pad.shape[2:])  # (N, G, C_in/G, *L_pad)
    W_g = W.reshape(groups, -1, C_g, *kernel)  # (G, C_out/G, C_in/G, *k)
    z = np.zeros((N, groups, W_g.shape[1], *out))
    for k in np.ndindex(*kernel):
        x_k = shifted(x_g, k, out, stride, dilation)  # x_pad[n, c, s·p + d·k]: (N, G, C/G, *out)
        z += np.einsum("goc,ngc...->ngo...", W_g[(..., *k)], x_k)
    return z.reshape(N, -1, *out)


def weight_grad_reference(
    x_pad: Array, delta: Array, kernel: Shape, stride: Shape, dilation: Shape, groups: int
) -> Array:
    """∂L/∂W[o, c, k] = Σ_{n, p} δ[n, o, p] · x_pad[n, c, s·p + d·k]: the correlation of the
    input with δ, within each group."""
    N, C_out, *out = delta.shape
    C_g = x_pad.shape[1] // groups
    x_g = x_pad.reshape(N, groups, C_g, *x_pad.shape[2:])
    delta_g = delta.reshape(N, groups, C_out // groups, -1)  # (N, G, C_out/G, P)
    dW = np.zeros((groups, C_out // groups, C_g, *kernel))
    for k in np.ndindex(*kernel):
        x_k = shifted(x_g, k, tuple(out), stride, dilation).reshape(N, groups, C_g, -1)
        dW[(..., *k)] = np.einsum("ngop,ngcp->goc", delta_g, x_k)
    return dW.reshape(C_out, C_g, *kernel)


def input_grad_reference(
    delta: Array, W: Array, stride: Shape, dilation: Shape, groups: int, padded: Shape
) -> Array:
    """δ_prev = full(dilate_s(δ)) ⋆ rot180(W)ᵀ: δ spread out by the stride, padded by the
    kernel's reach, correlated with the kernel rotated by 180° (its channel axes swapped
    within each group). Returns ∂L/∂x_pad, of shape `padded`."""
    N, C_out, *out = delta.shape
    C_g, kernel = W.shape[1], W.shape[2:]
    # dilate_s: s − 1 zeros between δ's entries, so that output pixel p sits at s·p
    spread = np.zeros((N, C_out, *((o - 1) * s + 1 for o, s in zip(out, stride, strict=True))))
    spread[(..., *(slice(None, None, s) for s in stride))] = delta
    # full: the kernel's reach d·(k − 1) of zeros on each side, so that border cells collect
    # from the windows that only partly cover them (and after the last window, the cells of
    # x_pad no window reached)
    reach = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    rest = [L - (S + r) for L, S, r in zip(padded[2:], spread.shape[2:], reach, strict=True)]
    full = np.pad(spread, [(0, 0), (0, 0), *((r, r + e) for r, e in zip(reach, rest, strict=True))])
    # rot180(W)ᵀ: flipped along every kernel axis, (C_out, C_in/G) swapped within each group
    rot = np.flip(W, axis=tuple(range(2, W.ndim))).reshape(groups, C_out // groups, C_g, *kernel)
    rot = rot.swapaxes(1, 2).reshape(groups * C_g, C_out // groups, *kernel)
    return conv_reference(full, rot, (1,) * len(kernel), dilation, groups)


# --- the fast kernels ------------------------------------------------------------------


def correlate(x_pad: Array, W: Array, stride: Shape, dilation: Shape, groups: int) -> Array:
    """z = W ⋆ x_pad (no bias) = Σ_k W[:, :, k] · shifted_k(x_pad), per group: (N, C_out, *out).

    One matmul of W against the columns (im2col) per part of the batch (`_plan`), or per
    block of kernel offsets within it where a part's columns would not fit COLUMN_BYTES."""
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
    per_sample = P >= PER_SAMPLE_PIXELS
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
    per_sample = P >= PER_SAMPLE_PIXELS
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


def same_padding(kernel: Shape, dilation: Shape) -> Pads:
    """torch's padding='same': total d·(k − 1), half before, the odd one out after."""
    totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    return tuple((t // 2, t - t // 2) for t in totals)


class _ConvNd(Layer):
    """z = W ⋆ pad(x) + b; ∂L/∂W_k = Σ δ x_kᵀ, ∂L/∂b = Σ δ, δ_prev = fold(full(δ) ⋆ rot180(W)ᵀ)"""

    decayed = ("weight",)
    reports_delta = True
    n_spatial: ClassVar[int]

    def __init__(
        self,
        weight: Array,
        bias: Array | None = None,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        n = self.n_spatial
        W = np.asarray(weight, dtype=np.float64)
        if W.ndim != n + 2 or 0 in W.shape:
            raise ValueError(
                f"expected a weight (C_out, C_in/groups, {_spatial_names(n)}) with no empty "
                f"dim, got shape {W.shape}"
            )
        self.params["weight"] = W
        if bias is not None:
            b = np.asarray(bias, dtype=np.float64)
            if b.shape != (W.shape[0],):
                raise ValueError(f"expected a bias of shape ({W.shape[0]},), got {b.shape}")
            self.params["bias"] = b
        self.kernel = W.shape[2:]
        self.stride = ntuple(stride, n, "stride", minimum=1)
        self.dilation = ntuple(dilation, n, "dilation", minimum=1)
        if not isinstance(groups, (int, np.integer)) or groups < 1 or W.shape[0] % groups:
            raise ValueError(
                f"groups must be a positive int dividing out_channels {W.shape[0]} "
                f"(weight shape {W.shape}), got groups={groups!r}"
            )
        self.groups = int(groups)
        if padding_mode not in CONV_PADDING_MODES:
            raise ValueError(
                f"unknown padding_mode {padding_mode!r}; known: {sorted(CONV_PADDING_MODES)}"
            )
        self.padding_mode = padding_mode
        self.padding: tuple[int, ...] | str
        if padding == "same":
            if any(s != 1 for s in self.stride):
                raise ValueError(
                    f"padding='same' is not supported for strided convolutions, "
                    f"got stride={self.stride}"
                )
            self.padding, self.pads = "same", same_padding(self.kernel, self.dilation)
        elif padding == "valid":
            self.padding, self.pads = "valid", ((0, 0),) * n
        elif isinstance(padding, str):
            raise ValueError(f"padding must be 'same', 'valid' or ints, got {padding!r}")
        else:
            self.padding = ntuple(padding, n, "padding", minimum=0)
            self.pads = tuple((p, p) for p in self.padding)

    def __repr__(self) -> str:
        C_out, C_g = self.params["weight"].shape[:2]
        return (
            f"{type(self).__name__}({C_g * self.groups} → {C_out}, kernel={self.kernel}, "
            f"stride={self.stride}, padding={self.padding!r}, dilation={self.dilation}, "
            f"groups={self.groups}, bias={'bias' in self.params}, "
            f"padding_mode={self.padding_mode!r})"
        )

    def shape(self, in_shape: Shape) -> Shape:
        n, W = self.n_spatial, self.params["weight"]
        in_shape = tuple(in_shape)
        if len(in_shape) not in (n + 1, n + 2):
            raise ValueError(
                f"expected input (N, C_in, {_spatial_names(n)}) or unbatched "
                f"(C_in, {_spatial_names(n)}), got shape {in_shape}"
            )
        C_in = W.shape[1] * self.groups
        if in_shape[-n - 1] != C_in:
            raise ValueError(
                f"expected input with {C_in} channels (weight {W.shape}, groups={self.groups}), "
                f"got {in_shape[-n - 1]} channels in shape {in_shape}"
            )
        mode = PADDING_MODES[self.padding_mode]
        out = []
        for axis, L in enumerate(in_shape[-n:]):
            (lo, hi), k = self.pads[axis], self.kernel[axis]
            s, d = self.stride[axis], self.dilation[axis]
            if L < 1:
                raise ValueError(f"expected non-empty spatial dims, got input shape {in_shape}")
            if max(lo, hi) > mode.max_pad(L):
                raise ValueError(
                    f"{self.padding_mode} padding ({lo}, {hi}) must be {mode.rule} the input "
                    f"size {L} along spatial dim {axis} of input shape {in_shape}"
                )
            reach, L_pad = d * (k - 1) + 1, L + lo + hi
            size = (L_pad - reach) // s + 1
            if size < 1:
                raise ValueError(
                    f"kernel of reach {reach} (size {k}, dilation {d}) is larger than the padded "
                    f"input {L_pad} (size {L} + padding {lo} + {hi}) along spatial dim {axis} "
                    f"of input shape {in_shape}: output size would be {size}"
                )
            out.append(size)
        return (*in_shape[: -n - 1], W.shape[0], *out)

    def forward(self, x: Array) -> tuple[Array, Any]:
        batched = x.ndim == self.n_spatial + 2
        x_pad = pad(x if batched else x[None], self.pads, self.padding_mode)
        z = correlate(x_pad, self.params["weight"], self.stride, self.dilation, self.groups)
        if "bias" in self.params:
            z += self.params["bias"].reshape(-1, *(1,) * self.n_spatial)
        return (z if batched else z[0]), (x_pad, batched)  # x_pad: all that ∂L/∂W needs

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        x_pad, batched = cache
        grads = self.param_grads(delta, cache)
        delta = delta if batched else delta[None]
        # δ_prev: the full convolution of δ with the kernel rotated by 180°; zero padding's
        # cells get no gradient, so only x's own cells are formed
        W = self.params["weight"]
        if self.padding_mode == "zeros":
            dx = full_conv_rot180(
                delta, W, self.stride, self.dilation, self.groups, x_pad.shape, crop=self.pads
            )
        else:
            dx_pad = full_conv_rot180(
                delta, W, self.stride, self.dilation, self.groups, x_pad.shape
            )
            dx = fold_pad(dx_pad, self.pads, self.padding_mode)
        return (dx if batched else dx[0]), grads

    def param_grads(self, delta: Array, cache: Any) -> dict[str, Array]:
        x_pad, batched = cache
        delta = delta if batched else delta[None]
        # ∂L/∂W[:, :, k] = Σ_{n, p} δ ⊗ shifted_k(x_pad), per group: Linear's δᵀ a at each offset
        grads = {
            "weight": correlate_weight_grad(
                x_pad, delta, self.kernel, self.stride, self.dilation, self.groups
            )
        }
        if "bias" in self.params:
            grads["bias"] = delta.sum(axis=(0, *range(2, delta.ndim)))
        return grads


class Conv1d(_ConvNd):
    """torch.nn.Conv1d on (N, C_in, L): weight (C_out, C_in/groups, k)."""

    n_spatial = 1


class Conv2d(_ConvNd):
    """torch.nn.Conv2d on (N, C_in, H, W): weight (C_out, C_in/groups, kH, kW)."""

    n_spatial = 2


class Conv3d(_ConvNd):
    """torch.nn.Conv3d on (N, C_in, D, H, W): weight (C_out, C_in/groups, kD, kH, kW)."""

    n_spatial = 3


# --- the transposed convolution: the convolution's backward-data as a forward -----------


def transposed_output_size(L: int, k: int, s: int, p: int, d: int, output_padding: int) -> int:
    """torch's ConvTranspose output size: (L − 1)·s − 2p + d·(k − 1) + output_padding + 1."""
    return (L - 1) * s - 2 * p + d * (k - 1) + output_padding + 1


class _ConvTransposeNd(Layer):
    """z = C(W)ᵀ x + b;  δ_prev = C(W) δ;  ∂L/∂W = C's ∂L/∂W at input pad(δ), δ_out x;  ∂L/∂b = Σ δ

    C(W) is the convolution y ↦ W ⋆ pad_p(y) (stride, dilation, groups as given) that maps
    C_out channels to C_in; the weight has torch's transposed layout (C_in, C_out/groups, *k),
    which is C's own (out, in/groups, *k) layout. Its kernels are the convolution's own.
    """

    decayed = ("weight",)
    reports_delta = True
    n_spatial: ClassVar[int]
    conv: ClassVar[type[_ConvNd]]

    def __init__(
        self,
        weight: Array,
        bias: Array | None = None,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        groups: int = 1,
        dilation: int | Sequence[int] = 1,
    ) -> None:
        super().__init__()
        n = self.n_spatial
        W = np.asarray(weight, dtype=np.float64)
        if W.ndim != n + 2 or 0 in W.shape:
            raise ValueError(
                f"expected a weight (C_in, C_out/groups, {_spatial_names(n)}) with no empty "
                f"dim, got shape {W.shape}"
            )
        if isinstance(padding, str):
            raise ValueError(f"padding of a transposed convolution must be ints, got {padding!r}")
        if not isinstance(groups, (int, np.integer)) or groups < 1 or W.shape[0] % groups:
            raise ValueError(
                f"groups must be a positive int dividing in_channels {W.shape[0]} "
                f"(weight shape {W.shape}), got groups={groups!r}"
            )
        # C(W): the convolution whose backward-data this layer's forward is (no bias)
        self.adjoint = self.conv(W, None, stride, padding, dilation, groups)
        self.params["weight"] = self.adjoint.params["weight"]
        if bias is not None:
            b = np.asarray(bias, dtype=np.float64)
            if b.shape != (W.shape[1] * groups,):
                raise ValueError(
                    f"expected a bias of shape ({W.shape[1] * groups},) (C_out = "
                    f"{W.shape[1]} · groups {groups}), got {b.shape}"
                )
            self.params["bias"] = b
        self.kernel, self.groups = self.adjoint.kernel, self.adjoint.groups
        self.stride, self.dilation = self.adjoint.stride, self.adjoint.dilation
        self.padding, self.pads = self.adjoint.padding, self.adjoint.pads
        self.output_padding = ntuple(output_padding, n, "output_padding", minimum=0)
        for op, s, d in zip(self.output_padding, self.stride, self.dilation, strict=True):
            if op >= max(s, d):
                raise ValueError(
                    f"output_padding must be smaller than either stride or dilation, got "
                    f"output_padding {self.output_padding}, stride {self.stride}, "
                    f"dilation {self.dilation}"
                )

    def __repr__(self) -> str:
        C_in, C_g = self.params["weight"].shape[:2]
        return (
            f"{type(self).__name__}({C_in} → {C_g * self.groups}, kernel={self.kernel}, "
            f"stride={self.stride}, padding={self.padding}, "
            f"output_padding={self.output_padding}, groups={self.groups}, "
            f"dilation={self.dilation}, bias={'bias' in self.params})"
        )

    def shape(self, in_shape: Shape) -> Shape:
        n, W = self.n_spatial, self.params["weight"]
        in_shape = tuple(in_shape)
        if len(in_shape) not in (n + 1, n + 2):
            raise ValueError(
                f"expected input (N, C_in, {_spatial_names(n)}) or unbatched "
                f"(C_in, {_spatial_names(n)}), got shape {in_shape}"
            )
        if in_shape[-n - 1] != W.shape[0]:
            raise ValueError(
                f"expected input with {W.shape[0]} channels (weight {W.shape}, transposed "
                f"layout (C_in, C_out/groups, ...)), got {in_shape[-n - 1]} channels in shape "
                f"{in_shape}"
            )
        out = []
        options = zip(
            in_shape[-n:], self.kernel, self.stride, self.padding, self.dilation,
            self.output_padding, strict=True,
        )  # fmt: skip
        for axis, (L, k, s, p, d, op) in enumerate(options):
            size = transposed_output_size(L, k, s, p, d, op)
            if L < 1 or size < 1:
                raise ValueError(
                    f"input size {L} along spatial dim {axis} of input shape {in_shape} gives "
                    f"output size (L − 1)·{s} − 2·{p} + {d}·({k} − 1) + {op} + 1 = {size}; "
                    "expected both ≥ 1"
                )
            out.append(size)
        return (*in_shape[: -n - 1], W.shape[1] * self.groups, *out)

    def forward(self, x: Array) -> tuple[Array, Any]:
        n, W = self.n_spatial, self.params["weight"]
        batched = x.ndim == n + 2
        x = x if batched else x[None]
        out = self.shape(x.shape)[2:]
        padded = (
            x.shape[0],
            W.shape[1] * self.groups,
            *(o + lo + hi for o, (lo, hi) in zip(out, self.pads, strict=True)),
        )
        # C(W)ᵀ x: the convolution's δ_prev with x as its δ, its zero padding left out
        z = full_conv_rot180(x, W, self.stride, self.dilation, self.groups, padded, self.pads)
        if "bias" in self.params:
            z += self.params["bias"].reshape(-1, *(1,) * n)
        return (z if batched else z[0]), (x, batched)  # x: all that ∂L/∂W needs

    def backward(self, delta: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        x, batched = cache
        delta = delta if batched else delta[None]
        delta_pad = pad(delta, self.pads, "zeros")
        grads = self._grads(x, delta, delta_pad)
        # δ_prev = C(W) δ: the convolution's forward. Where output_padding ≥ stride (it may,
        # when dilation > stride) C's output runs past x: those cells are no input's.
        dx = correlate(delta_pad, self.params["weight"], self.stride, self.dilation, self.groups)
        dx = dx[(..., *(slice(0, L) for L in x.shape[2:]))]
        return (dx if batched else dx[0]), grads

    def param_grads(self, delta: Array, cache: Any) -> dict[str, Array]:
        x, batched = cache
        delta = delta if batched else delta[None]
        return self._grads(x, delta, pad(delta, self.pads, "zeros"))

    def _grads(self, x: Array, delta: Array, delta_pad: Array) -> dict[str, Array]:
        # ∂L/∂W: C's weight gradient, its input pad(δ) and its output gradient x
        self.adjoint.params["weight"] = self.params["weight"]
        grads = self.adjoint.param_grads(x, (delta_pad, True))
        if "bias" in self.params:
            grads["bias"] = delta.sum(axis=(0, *range(2, delta.ndim)))
        return grads


class ConvTranspose1d(_ConvTransposeNd):
    """torch.nn.ConvTranspose1d on (N, C_in, L): weight (C_in, C_out/groups, k)."""

    n_spatial, conv = 1, Conv1d


class ConvTranspose2d(_ConvTransposeNd):
    """torch.nn.ConvTranspose2d on (N, C_in, H, W): weight (C_in, C_out/groups, kH, kW)."""

    n_spatial, conv = 2, Conv2d


class ConvTranspose3d(_ConvTransposeNd):
    """torch.nn.ConvTranspose3d on (N, C_in, D, H, W): weight (C_in, C_out/groups, kD, kH, kW)."""

    n_spatial, conv = 3, Conv3d


def output_padding_for(
    in_spatial: Sequence[int],
    output_size: Sequence[int],
    kernel: Shape,
    stride: Shape,
    padding: Shape,
    dilation: Shape,
) -> tuple[int, ...]:
    """torch's ConvTranspose._output_padding: the output_padding that gives `output_size`
    (the module call's m(x, output_size=...)), which must lie in [min, min + stride − 1]."""
    if len(output_size) != len(in_spatial):
        raise ValueError(
            f"expected output_size with {len(in_spatial)} spatial sizes, got {tuple(output_size)}"
        )
    result = []
    for L, size, k, s, p, d in zip(
        in_spatial, output_size, kernel, stride, padding, dilation, strict=True
    ):
        smallest = transposed_output_size(L, k, s, p, d, 0)
        if not smallest <= size <= smallest + s - 1:
            raise ValueError(
                f"requested an output size of {tuple(output_size)}, but valid sizes range from "
                f"{smallest} to {smallest + s - 1} along a spatial dim of input size {L}"
            )
        result.append(size - smallest)
    return tuple(result)


def adjoint_inner_products(layer: _ConvNd, x: Array, delta: Array) -> tuple[float, float]:
    """⟨z − b, δ⟩ and ⟨x, δ_prev(δ)⟩: equal when δ_prev is the transpose of x ↦ W ⋆ pad(x)."""
    layer.shape(x.shape)
    z, cache = layer.forward(x)
    if "bias" in layer.params:
        z = z - layer.params["bias"].reshape(-1, *(1,) * layer.n_spatial)
    dx, _ = layer.backward(delta, cache)
    return float(np.vdot(z, delta)), float(np.vdot(x, dx))


def transpose_inner_products(layer: _ConvTransposeNd, x: Array, y: Array) -> tuple[float, float]:
    """⟨C(W)ᵀ x, y⟩ and ⟨x, C(W) y⟩: the transposed layer's forward (less its bias) against
    its backward-data, which is the convolution C(W)'s forward."""
    layer.shape(x.shape)
    z, cache = layer.forward(x)
    if "bias" in layer.params:
        z = z - layer.params["bias"].reshape(-1, *(1,) * layer.n_spatial)
    dx, _ = layer.backward(y, cache)
    return float(np.vdot(z, y)), float(np.vdot(x, dx))
