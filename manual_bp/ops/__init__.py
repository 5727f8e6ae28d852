"""The ops: each a forward and its backward side by side, grouped by family.

| module          | what lives there                                                  |
|-----------------|-------------------------------------------------------------------|
| `base`          | the layer protocol: forward → (z, cache), backward → (δ_prev, ∂L/∂θ) |
| `activations`   | elementwise f and f′, as a table keyed by name                    |
| `linear`        | Linear                                                            |
| `conv`          | Conv1d, Conv2d (δ_prev: the full convolution with the rotated kernel) |
| `pooling`       | max, average and adaptive pooling                                 |
| `normalization` | BatchNorm, LayerNorm                                              |
| `arithmetic`    | +, −, ⊙ and constants, with broadcasting (`unbroadcast`)          |
| `reductions`    | sum, mean                                                         |
| `shape`         | identity, flatten, reshape, permute, transpose, cat               |
| `softmax`       | softmax and log-softmax along a dim                               |
"""

from manual_bp.ops.arithmetic import Add, AddConstant, Div, Mul, Scale, Sub, unbroadcast
from manual_bp.ops.base import Array, Layer, Shape
from manual_bp.ops.linear import Linear
from manual_bp.ops.reductions import Mean, Sum
from manual_bp.ops.shape import Cat, Flatten, Identity, Permute, Reshape, Transpose
from manual_bp.ops.softmax import LogSoftmax, Softmax

__all__ = [
    "Add",
    "AddConstant",
    "Array",
    "Cat",
    "Div",
    "Flatten",
    "Identity",
    "Layer",
    "Linear",
    "LogSoftmax",
    "Mean",
    "Mul",
    "Permute",
    "Reshape",
    "Scale",
    "Shape",
    "Softmax",
    "Sub",
    "Sum",
    "Transpose",
    "unbroadcast",
]
