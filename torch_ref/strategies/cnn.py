"""CNNs: conv blocks (1-d or 2-d, any padding mode, groups, dilation), pools and a linear
head; `cnn_specs()` draws a CNNSpec, `cnn_models()` builds it."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from hypothesis import strategies as st

from torch_ref.strategies.common import (
    ACTIVATION_MODULES,
    LOSSES,
    Problem,
    _checked,
    _loss_options,
    _problem,
)

# --- CNNs -----------------------------------------------------------------------------
#
# Every size is tracked while drawing, so each layer fits the tensor it gets (no filtering):
# torch's rules, written out here rather than borrowed from manual_bp, whose shape checks
# these strategies exist to test.

#: activations that map small integers (and halves) to small integers (and halves), so an
#: integer-valued network stays exact and its ties stay ties in every summation order
EXACT_ACTIVATIONS = ("identity", "relu", "relu6", "hardtanh")

#: what may follow a conv block's activation ("none": nothing)
POOL_KINDS = ("none", "max", "avg", "adaptive_avg", "adaptive_max")

#: pools whose outputs are inputs, so integer-valued networks stay exact
EXACT_POOLS = ("none", "max", "adaptive_max")

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

_POOL_MODULES: dict[tuple[str, int], Callable[..., nn.Module]] = {
    ("max", 1): nn.MaxPool1d,
    ("max", 2): nn.MaxPool2d,
    ("avg", 1): nn.AvgPool1d,
    ("avg", 2): nn.AvgPool2d,
    ("adaptive_avg", 1): nn.AdaptiveAvgPool1d,
    ("adaptive_avg", 2): nn.AdaptiveAvgPool2d,
    ("adaptive_max", 1): nn.AdaptiveMaxPool1d,
    ("adaptive_max", 2): nn.AdaptiveMaxPool2d,
}
_CONV_MODULES: dict[int, Callable[..., nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d}
_DROPOUT_MODULES: dict[str, Callable[..., nn.Module]] = {
    "dropout": nn.Dropout,
    "dropout1d": nn.Dropout1d,
    "dropout2d": nn.Dropout2d,
}


def _max_pad(mode: str, L: int, cap: int) -> int:
    """torch's widest padding on one side of size L: reflect < L, circular ≤ L."""
    return {"zeros": cap, "replicate": cap, "reflect": min(cap, L - 1), "circular": min(cap, L)}[
        mode
    ]


def pool_output_size(L: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling_output_shape; the last window starts inside the input or left pad."""
    size = (L + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (size - 1) * s >= L + p:
        size -= 1
    return size


def _sees_input(L: int, k: int, s: int, p: int, d: int, out: int) -> bool:
    """Every window has a tap in [0, L) (torch's max pool gives −∞ for one that has not)."""
    return all(any(0 <= o * s - p + j * d < L for j in range(k)) for o in range(out))


@dataclass(frozen=True)
class PoolSpec:
    """A pool after a conv block: `kind` in POOL_KINDS minus "none", torch keyword options."""

    kind: str
    options: tuple[tuple[str, Any], ...]

    def module(self, dims: int) -> nn.Module:
        return _POOL_MODULES[self.kind, dims](**dict(self.options))


@dataclass(frozen=True)
class ConvBlockSpec:
    """Conv → activation → optional dropout (eval) → optional pool."""

    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...] | str
    dilation: tuple[int, ...]
    groups: int
    bias: bool
    padding_mode: str
    activation: str
    act_options: tuple[tuple[str, Any], ...]
    dropout: str | None
    pool: PoolSpec | None


@dataclass(frozen=True)
class CNNSpec:
    """A random CNN problem: conv blocks on (batch, in_channels, *in_size), Flatten, then
    Linear layers of `widths` (the last is the output), `activation` between them."""

    dims: int
    in_channels: int
    in_size: tuple[int, ...]
    blocks: tuple[ConvBlockSpec, ...]
    widths: tuple[int, ...]
    linear_bias: tuple[bool, ...]
    activation: str
    act_options: tuple[tuple[str, Any], ...]
    loss: str
    loss_options: tuple[tuple[str, Any], ...]
    batch: int
    l2: float
    dtype: str
    seed: int
    integer_valued: bool = False

    def build(self) -> Problem:
        """The torch model, loss, inputs and target this spec describes."""
        dtype = getattr(torch, self.dtype)
        g = torch.Generator().manual_seed(self.seed)
        layers: list[nn.Module] = []
        affine: list[nn.Module] = []  # conv and linear layers, for integer weights
        channels = self.in_channels
        for i, block in enumerate(self.blocks):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed + i)
                conv = _CONV_MODULES[self.dims](
                    channels,
                    block.out_channels,
                    block.kernel_size,
                    stride=block.stride,
                    padding=block.padding,
                    dilation=block.dilation,
                    groups=block.groups,
                    bias=block.bias,
                    padding_mode=block.padding_mode,
                    dtype=dtype,
                )
            layers.append(conv)
            affine.append(conv)
            layers.append(ACTIVATION_MODULES[block.activation][0](**dict(block.act_options)))
            if block.dropout is not None:
                layers.append(_DROPOUT_MODULES[block.dropout](p=0.5))
            if block.pool is not None:
                layers.append(block.pool.module(self.dims))
            channels = block.out_channels
        layers.append(nn.Flatten())
        make_act = ACTIVATION_MODULES[self.activation][0]
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(self.widths)):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed + len(self.blocks) + i)
                linear = nn.Linear(fan_in, fan_out, bias=self.linear_bias[i], dtype=dtype)
            layers.append(linear)
            affine.append(linear)
            if i < len(self.widths) - 2:
                layers.append(make_act(**dict(self.act_options)))
        if self.integer_valued:  # exact zeros and ties: kinks and max-pool ties
            with torch.no_grad():
                for m in affine:
                    for p in m.parameters():
                        p.copy_(torch.randint(-2, 3, p.shape, generator=g))
        problem = _problem(self, layers, (self.batch, self.in_channels, *self.in_size), g)
        problem[0].eval()  # eval: dropout is the identity
        return problem


