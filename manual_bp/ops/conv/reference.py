"""The convolution's three formulas written out literally: a loop over the kernel offsets,
one einsum each. They are the reference the fast kernels (manual_bp.ops.conv.kernels) are
tested against on random shapes, strides, dilations and groups (tests/test_conv_reference.py).

    z[n, o, p]     = Σ_{c, k} W[o, c, k] · x_pad[n, c, s·p + d·k]
    ∂L/∂W[o, c, k] = Σ_{n, p} δ[n, o, p] · x_pad[n, c, s·p + d·k]
    δ_prev         = full(dilate_s(δ)) ⋆ rot180(W)ᵀ
"""

from __future__ import annotations

import numpy as np

from manual_bp.ops.base import Array, Shape


def shifted(a: Array, k: Shape, out: Shape, stride: Shape, dilation: Shape) -> Array:
    """a[n, c, s·p + d·k] for every output pixel p: the pixels kernel offset k sees, a view."""
    steps = zip(k, out, stride, dilation, strict=True)
    return a[(..., *(slice(d * j, d * j + s * (o - 1) + 1, s) for j, o, s, d in steps))]


def _output_size(a: Array, kernel: Shape, stride: Shape, dilation: Shape) -> tuple[int, ...]:
    return tuple(
        (L - d * (k - 1) - 1) // s + 1
        for L, k, s, d in zip(a.shape[2:], kernel, stride, dilation, strict=True)
    )


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
