"""Hypothesis strategies for random torch problems, public so users can property-test their
own gradient code against ours.

    from hypothesis import given
    from torch_ref.strategies import cnn_models, mlp_models

    @given(mlp_models(max_depth=4) | cnn_models(max_blocks=2))
    def test_my_backward(problem):
        model, loss_fn, inputs, target = problem
        ...

Each strategy draws a printable *spec* (`mlp_specs()`, `cnn_specs()`), and the `*_models()`
form builds it into `(model, loss_fn, inputs, target)`, a tuple that prints as the spec that
made it, so a failing example reads as one line of code. Building uses its own seed and
leaves torch's global random state as it was.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

try:
    from hypothesis import strategies as st
except ImportError as err:  # hypothesis is an optional dependency of manual-bp
    raise ImportError(
        "torch_ref.strategies needs hypothesis, which is not installed; install it with "
        "the extra: pip install 'manual-bp[hypothesis]'",
        name="hypothesis",
    ) from err

from manual_bp.losses import SHORT_LOSS_NAMES  # noqa: E402
from torch_ref.registry.activations import activation_modules  # noqa: E402

#: the dtypes a problem may be built in
DTYPES = ("float64", "float32", "float16", "bfloat16")

# --- activations: torch module and a strategy for its options ------------------------

ActivationRow = tuple[Callable[..., nn.Module], Callable[[], st.SearchStrategy]]

#: the options an activation's module may draw (the others are built with their defaults)
ACTIVATION_OPTIONS: dict[str, dict[str, list[Any]]] = {
    "leaky_relu": {"negative_slope": [0.01, 0.2, 1.5]},
    "elu": {"alpha": [1.0, 0.5, 2.0]},
    "celu": {"alpha": [1.0, 0.5, 2.0]},
    "gelu": {"approximate": ["none", "tanh"]},
    "softplus": {"beta": [1.0, 0.5, 3.0], "threshold": [20.0, 1.0]},
    "hardtanh": {"min_val": [-1.0, -0.5], "max_val": [1.0, 2.0]},
    "softshrink": {"lambd": [0.5, 0.1]},
    "hardshrink": {"lambd": [0.5, 0.1]},
}


def _options(name: str) -> Callable[[], st.SearchStrategy]:
    drawn = ACTIVATION_OPTIONS.get(name, {})
    return lambda: st.fixed_dictionaries({k: st.sampled_from(v) for k, v in drawn.items()})


#: every activation of the op registry with a module: its module and its options' strategy
ACTIVATION_MODULES: dict[str, ActivationRow] = {
    name: (module, _options(name))
    for name, module in activation_modules().items()
    if name != "linear"  # (the same as identity)
}

#: losses a model with C outputs can feed, with the options each may draw
LOSSES = (
    "mse",
    "l1",
    "smooth_l1",
    "huber",
    "cross_entropy",
    "cross_entropy_probs",
    "nll",
    "bce",
    "bce_with_logits",
)


def _loss_options(name: str, classes: int) -> st.SearchStrategy[dict[str, Any]]:
    reduction = st.sampled_from(["mean", "sum"])
    weight = st.one_of(st.none(), st.lists(st.floats(0.1, 2.0), min_size=classes, max_size=classes))
    table: dict[str, dict[str, st.SearchStrategy]] = {
        "mse": {"reduction": reduction},
        "l1": {"reduction": reduction},
        "smooth_l1": {"reduction": reduction, "beta": st.sampled_from([1.0, 0.5, 0.0])},
        "huber": {"reduction": reduction, "delta": st.sampled_from([1.0, 0.3, 2.0])},
        "cross_entropy": {
            "reduction": reduction,
            "weight": weight,
            "ignore_index": st.sampled_from([-100, 0]),
            "label_smoothing": st.sampled_from([0.0, 0.1, 0.5]),
        },
        "cross_entropy_probs": {
            "reduction": reduction,
            "weight": weight,
            "label_smoothing": st.sampled_from([0.0, 0.2]),
        },
        "nll": {
            "reduction": reduction,
            "weight": weight,
            "ignore_index": st.sampled_from([-100, 0]),
        },
        "bce": {"reduction": reduction, "weight": st.one_of(st.none(), st.just("per_class"))},
        "bce_with_logits": {
            "reduction": reduction,
            "pos_weight": st.one_of(
                st.none(), st.lists(st.floats(0.2, 3.0), min_size=classes, max_size=classes)
            ),
        },
    }
    return st.fixed_dictionaries(table[name])


#: the torch module of each loss ("cross_entropy_probs": cross-entropy with probabilities
#: as the target)
LOSS_MODULES: dict[str, type[nn.Module]] = {
    "mse": nn.MSELoss,
    "l1": nn.L1Loss,
    "smooth_l1": nn.SmoothL1Loss,
    "huber": nn.HuberLoss,
    "cross_entropy": nn.CrossEntropyLoss,
    "cross_entropy_probs": nn.CrossEntropyLoss,
    "nll": nn.NLLLoss,
    "bce": nn.BCELoss,
    "bce_with_logits": nn.BCEWithLogitsLoss,
}
assert tuple(LOSS_MODULES) == LOSSES

#: the other names a loss is known by: torch's functional name (manual_bp.get_loss's) and
#: its module's class name, so `losses=("mse_loss",)` and `("MSELoss",)` mean "mse"
LOSS_ALIASES: dict[str, str] = {
    **{functional: short for short, functional in SHORT_LOSS_NAMES.items()},
    **{m.__name__: name for name, m in LOSS_MODULES.items() if name != "cross_entropy_probs"},
}


def _key(name: str) -> str:
    """Names compare without case or underscores: ReLU is relu, LeakyReLU is leaky_relu."""
    return name.lower().replace("_", "")


def known_names(
    what: str, given: Sequence[str] | None, known: Sequence[str], aliases: dict[str, str]
) -> tuple[str, ...] | None:
    """`given` in the spelling of `known` (None stays None): names match without case or
    underscores (torch's class names, ReLU for relu, are accepted), or through `aliases`; any
    other name is a ValueError that lists the known ones."""
    if given is None:
        return None
    if isinstance(given, str):
        raise TypeError(f"{what} must be a tuple of names, such as ({given!r},); got a string")
    given = tuple(given)
    table = {_key(n): n for n in known} | {_key(a): n for a, n in aliases.items()}
    unknown = [name for name in given if _key(str(name)) not in table]
    if unknown:
        raise ValueError(
            f"unknown {what}: {', '.join(map(repr, unknown))}; the known {what} are "
            f"{', '.join(known)} (case and underscores do not matter)"
        )
    if not given:
        raise ValueError(f"{what} must name at least one of {', '.join(known)}; got ()")
    return tuple(dict.fromkeys(table[_key(str(name))] for name in given))


def _checked(spec_fn: Callable[..., st.SearchStrategy]) -> Callable[..., st.SearchStrategy]:
    """`spec_fn` with its name limits checked when the strategy is made, not when the first
    example is drawn: `activations`, `losses`, `dtypes`, `pools`, `cells` (see known_names)."""
    tables: dict[str, Callable[[], tuple[Sequence[str], dict[str, str]]]] = {
        "activations": lambda: (tuple(ACTIVATION_MODULES), {}),
        "losses": lambda: (LOSSES, LOSS_ALIASES),
        "dtypes": lambda: (DTYPES, {f"torch.{d}": d for d in DTYPES}),
        "pools": lambda: (POOL_KINDS, {}),
        "cells": lambda: (tuple(RNN_CELLS), {}),
    }

    @functools.wraps(spec_fn)
    def checked(**limits: Any) -> st.SearchStrategy:
        for what, table in tables.items():
            if limits.get(what) is not None:
                limits[what] = known_names(what, limits[what], *table())
        return spec_fn(**limits)

    return checked


def build_loss(name: str, options: dict[str, Any], classes: int) -> nn.Module:
    """The torch loss module a spec names (list options become float tensors)."""
    o = dict(options)
    for key in ("weight", "pos_weight"):
        if isinstance(o.get(key), list):
            o[key] = torch.tensor(o[key], dtype=torch.float64)
    if name == "bce" and o.get("weight") == "per_class":
        o["weight"] = torch.linspace(0.5, 1.5, classes, dtype=torch.float64)
    return LOSS_MODULES[name](**o)


def build_target(
    name: str, options: dict[str, Any], shape: tuple[int, ...], g: torch.Generator
) -> torch.Tensor:
    """A target that fits `name` for model outputs of `shape` (N, C)."""
    n, c = shape[0], shape[1]
    if name in ("cross_entropy", "nll"):
        t = torch.randint(0, c, (n,), generator=g)
        ignore = options.get("ignore_index", -100)
        if not 0 <= ignore < c:
            t[torch.rand(n, generator=g) < 0.3] = ignore
        # row 0 is never ignored: with every row ignored torch's mean is 0/0
        t[0] = (ignore + 1) % c if 0 <= ignore < c else t[0].clamp(min=0)
        return t
    if name == "cross_entropy_probs":
        return torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), dim=1)
    if name in ("bce", "bce_with_logits"):
        return torch.rand(shape, generator=g, dtype=torch.float64)
    return torch.randn(shape, generator=g, dtype=torch.float64)


class Problem(tuple):
    """(model, loss_fn, inputs, target), printed as the spec that built it."""

    spec: Any

    def __new__(
        cls,
        spec: Any,
        model: nn.Module,
        loss_fn: nn.Module,
        inputs: torch.Tensor,
        target: torch.Tensor,
    ) -> Problem:
        self = super().__new__(cls, (model, loss_fn, inputs, target))
        self.spec = spec
        return self

    def __repr__(self) -> str:
        return f"{self.spec!r}.build()"


def _problem(
    spec: Any, layers: list[nn.Module], input_shape: tuple[int, ...], g: torch.Generator
) -> Problem:
    """The tail every spec's build shares: the head its loss needs (LogSoftmax for NLL,
    Sigmoid for BCE), then the inputs, the target and the loss module, drawn from `g`."""
    dtype, classes = getattr(torch, spec.dtype), spec.widths[-1]
    if spec.loss == "nll":
        layers.append(nn.LogSoftmax(dim=1))
    elif spec.loss == "bce":
        layers.append(nn.Sigmoid())
    if spec.integer_valued:
        inputs = torch.randint(-2, 3, input_shape, generator=g).to(dtype)
    else:
        inputs = torch.randn(input_shape, generator=g, dtype=torch.float64).to(dtype)
    options = dict(spec.loss_options)
    target = build_target(spec.loss, options, (spec.batch, classes), g)
    if target.is_floating_point():
        target = target.to(dtype)
    loss_fn = build_loss(spec.loss, options, classes)
    if dtype != torch.float64:
        loss_fn = loss_fn.to(dtype)
    return Problem(spec, nn.Sequential(*layers), loss_fn, inputs, target)


# --- MLPs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MLPSpec:
    """A random MLP problem: Linear layers of `widths`, `activation` between them."""

    widths: tuple[int, ...]
    bias: tuple[bool, ...]
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
        make_act, _ = ACTIVATION_MODULES[self.activation]
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(self.widths, self.widths[1:], strict=False)):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed + i)
                linear = nn.Linear(fan_in, fan_out, bias=self.bias[i], dtype=dtype)
            if self.integer_valued:  # exact zeros and ties: z lands on the kinks
                with torch.no_grad():
                    linear.weight.copy_(torch.randint(-2, 3, linear.weight.shape, generator=g))
                    if linear.bias is not None:
                        linear.bias.copy_(torch.randint(-2, 3, linear.bias.shape, generator=g))
            layers.append(linear)
            if i < len(self.widths) - 2:
                layers.append(make_act(**dict(self.act_options)))
        return _problem(self, layers, (self.batch, self.widths[0]), g)


@_checked
@st.composite
def mlp_specs(
    draw: st.DrawFn,
    *,
    min_depth: int = 1,
    max_depth: int = 6,
    max_width: int = 16,
    max_batch: int = 8,
    activations: tuple[str, ...] | None = None,
    losses: tuple[str, ...] | None = None,
    dtypes: tuple[str, ...] = ("float64", "float32"),
    integer_valued: bool | None = None,
) -> MLPSpec:
    """A printable MLP problem: `min_depth`..`max_depth` Linear layers of widths
    1..`max_width`, an activation between them, a loss with its options, a batch of
    1..`max_batch`, an L2 penalty, a seed.

    Name limits (each a tuple; None: all of them), checked when the strategy is made:

    - `activations`: the names of `ACTIVATION_MODULES`, one row per activation module of the
      op registry: relu, leaky_relu, elu, gelu, silu, tanh, sigmoid, softplus, ... Case and
      underscores do not matter: torch's class names (ReLU, LeakyReLU, GELU) work too.
    - `losses`: `LOSSES`: mse, l1, smooth_l1, huber, cross_entropy, cross_entropy_probs
      (probabilities as the target), nll, bce, bce_with_logits; torch's functional names
      (mse_loss, binary_cross_entropy, as `manual_bp.get_loss` takes them) and class names
      (MSELoss) too.
    - `dtypes`: of the model and its inputs, float64 and float32 by default (float16 and
      bfloat16 too).

    `integer_valued` (None: drawn): weights and inputs in {−2..2}, so that values land
    exactly on kinks and ties. An unknown name is a ValueError that lists the known ones."""
    depth = draw(st.integers(min_depth, max_depth))
    loss = draw(st.sampled_from(losses or LOSSES))
    min_out = 2 if loss in ("cross_entropy", "cross_entropy_probs", "nll") else 1
    widths = tuple(draw(st.lists(st.integers(1, max_width), min_size=depth, max_size=depth)))
    out = draw(st.integers(min_out, max(min_out, max_width)))
    widths = (*widths, out)
    activation = draw(st.sampled_from(activations or tuple(ACTIVATION_MODULES)))
    act_options = draw(ACTIVATION_MODULES[activation][1]())
    loss_options = draw(_loss_options(loss, out))
    return MLPSpec(
        widths=widths,
        bias=tuple(draw(st.lists(st.booleans(), min_size=depth, max_size=depth))),
        activation=activation,
        act_options=tuple(sorted(act_options.items())),
        loss=loss,
        loss_options=tuple(sorted(loss_options.items())),
        batch=draw(st.integers(1, max_batch)),
        l2=draw(st.sampled_from([0.0, 0.0, 0.1, 1.0])),
        dtype=draw(st.sampled_from(dtypes)),
        seed=draw(st.integers(0, 2**16)),
        integer_valued=draw(st.booleans()) if integer_valued is None else integer_valued,
    )


def mlp_models(**limits: Any) -> st.SearchStrategy[Problem]:
    """(model, loss_fn, inputs, target) for a random MLP; keywords as in `mlp_specs`."""
    return mlp_specs(**limits).map(lambda spec: spec.build())


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
    drawn only where they are exact: `integer_valued` draws weights and inputs from {−2..2}
    and defaults to EXACT_ACTIVATIONS and EXACT_POOLS, keeping every value an exact small
    number; otherwise a max pool is drawn only in the first block after a conv that copies
    no input values into its padding (random inputs are distinct; a window on zero padding
    alone gives exactly the bias in any order)."""
    integer = draw(st.booleans()) if integer_valued is None else integer_valued
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
        dtype=draw(st.sampled_from(dtypes)),
        seed=draw(st.integers(0, 2**16)),
        integer_valued=integer,
    )