@st.composite
def _conv_axis(
    draw: st.DrawFn, L: int, padding: str, mode: str, stride: int
) -> tuple[int, int | None, int, int]:
    """(kernel, padding or None for a string padding, dilation, output size) on one axis."""
    dilation = draw(st.integers(1, 3))
    if padding == "same":  # total d(k − 1), the larger half after
        half = _max_pad(mode, L, cap=99)
        kernel = draw(st.integers(1, min(5, 2 * half // dilation + 1)))
        return kernel, None, dilation, L
    pad = 0 if padding == "valid" else draw(st.integers(0, _max_pad(mode, L, cap=3)))
    # the kernel's reach d(k − 1) + 1 fits the padded input
    kernel = draw(st.integers(1, min(5, (L + 2 * pad - 1) // dilation + 1)))
    out = (L + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    return kernel, (None if padding == "valid" else pad), dilation, out


@st.composite
def _conv_block(
    draw: st.DrawFn,
    channels: int,
    size: tuple[int, ...],
    *,
    max_channels: int,
    activations: tuple[str, ...],
    pools: tuple[str, ...],
    dims: int,
    distinct: bool,
) -> tuple[ConvBlockSpec, int, tuple[int, ...]]:
    """A block that fits (channels, *size), with the channels and size it hands on.
    `distinct`: no two input values are equal unless they are exactly equal in any
    summation order (else no max pool: see cnn_specs)."""
    groups = draw(st.sampled_from([g for g in range(1, channels + 1) if channels % g == 0]))
    out_channels = groups * draw(st.integers(1, max(1, max_channels // groups)))
    mode = draw(st.sampled_from(PADDING_MODES))
    padding = draw(st.sampled_from(["ints", "ints", "same", "valid"]))
    stride = (
        (1,) * dims if padding == "same" else tuple(draw(st.integers(1, 3)) for _ in range(dims))
    )
    axes = [draw(_conv_axis(L, padding, mode, s)) for L, s in zip(size, stride, strict=True)]
    kernel, pads, dilation, out = (tuple(a) for a in zip(*axes, strict=True))
    activation = draw(st.sampled_from(activations))
    act_options = draw(ACTIVATION_MODULES[activation][1]())
    dropout = draw(st.sampled_from([None, None, "dropout", f"dropout{dims}d"]))
    pads_copy = mode != "zeros" and (
        any(k > 1 for k in kernel) if padding == "same" else any(p for p in pads if p)
    )
    if not distinct or pads_copy:  # reflect/replicate/circular copy values: ties
        pools = tuple(k for k in pools if k not in ("max", "adaptive_max")) or ("none",)
    pool, out = draw(_pool(out, draw(st.sampled_from(pools)), dims))
    block = ConvBlockSpec(
        out_channels=out_channels,
        kernel_size=kernel,
        stride=stride,
        padding=padding if padding != "ints" else pads,
        dilation=dilation,
        groups=groups,
        bias=draw(st.booleans()),
        padding_mode=mode,
        activation=activation,
        act_options=tuple(sorted(act_options.items())),
        dropout=dropout,
        pool=pool,
    )
    return block, out_channels, out


def _window_options(L: int, max_pool: bool, ceil_mode: bool) -> list[tuple[int, int, int, int]]:
    """Every (kernel, stride, padding, dilation) torch's fixed pool takes on size L: padding
    ≤ kernel/2, output ≥ 1, and for max pooling no window on padding alone."""
    options = []
    for k in range(1, 5):
        for s in range(1, 4):
            for p in range(k // 2 + 1):
                for d in range(1, 4) if max_pool else (1,):
                    out = pool_output_size(L, k, s, p, d, ceil_mode)
                    if out >= 1 and (not max_pool or _sees_input(L, k, s, p, d, out)):
                        options.append((k, s, p, d))
    return options


@st.composite
def _pool(
    draw: st.DrawFn, size: tuple[int, ...], kind: str, dims: int
) -> tuple[PoolSpec | None, tuple[int, ...]]:
    """A pool of `kind` that fits `size`, and the size it hands on."""
    if kind == "none":
        return None, size
    if kind.startswith("adaptive"):
        out = [draw(st.integers(1, L + 2)) for L in size]
        if dims == 1:  # None only inside a 2-d tuple, as torch
            return PoolSpec(kind, (("output_size", out[0]),)), (out[0],)
        output_size = tuple(draw(st.sampled_from([o, None])) for o in out)
        kept = tuple(L if o is None else o for L, o in zip(size, output_size, strict=True))
        return PoolSpec(kind, (("output_size", output_size),)), kept
    ceil_mode = draw(st.booleans())
    axes = [draw(st.sampled_from(_window_options(L, kind == "max", ceil_mode))) for L in size]
    k, s, p, d = (tuple(a) for a in zip(*axes, strict=True))
    options: dict[str, Any] = {"kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil_mode}
    if kind == "max":
        options["dilation"] = d
    else:
        options["count_include_pad"] = draw(st.booleans())
        if dims == 2:
            options["divisor_override"] = draw(st.one_of(st.none(), st.integers(1, 5)))
    out = tuple(pool_output_size(L, *axis, ceil_mode) for L, axis in zip(size, axes, strict=True))
    return PoolSpec(kind, tuple(sorted(options.items()))), out


@_checked
@st.composite
def cnn_specs(
    draw: st.DrawFn,
    *,
    max_blocks: int = 3,
    max_channels: int = 4,
    max_hw: int = 16,
    max_batch: int = 4,
    max_width: int = 8,
    conv_dims: tuple[int, ...] = (1, 2),
    activations: tuple[str, ...] | None = None,
    pools: tuple[str, ...] | None = None,
    losses: tuple[str, ...] | None = None,
    dtypes: tuple[str, ...] = ("float64", "float32"),
    integer_valued: bool | None = None,
) -> CNNSpec:
    """A printable CNN problem: 1..max_blocks conv blocks (any kernel, stride, padding and
    padding_mode, dilation, groups, bias; an activation; eval-mode dropout; a pool from
    `pools`), Flatten, 1–2 Linear layers, any loss. Inputs (1..max_batch, C, *size), each
    spatial size 1..max_hw.

    Max pooling is not differentiable at a tie, and two correct convolutions that sum in
    different orders round two mathematically equal values (from padding copies, overlapping
    windows, constant regions) differently and route δ to different winners. So ties are
    drawn only where they are exact: `integer_valued` (drawn for float64 only) draws weights
    and inputs from {−2..2} and defaults to EXACT_ACTIVATIONS and EXACT_POOLS, keeping every
    value an exact small number; otherwise a max pool is drawn only in the first block after
    a conv that copies no input values into its padding (random inputs are distinct; a window
    on zero padding alone gives exactly the bias in any order)."""
    dtype = draw(st.sampled_from(dtypes))
    # (not drawn below float64: integer nets saturate a float32 softmax; see mlp_specs)
    integer = integer_valued
    if integer is None:
        integer = dtype == "float64" and draw(st.booleans())
    activations = activations or (EXACT_ACTIVATIONS if integer else tuple(ACTIVATION_MODULES))
    pools = pools or (EXACT_POOLS if integer else POOL_KINDS)
    dims = draw(st.sampled_from(conv_dims))
    in_channels = draw(st.integers(1, max_channels))
    in_size = tuple(draw(st.integers(1, max_hw)) for _ in range(dims))
    channels, size, blocks = in_channels, in_size, []
    for i in range(draw(st.integers(1, max_blocks))):
        block, channels, size = draw(
            _conv_block(
                channels,
                size,
                max_channels=max_channels,
                activations=activations,
                pools=pools,
                dims=dims,
                distinct=integer or i == 0,
            )
        )
        blocks.append(block)
    features = channels * math.prod(size)
    loss = draw(st.sampled_from(losses or LOSSES))
    min_out = 2 if loss in ("cross_entropy", "cross_entropy_probs", "nll") else 1
    hidden = tuple(draw(st.lists(st.integers(1, max_width), max_size=1)))
    out = draw(st.integers(min_out, max(min_out, max_width)))
    widths = (features, *hidden, out)
    activation = draw(st.sampled_from(activations))
    act_options = draw(ACTIVATION_MODULES[activation][1]())
    loss_options = draw(_loss_options(loss, out))
    return CNNSpec(
        dims=dims,
        in_channels=in_channels,
        in_size=in_size,
        blocks=tuple(blocks),
        widths=widths,
        linear_bias=tuple(draw(st.booleans()) for _ in range(len(widths) - 1)),
        activation=activation,
        act_options=tuple(sorted(act_options.items())),
        loss=loss,
        loss_options=tuple(sorted(loss_options.items())),
        batch=draw(st.integers(1, max_batch)),
        l2=draw(st.sampled_from([0.0, 0.0, 0.1, 1.0])),
        dtype=dtype,
        seed=draw(st.integers(0, 2**16)),
        integer_valued=integer,
    )


def cnn_models(**limits: Any) -> st.SearchStrategy[Problem]:
    """(model, loss_fn, inputs, target) for a random CNN; keywords as in `cnn_specs`."""
    return cnn_specs(**limits).map(lambda spec: spec.build())
