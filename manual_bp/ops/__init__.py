"""The ops: each a forward and its backward side by side, grouped by family.

| module          | what lives there                                                       |
|-----------------|------------------------------------------------------------------------|
| `base`          | the layer protocol: forward → (z, cache), backward → (δ_prev, ∂L/∂θ);  |
|                 | several outputs; kinks and ties (TIE_RTOL, `near`)                     |
| `graph`         | a model tensor as a value (Parameter, Constant), one output (Select)   |
| `activations`   | elementwise f and f′ as a table keyed by name (activations, math); PReLU |
| `linear`        | Linear                                                                 |
| `conv`          | Conv1d/2d/3d and ConvTranspose1d/2d/3d (δ_prev: the full convolution   |
|                 | with the rotated kernel; a transposed convolution is its mirror)       |
| `pooling`       | max, average, adaptive and power-average pooling, 1-d to 3-d           |
| `normalization` | BatchNorm, LayerNorm, GroupNorm, InstanceNorm                          |
| `recurrent`     | RNN, LSTM, GRU and their cells: backprop through time                  |
| `attention`     | scaled dot-product attention, the pieces of multi-head attention       |
| `embedding`     | Embedding, EmbeddingBag                                                |
| `linalg`        | matmul, bmm, addmm, einsum, outer, bilinear                            |
| `arithmetic`    | +, −, ⊙, ÷, pow, max/min, where, with broadcasting (`unbroadcast`)     |
| `comparison`    | <, ≤, =, … and logical not: bool masks, no gradient                    |
| `reductions`    | sum, mean, amax/amin, max/min over a dim, logsumexp, var/std, norms    |
| `softmax`       | softmax, log-softmax, softmin, GLU along a dim                         |
| `shape`         | reshape, permute, cat/stack/split, indexing and gathering, expand, roll |
| `resample`      | interpolate (nearest, linear, cubic, area), pixel (un)shuffle          |
| `padding`       | F.pad in its four modes (and the folds a padded convolution needs)     |
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
