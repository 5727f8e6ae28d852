"""Normalisation layers: BatchNorm, InstanceNorm, GroupNorm and LayerNorm, forward beside backward.

All normalise x to x̂ = (x − μ)/σ, σ = √(v + eps), then scale and shift, z = γ x̂ + β.
They differ in which axes μ and v are taken over:

| layer        | statistics over, for each sample                   | γ, β shaped like |
|--------------|----------------------------------------------------|------------------|
| BatchNorm    | every axis but the channel axis 1 (and the batch)  | (C,)             |
| InstanceNorm | the spatial axes, per channel                      | (C,)             |
| GroupNorm    | the spatial axes and a group's C/G channels        | (C,)             |
| LayerNorm    | the trailing `normalized_shape` axes               | normalized_shape |

Where μ and v are statistics of the input itself (BatchNorm and InstanceNorm in training
mode or without running statistics, GroupNorm and LayerNorm always), backward runs
through them too. With g = δ ⊙ γ and means over the normalised
axes (count m):

    δ_prev = (1/σ) (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂))

the two subtracted terms being the routes through μ and through v. Where μ and v are
constants (running statistics in eval mode) only the direct route is left,
δ_prev = g/σ. In both cases ∂L/∂γ = Σ δ ⊙ x̂ and ∂L/∂β = Σ δ over the non-parameter axes.

As in torch, v is the biased variance (divided by m, not m − 1). These layers never update
running statistics: a gradient oracle must not change the caller's buffers.

| module     | what lives there                                              |
|------------|---------------------------------------------------------------|
| `common`   | x̂ and its backward through μ and v (`_normalised_backward`)   |
| `batch`    | BatchNorm                                                     |
| `instance` | InstanceNorm                                                  |
| `group`    | GroupNorm                                                     |
| `layer`    | LayerNorm, RMSNorm, LocalResponseNorm                         |
"""

from manual_bp.ops.normalization.batch import BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d
from manual_bp.ops.normalization.group import GroupNorm
from manual_bp.ops.normalization.instance import (
    InstanceNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
)
from manual_bp.ops.normalization.layer import LayerNorm, LocalResponseNorm, RMSNorm

__all__ = [
    "BatchNorm",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "GroupNorm",
    "InstanceNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LayerNorm",
    "LocalResponseNorm",
    "RMSNorm",
]
