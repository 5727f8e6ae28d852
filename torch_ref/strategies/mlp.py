"""MLPs: `mlp_specs()` draws an MLPSpec, `mlp_models()` builds it."""

from __future__ import annotations

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

    `integer_valued` (None: drawn for float64, off for lower precision): weights and inputs
    in {−2..2}, so that values land exactly on kinks and ties. Not drawn below float64: such
    a net's logits reach the hundreds, and a softmax that saturates in float32 loses the
    digits of 1 − p (logits 171 and 181: a relative error of 1e-3 in torch's own gradient),
    beyond any fair float32 tolerance. An unknown name is a ValueError that lists the known
    ones."""
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
        dtype=(dtype := draw(st.sampled_from(dtypes))),
        seed=draw(st.integers(0, 2**16)),
        integer_valued=(
            (dtype == "float64" and draw(st.booleans()))
            if integer_valued is None
            else integer_valued
        ),
    )


def mlp_models(**limits: Any) -> st.SearchStrategy[Problem]:
    """(model, loss_fn, inputs, target) for a random MLP; keywords as in `mlp_specs`."""
    return mlp_specs(**limits).map(lambda spec: spec.build())
