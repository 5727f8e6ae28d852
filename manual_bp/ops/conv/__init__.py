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

The three formulas are written out literally first (`reference`: `conv_reference`,
`weight_grad_reference`, `input_grad_reference`, a loop over the kernel offsets, one
einsum each), and the fast kernels (`kernels`) are tested against them on random shapes,
strides, paddings, dilations and groups (tests/test_conv_reference.py).

The fast kernels compute all three as sums over the kernel offsets k, one matmul over channels per
block of offsets: the block's columns (im2col restricted to those offsets, built from one
strided view of x_pad, or of the spread δ) side by side, so that the matmul's inner
dimension is C_in · |block| rather than C_in alone. How many offsets make a block is a
memory budget (`Tuning.column_bytes`): with room for all of them this is one GEMM over the whole
im2col, the fastest for the narrow-channel layers near the input; with room for one it is
the plain per-offset sum, whose columns cost about the input. Small images (few output
pixels per sample) fold the batch into the GEMM's columns (`Tuning.per_sample_pixels`). The
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

| module       | what lives there                                                          |
|--------------|---------------------------------------------------------------------------|
| `reference`  | the three formulas, literally                                             |
| `kernels`    | the fast kernels (im2col by blocks of offsets, δ_prev phase by phase), `tuned` |
| `layers`     | Conv1d/2d/3d                                                              |
| `transposed` | ConvTranspose1d/2d/3d                                                     |
"""

from manual_bp.ops.conv.kernels import (
    COLUMN_BYTES,
    PER_SAMPLE_PIXELS,
    SPLIT_MACS,
    Tuning,
    columns,
    correlate,
    correlate_weight_grad,
    full_conv_rot180,
    full_correlation,
    offset_blocks,
    tuned,
    windows,
)
from manual_bp.ops.conv.layers import (
    CONV_PADDING_MODES,
    Conv1d,
    Conv2d,
    Conv3d,
    adjoint_inner_products,
    ntuple,
    same_padding,
)
from manual_bp.ops.conv.reference import (
    conv_reference,
    input_grad_reference,
    shifted,
    weight_grad_reference,
)
from manual_bp.ops.conv.transposed import (
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
    output_padding_for,
    transpose_inner_products,
    transposed_output_size,
)
from manual_bp.ops.padding import PADDING_MODES, fold_pad, pad

__all__ = [
    "COLUMN_BYTES",
    "CONV_PADDING_MODES",
    "PADDING_MODES",
    "PER_SAMPLE_PIXELS",
    "SPLIT_MACS",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "Tuning",
    "adjoint_inner_products",
    "columns",
    "conv_reference",
    "correlate",
    "correlate_weight_grad",
    "fold_pad",
    "full_conv_rot180",
    "full_correlation",
    "input_grad_reference",
    "ntuple",
    "offset_blocks",
    "output_padding_for",
    "pad",
    "same_padding",
    "shifted",
    "transpose_inner_products",
    "transposed_output_size",
    "tuned",
    "weight_grad_reference",
    "windows",
]
