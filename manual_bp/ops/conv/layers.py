"""Conv1d/2d/3d as one N-d layer, forward beside backward, on the kernels of
manual_bp.ops.conv.kernels; padding modes through manual_bp.ops.padding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from manual_bp.ops.base import Array, Layer, Shape
from manual_bp.ops.conv.kernels import correlate, correlate_weight_grad, full_conv_rot180
from manual_bp.ops.padding import PADDING_MODES, Pads, fold_pad, pad

# --- arguments -----------------------------------------------------------------------


def ntuple(value: int | Sequence[int], n: int, name: str, *, minimum: int) -> tuple[int, ...]:
    """An int or a length-n sequence of ints, each ≥ minimum, as an n-tuple (torch's _ntuple;
    a sequence of one stands for all n, as torch's kernels expand it)."""
    values = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) == 1:
        values = values * n
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


def adjoint_inner_products(layer: _ConvNd, x: Array, delta: Array) -> tuple[float, float]:
    """⟨z − b, δ⟩ and ⟨x, δ_prev(δ)⟩: equal when δ_prev is the transpose of x ↦ W ⋆ pad(x)."""
    layer.shape(x.shape)
    z, cache = layer.forward(x)
    if "bias" in layer.params:
        z = z - layer.params["bias"].reshape(-1, *(1,) * layer.n_spatial)
    dx, _ = layer.backward(delta, cache)
    return float(np.vdot(z, delta)), float(np.vdot(x, dx))
