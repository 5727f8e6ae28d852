"""Hypothesis strategies for random torch problems, public so users can property-test their
own gradient code against ours.

    from hypothesis import given
    from torch_ref.strategies import mlp_models

    @given(mlp_models(max_depth=4))
    def test_my_backward(problem):
        model, loss_fn, inputs, target = problem
        ...

Each strategy draws a printable *spec* (`mlp_specs()`), and the `*_models()` form builds it
into `(model, loss_fn, inputs, target)`, a tuple that prints as the spec that made it, so a
failing example reads as one line of code. Building uses its own seed and leaves torch's
global random state as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from hypothesis import strategies as st

# --- activations: torch module and a strategy for its options ------------------------

ACTIVATION_MODULES: dict[str, tuple[Callable[..., nn.Module], Callable[[], st.SearchStrategy]]] = {
    "identity": (nn.Identity, lambda: st.fixed_dictionaries({})),
    "sigmoid": (nn.Sigmoid, lambda: st.fixed_dictionaries({})),
    "tanh": (nn.Tanh, lambda: st.fixed_dictionaries({})),
    "relu": (nn.ReLU, lambda: st.fixed_dictionaries({})),
    "leaky_relu": (
        nn.LeakyReLU,
        lambda: st.fixed_dictionaries({"negative_slope": st.sampled_from([0.01, 0.2, 1.5])}),
    ),
    "elu": (nn.ELU, lambda: st.fixed_dictionaries({"alpha": st.sampled_from([1.0, 0.5, 2.0])})),
    "gelu": (
        nn.GELU,
        lambda: st.fixed_dictionaries({"approximate": st.sampled_from(["none", "tanh"])}),
    ),
    "silu": (nn.SiLU, lambda: st.fixed_dictionaries({})),
    "softplus": (
        nn.Softplus,
        lambda: st.fixed_dictionaries(
            {"beta": st.sampled_from([1.0, 0.5, 3.0]), "threshold": st.sampled_from([20.0, 1.0])}
        ),
    ),
    "hardtanh": (
        nn.Hardtanh,
        lambda: st.fixed_dictionaries(
            {"min_val": st.sampled_from([-1.0, -0.5]), "max_val": st.sampled_from([1.0, 2.0])}
        ),
    ),
    "relu6": (nn.ReLU6, lambda: st.fixed_dictionaries({})),
}

#: losses a model with C outputs can feed, with the options each may draw
LOSSES = (
    "mse", "l1", "smooth_l1", "huber", "cross_entropy", "cross_entropy_probs", "nll", "bce",
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
        "nll": {"reduction": reduction, "weight": weight, "ignore_index": st.sampled_from([-100, 0])},
        "bce": {"reduction": reduction, "weight": st.one_of(st.none(), st.just("per_class"))},
        "bce_with_logits": {
            "reduction": reduction,
            "pos_weight": st.one_of(
                st.none(), st.lists(st.floats(0.2, 3.0), min_size=classes, max_size=classes)
            ),
        },
    }
    return st.fixed_dictionaries(table[name])


def build_loss(name: str, options: dict[str, Any], classes: int) -> nn.Module:
    """The torch loss module a spec names (list options become float tensors)."""
    o = dict(options)
    for key in ("weight", "pos_weight"):
        if isinstance(o.get(key), list):
            o[key] = torch.tensor(o[key], dtype=torch.float64)
    if name == "bce" and o.get("weight") == "per_class":
        o["weight"] = torch.linspace(0.5, 1.5, classes, dtype=torch.float64)
    modules: dict[str, Callable[..., nn.Module]] = {
        "mse": nn.MSELoss, "l1": nn.L1Loss, "smooth_l1": nn.SmoothL1Loss, "huber": nn.HuberLoss,
        "cross_entropy": nn.CrossEntropyLoss, "cross_entropy_probs": nn.CrossEntropyLoss,
        "nll": nn.NLLLoss, "bce": nn.BCELoss, "bce_with_logits": nn.BCEWithLogitsLoss,
    }
    return modules[name](**o)


def build_target(name: str, options: dict[str, Any], shape: tuple[int, ...],
                 g: torch.Generator) -> torch.Tensor:
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

    def __new__(cls, spec: Any, model: nn.Module, loss_fn: nn.Module, inputs: torch.Tensor,
                target: torch.Tensor) -> Problem:
        self = super().__new__(cls, (model, loss_fn, inputs, target))
        self.spec = spec
        return self

    def __repr__(self) -> str:
        return f"{self.spec!r}.build()"


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
        for i, (fan_in, fan_out) in enumerate(zip(self.widths, self.widths[1:])):
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
        if self.loss == "nll":
            layers.append(nn.LogSoftmax(dim=1))
        elif self.loss == "bce":
            layers.append(nn.Sigmoid())
        model = nn.Sequential(*layers)
        shape = (self.batch, self.widths[0])
        if self.integer_valued:
            inputs = torch.randint(-2, 3, shape, generator=g).to(dtype)
        else:
            inputs = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
        options = dict(self.loss_options)
        target = build_target(self.loss, options, (self.batch, self.widths[-1]), g)
        if target.is_floating_point():
            target = target.to(dtype)
        loss_fn = build_loss(self.loss, options, self.widths[-1])
        if dtype != torch.float64:
            loss_fn = loss_fn.to(dtype)
        return Problem(self, model, loss_fn, inputs, target)


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
    """A printable MLP problem: depth Linear layers, widths 1..max_width, any activation/loss."""
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
