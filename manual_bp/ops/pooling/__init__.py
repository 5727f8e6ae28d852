"""Pooling: max and average over fixed and adaptive windows, forward and backward side by side.

A pooling layer has no parameters: each output pixel p looks at a window of its own input
plane. Read as a layer with fixed weights, it says where δ goes:

    max      z[p] = x[w(p)], w(p) the window's first maximum     δ_prev[w(p)] += δ[p]
    average  z[p] = Σ_{q ∈ window(p)} x[q] / divisor(p)           δ_prev[q] += δ[p] / divisor(p)
    power    z[p] = (K · avg_p(x^P))^(1/P)    (torch's LPPool; K the kernel's size)
             δ_prev = avg_pᵀ(δ z^(1−P) / divisor) · x^(P−1)          (0 where the sum is 0)

Max routes δ to the input that won (weight 1 there, 0 elsewhere); average spreads it evenly
over the window. Where windows overlap (stride < kernel) an input collects the δ of every
window it sits in.

Windows are separable: one table per spatial axis gives the input positions of output o's
window along that axis (outside [0, L) where the window is on padding).

    fixed     s·o − p + d·j,  j = 0..k−1   (torch's max_pool / avg_pool)
    adaptive  ⌊o·L/out⌋ .. ⌈(o+1)·L/out⌉ − 1   (torch's adaptive pools; windows vary in size)

Average pooling is then a product of (out, L) window-indicator matrices, one per axis,
z = (1_H x 1_Wᵀ) / divisor, whose transpose is its backward. Max pooling visits the
window's taps one kernel offset at a time, in torch's row-major order, and keeps the first
strict maximum, as torch's kernels do.

Ties. Where two entries of a window are (nearly) equal maxima, rounding upstream decides
which one wins, and torch and NumPy may route δ to different cells. `ties(x)` marks, in
every window whose maximum and runner-up lie within TIE_RTOL · max|x| of each other, the
entries within that distance of the maximum (see manual_bp.ops.base).

| module     | what lives there                                                         |
|------------|--------------------------------------------------------------------------|
| `windows`  | the window tables, one per axis; the max pool's taps, ties and routing   |
| `fixed`    | MaxPool, AvgPool 1-d to 3-d                                              |
| `adaptive` | AdaptiveMaxPool, AdaptiveAvgPool 1-d to 3-d                              |
| `power`    | LPPool 1-d to 3-d                                                        |
| `indices`  | max pooling with its indices, MaxUnpool                                  |
"""

from manual_bp.ops.pooling.adaptive import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveAvgPool3d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AdaptiveMaxPool3d,
)
from manual_bp.ops.pooling.fixed import (
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
)
from manual_bp.ops.pooling.indices import MaxPoolWithIndices, MaxUnpool
from manual_bp.ops.pooling.power import LPPool1d, LPPool2d, LPPool3d
from manual_bp.ops.pooling.windows import (
    Size,
    adaptive_windows,
    along_axes,
    fixed_windows,
    indicator,
    max_pool,
    max_pool_ties,
    pooling_output_size,
    route_to_winner,
    winner_positions,
)

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "LPPool1d",
    "LPPool2d",
    "LPPool3d",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MaxPoolWithIndices",
    "MaxUnpool",
    "Size",
    "adaptive_windows",
    "along_axes",
    "fixed_windows",
    "indicator",
    "max_pool",
    "max_pool_ties",
    "pooling_output_size",
    "route_to_winner",
    "winner_positions",
]
