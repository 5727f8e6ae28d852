"""ConvTranspose1d/2d/3d: the convolution's backward-data as a forward (see the package
docstring, manual_bp.ops.conv)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape
from manual_bp.ops.conv.kernels import correlate, full_conv_rot180
from manual_bp.ops.conv.layers import Conv1d, Conv2d, Conv3d, _ConvNd, _spatial_names, ntuple
from manual_bp.ops.padding import pad

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


def transpose_inner_products(layer: _ConvTransposeNd, x: Array, y: Array) -> tuple[float, float]:
    """⟨C(W)ᵀ x, y⟩ and ⟨x, C(W) y⟩: the transposed layer's forward (less its bias) against
    its backward-data, which is the convolution C(W)'s forward."""
    layer.shape(x.shape)
    z, cache = layer.forward(x)
    if "bias" in layer.params:
        z = z - layer.params["bias"].reshape(-1, *(1,) * layer.n_spatial)
    dx, _ = layer.backward(y, cache)
    return float(np.vdot(z, y)), float(np.vdot(x, dx))
