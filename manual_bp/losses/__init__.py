"""Losses: the value L and ∂L/∂y side by side, with torch's exact semantics, in float64.

A loss is a small object with two methods:

    check(y_shape, target)  -> None                  validation only, before any arithmetic
    loss(y, target)         -> (L: float, ∂L/∂y)      calls check itself first

The constructor keywords are torch's (`reduction`, `weight`, `ignore_index`,
`label_smoothing`, `beta`, `delta`, `pos_weight`, CTC's lengths and `blank`); a loss that
gives one term per element or per sample (`per_element`) also takes `reduction='none'` (a
node of a network carries the terms on), the others refuse it. Losses are listed in `LOSSES`
by torch's functional name; `get_loss(name, **options)` builds one.

The classification losses share one form, softmax cross-entropy's p − q generalised. With A the
effective target weights (class weights, label smoothing ε/C, ignored rows zero), along
the class axis:

    L = −Σ A ⊙ log p / norm,      ∂L/∂z = ((Σ_c A) p − A) / norm,      p = softmax(z)

For a one-hot A this is the familiar ∂loss/∂z_i = p_i − q_i.

Where torch computes garbage (a mean over nothing, a NaN target) we refuse with a
ValueError saying what was expected and what was given. Where torch silently differs
from what was asked we refuse too, and say so below:

| case                                     | torch                       | here           |
|------------------------------------------|-----------------------------|----------------|
| MSE/L1/… target of another shape         | broadcasts, warns           | ValueError     |
| mean over an empty input / all ignored   | NaN                         | ValueError     |
| label_smoothing < 0                      | silently ignored            | ValueError     |
| NaN / Inf in a float target              | propagates NaN              | ValueError     |
| NaN / Inf in a weight                    | propagates NaN              | ValueError     |

| module           | what lives there                                                  |
|------------------|-------------------------------------------------------------------|
| `base`           | the protocol (`Loss`) and the argument checks                     |
| `elementwise`    | MSE, L1, smooth L1, Huber, ½ squared error, BCE, BCE with logits  |
| `classification` | CrossEntropyLoss, NLLLoss                                         |
| `margin`         | MultiLabelMarginLoss                                              |
| `sequence`       | CTCLoss (over the alignments of a label sequence)                 |

The table (`LOSSES`, `SHORT_LOSS_NAMES`, `get_loss`) is below.
"""

from __future__ import annotations

from typing import Any

from manual_bp.losses.base import Loss
from manual_bp.losses.classification import CrossEntropyLoss, NLLLoss
from manual_bp.losses.elementwise import (
    BCELoss,
    BCEWithLogitsLoss,
    HalfSquaredError,
    HuberLoss,
    L1Loss,
    MSELoss,
    SmoothL1Loss,
)
from manual_bp.losses.margin import MultiLabelMarginLoss
from manual_bp.losses.sequence import CTCLoss

# --- the table -----------------------------------------------------------------------

LOSSES: dict[str, type[Loss]] = {
    cls.name: cls
    for cls in (
        MSELoss,
        L1Loss,
        SmoothL1Loss,
        HuberLoss,
        CrossEntropyLoss,
        NLLLoss,
        BCELoss,
        BCEWithLogitsLoss,
        HalfSquaredError,
        MultiLabelMarginLoss,
        CTCLoss,
    )
}


#: the short names of torch_ref's command line and strategies, for torch's functional names
SHORT_LOSS_NAMES: dict[str, str] = {
    "mse": "mse_loss",
    "l1": "l1_loss",
    "smooth_l1": "smooth_l1_loss",
    "huber": "huber_loss",
    "nll": "nll_loss",
    "bce": "binary_cross_entropy",
    "bce_with_logits": "binary_cross_entropy_with_logits",
}


def get_loss(name: str, **options: Any) -> Loss:
    """The loss called `name` (torch's functional name, or its short name: `mse` for
    `mse_loss`), built with torch's keywords."""
    try:
        cls = LOSSES[SHORT_LOSS_NAMES.get(name, name)]
    except KeyError:
        short = ", ".join(f"{s} ({f})" for s, f in SHORT_LOSS_NAMES.items())
        raise ValueError(
            f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}; "
            f"short names: {short}"
        ) from None
    return cls(**options)


__all__ = [
    "LOSSES",
    "SHORT_LOSS_NAMES",
    "BCELoss",
    "BCEWithLogitsLoss",
    "CTCLoss",
    "CrossEntropyLoss",
    "HalfSquaredError",
    "HuberLoss",
    "L1Loss",
    "Loss",
    "MSELoss",
    "MultiLabelMarginLoss",
    "NLLLoss",
    "SmoothL1Loss",
    "get_loss",
]
