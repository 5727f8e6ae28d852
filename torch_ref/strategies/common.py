"""What every strategy shares: the activations, losses and dtypes a spec may name (and the
check of those names when a strategy is made), the loss and target built for a spec, and
`Problem`, the (model, loss_fn, inputs, target) tuple that prints as its spec."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
from hypothesis import strategies as st  # (its absence is caught in the package's __init__)

from manual_bp.losses import SHORT_LOSS_NAMES
from torch_ref.registry.activations import activation_modules

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


def _pool_kinds() -> tuple[Sequence[str], dict[str, str]]:
    from torch_ref.strategies.cnn import POOL_KINDS

    return POOL_KINDS, {}


def _rnn_cells() -> tuple[Sequence[str], dict[str, str]]:
    from torch_ref.strategies.recurrent import RNN_CELLS

    return tuple(RNN_CELLS), {}


def _checked(spec_fn: Callable[..., st.SearchStrategy]) -> Callable[..., st.SearchStrategy]:
    """`spec_fn` with its name limits checked when the strategy is made, not when the first
    example is drawn: `activations`, `losses`, `dtypes`, `pools`, `cells` (see known_names)."""
    tables: dict[str, Callable[[], tuple[Sequence[str], dict[str, str]]]] = {
        "activations": lambda: (tuple(ACTIVATION_MODULES), {}),
        "losses": lambda: (LOSSES, LOSS_ALIASES),
        "dtypes": lambda: (DTYPES, {f"torch.{d}": d for d in DTYPES}),
        "pools": _pool_kinds,
        "cells": _rnn_cells,
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