def cnn_models(**limits: Any) -> st.SearchStrategy[Problem]:
    """(model, loss_fn, inputs, target) for a random CNN; keywords as in `cnn_specs`."""
    return cnn_specs(**limits).map(lambda spec: spec.build())


# --- recurrent networks ---------------------------------------------------------------

#: recurrent cells a spec may draw: the torch module and its options
RNN_CELLS: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {
    "rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}

#: what the head reads: "sequence", the output at every step (a prediction per step,
#: rows N·T); "last", the output at the last step (out[:, -1]; the reverse direction's is
#: its first step); "state", the final states of every layer and direction (h_n, and c_n of
#: an LSTM), one row per sequence
RNN_HEADS = ("sequence", "last", "state")

#: where the initial state comes from: zero (hx=None), model inputs, or learned parameters
RNN_INITIAL_STATES = ("zero", "input", "learned")


class RNNModel(nn.Module):
    """A recurrent layer, then a Linear head over its outputs (`head`: see RNN_HEADS), then
    the loss's own last layer (LogSoftmax for NLL, Sigmoid for BCE); forward(x, h0, c0)."""

    def __init__(
        self, rnn: nn.Module, head: str, out: int, last: nn.Module, learned: bool, batch: int
    ) -> None:
        super().__init__()
        self.rnn, self.head, self.last = rnn, head, last
        D = 2 if rnn.bidirectional else 1
        h_out = rnn.proj_size or rnn.hidden_size
        LD = rnn.num_layers * D
        is_lstm = isinstance(rnn, nn.LSTM)
        if head in ("sequence", "last"):
            features = D * h_out
        else:
            features = LD * (h_out + (rnn.hidden_size if is_lstm else 0))
        self.linear = nn.Linear(features, out, dtype=rnn.weight_ih_l0.dtype)
        self.h0 = self.c0 = None
        if learned:
            dtype = rnn.weight_ih_l0.dtype
            self.h0 = nn.Parameter(0.5 * torch.randn(LD, batch, h_out, dtype=dtype))
            if is_lstm:
                self.c0 = nn.Parameter(0.5 * torch.randn(LD, batch, rnn.hidden_size, dtype=dtype))

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor | None = None, c0: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.h0 is not None:
            h0, c0 = self.h0, self.c0
        hx = h0 if c0 is None else (h0, c0)
        out, h_n = self.rnn(x, hx)
        if self.head == "sequence":
            features = out.reshape(-1, out.shape[-1])  # (N·T, D·H_out)
        elif self.head == "last":
            features = out[:, -1] if self.rnn.batch_first else out[-1]  # (N, D·H_out)
        else:
            states = h_n if isinstance(h_n, tuple) else (h_n,)  # (h_n, c_n) of an LSTM
            features = torch.cat(
                [s.permute(1, 0, 2).reshape(s.shape[1], -1) for s in states], dim=1
            )  # (N, L·D·H_out [+ L·D·H])
        return self.last(self.linear(features))


@dataclass(frozen=True)
class RNNSpec:
    """A random recurrent problem: `cell` (a key of RNN_CELLS) with torch's options, inputs
    of `seq_len` steps, a Linear head (RNN_HEADS) and a loss."""

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    proj_size: int
    seq_len: int
    batch: int
    initial_state: str
    head: str
    classes: int
    loss: str
    loss_options: tuple[tuple[str, Any], ...]
    l2: float
    dtype: str
    seed: int

    def build(self) -> Problem:
        """The torch model (in eval mode: dropout between layers is the identity), loss,
        inputs (x, and h0/c0 when they are inputs) and target this spec describes."""
        dtype = getattr(torch, self.dtype)
        g = torch.Generator().manual_seed(self.seed)
        make, options = RNN_CELLS[self.cell]
        if self.cell == "lstm":
            options = {**options, "proj_size": self.proj_size}
        last: nn.Module = {"nll": nn.LogSoftmax(dim=1), "bce": nn.Sigmoid()}.get(
            self.loss, nn.Identity()
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            rnn = make(
                self.input_size,
                self.hidden_size,
                num_layers=self.num_layers,
                bias=self.bias,
                batch_first=self.batch_first,
                dropout=self.dropout,
                bidirectional=self.bidirectional,
                dtype=dtype,
                **options,
            )
            model = RNNModel(
                rnn, self.head, self.classes, last, self.initial_state == "learned", self.batch
            ).eval()
        T, N = self.seq_len, self.batch
        x_shape = (N, T, self.input_size) if self.batch_first else (T, N, self.input_size)
        x = torch.randn(x_shape, generator=g, dtype=torch.float64).to(dtype)
        inputs: torch.Tensor | tuple[torch.Tensor, ...] = x
        if self.initial_state == "input":
            LD = self.num_layers * (2 if self.bidirectional else 1)
            sizes = [self.proj_size or self.hidden_size, self.hidden_size]
            states = [
                0.5 * torch.randn((LD, N, s), generator=g, dtype=torch.float64).to(dtype)
                for s in sizes[: 2 if self.cell == "lstm" else 1]
            ]
            inputs = (x, *states)
        rows = N * T if self.head == "sequence" else N
        options_ = dict(self.loss_options)
        target = build_target(self.loss, options_, (rows, self.classes), g)
        if target.is_floating_point():
            target = target.to(dtype)
        loss_fn = build_loss(self.loss, options_, self.classes)
        if dtype != torch.float64:
            loss_fn = loss_fn.to(dtype)
        return Problem(self, model, loss_fn, inputs, target)


@_checked
@st.composite
def rnn_specs(
    draw: st.DrawFn,
    *,
    cells: tuple[str, ...] | None = None,
    max_hidden: int = 8,
    max_layers: int = 3,
    max_seq_len: int = 12,
    max_batch: int = 4,
    max_input: int = 4,
    heads: tuple[str, ...] = RNN_HEADS,
    initial_states: tuple[str, ...] = RNN_INITIAL_STATES,
    losses: tuple[str, ...] | None = None,
    dtypes: tuple[str, ...] = ("float64", "float32"),
) -> RNNSpec:
    """A printable recurrent problem: nn.RNN (tanh, relu), nn.LSTM (proj_size too) or nn.GRU,
    hidden sizes 1..max_hidden, 1..max_layers layers, bidirectional or not, batch_first or
    sequence-first, bias on/off, eval-mode dropout between layers, sequences of
    1..max_seq_len steps, the initial state zero, given as inputs or learned, a Linear head on
    every step, on the last step or on the final states, and any loss (with its options)."""
    cell = draw(st.sampled_from(cells or tuple(RNN_CELLS)))
    hidden = draw(st.integers(1, max_hidden))
    layers = draw(st.integers(1, max_layers))
    loss = draw(st.sampled_from(losses or LOSSES))
    min_out = 2 if loss in ("cross_entropy", "cross_entropy_probs", "nll") else 1
    classes = draw(st.integers(min_out, max(min_out, max_hidden)))
    return RNNSpec(
        cell=cell,
        input_size=draw(st.integers(1, max_input)),
        hidden_size=hidden,
        num_layers=layers,
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        # NOTE: torch warns about dropout with one layer (it has no effect there)
        dropout=draw(st.sampled_from([0.0, 0.5])) if layers > 1 else 0.0,
        bidirectional=draw(st.booleans()),
        proj_size=draw(st.integers(0, hidden - 1)) if cell == "lstm" else 0,
        seq_len=draw(st.integers(1, max_seq_len)),
        batch=draw(st.integers(1, max_batch)),
        initial_state=draw(st.sampled_from(initial_states)),
        head=draw(st.sampled_from(heads)),
        classes=classes,
        loss=loss,
        loss_options=tuple(sorted(draw(_loss_options(loss, classes)).items())),
        l2=draw(st.sampled_from([0.0, 0.0, 0.1, 1.0])),
        dtype=draw(st.sampled_from(dtypes)),
        seed=draw(st.integers(0, 2**16)),
    )


def rnn_models(**limits: Any) -> st.SearchStrategy[Problem]:
    """(model, loss_fn, inputs, target) for a random recurrent network; keywords as in
    `rnn_specs`. `inputs` is x, or the tuple (x, h0[, c0]) when the initial state is an
    input."""
    return rnn_specs(**limits).map(lambda spec: spec.build())
