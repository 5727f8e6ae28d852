"""Weight initialisers as a table: name → the distribution torch.nn.init draws from.

Same distributions as torch.nn.init, not the same random numbers: every draw comes from
the `np.random.Generator` handed in. Fans are torch's (`_calculate_fan_in_and_fan_out`):
for a weight of shape (out, in, *kernel), receptive = Π kernel,

    fan_in = in · receptive,        fan_out = out · receptive.

| name            | W ~                                                    | E[W²]·fan_in = σ_w²   |
|-----------------|--------------------------------------------------------|-----------------------|
| normal          | N(mean, std²)                                          | (std²+mean²)·fan_in   |
| uniform         | U(a, b)                                                | (a²+ab+b²)/3·fan_in   |
| xavier_uniform  | U(±gain·√(6/(fan_in + fan_out)))                       | 2gain²·in/(in+out)    |
| xavier_normal   | N(0, gain²·2/(fan_in + fan_out))                       | same                  |
| kaiming_uniform | U(±√3·gain/√fan), gain = calculate_gain(nl, a)         | gain² fan_in/fan      |
| kaiming_normal  | N(0, gain²/fan), fan = fan_in or fan_out (`mode`)      | same                  |
| lecun_normal    | N(0, 1/fan_in)  (torch: kaiming_normal, nl='linear')   | 1                     |
| orthogonal      | gain · Q of a QR of a Gaussian, signs fixed by diag(R) | gain² fan_in/max(r, c)|
| torch_default   | nn.Linear's: kaiming_uniform(a=√5) = U(±1/√fan_in)     | 1/3                   |
| small_normal    | N(0, 0.01²)                                            | 10⁻⁴·fan_in           |
| large_normal    | N(0, 1)                                                | fan_in                |
| sigma2=X        | N(0, X/fan_in)                                         | X                     |

kaiming_* default to torch's own defaults (a=0, mode='fan_in', nonlinearity='leaky_relu'),
i.e. gain √2 whatever the activation is: the experiment measures what torch users get.
Biases are zero except for torch_default, whose bias is nn.Linear's U(±1/√fan_in).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = np.ndarray
Shape = tuple[int, ...]

SIGMA2_PREFIX = "sigma2="


# --- fans and gains, as torch computes them --------------------------------------------


def fan_in_and_fan_out(shape: Shape) -> tuple[int, int]:
    """(fan_in, fan_out) = (in · receptive, out · receptive) for a weight (out, in, *kernel)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(
            f"fan in and fan out need a weight with at least 2 dimensions, got shape {shape}"
        )
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _leaky_relu_gain(param: float | None) -> float:
    slope = 0.01 if param is None else param
    if isinstance(slope, bool) or not isinstance(slope, numbers.Real):
        raise ValueError(f"negative_slope {slope!r} is not a valid number")
    return math.sqrt(2.0 / (1.0 + float(slope) ** 2))


_LINEAR_FNS = ("linear", "conv1d", "conv2d", "conv3d",
               "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")  # fmt: skip

GAINS: dict[str, Callable[[float | None], float]] = {
    **{name: (lambda param: 1.0) for name in _LINEAR_FNS},
    "sigmoid": lambda param: 1.0,
    "tanh": lambda param: 5.0 / 3.0,
    "relu": lambda param: math.sqrt(2.0),
    "leaky_relu": _leaky_relu_gain,
    "selu": lambda param: 3.0 / 4.0,
}


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """torch.nn.init.calculate_gain: the factor that keeps Var(a) across a layer."""
    if nonlinearity not in GAINS:
        raise ValueError(
            f"unknown nonlinearity {nonlinearity!r}; known: {', '.join(sorted(GAINS))}"
        )
    return GAINS[nonlinearity](param)


def _fan(shape: Shape, mode: str) -> int:
    fan_in, fan_out = fan_in_and_fan_out(shape)
    fans = {"fan_in": fan_in, "fan_out": fan_out}
    if mode not in fans:
        raise ValueError(f"mode must be one of {sorted(fans)}, got {mode!r}")
    return fans[mode]


# --- the table's entries: each a sampler and its second moment E[W²] -------------------


@dataclass(frozen=True)
class Initializer:
    """A weight distribution: `sample(shape, rng, **options)` and `second_moment(shape, ...)`."""

    name: str
    sample: Callable[..., Array]
    second_moment: Callable[..., float]


def _normal(shape: Shape, rng: np.random.Generator, mean: float = 0.0, std: float = 1.0) -> Array:
    return rng.normal(mean, std, size=shape)


def _uniform(shape: Shape, rng: np.random.Generator, a: float = 0.0, b: float = 1.0) -> Array:
    return rng.uniform(a, b, size=shape)


def _xavier_std(shape: Shape, gain: float = 1.0) -> float:
    fan_in, fan_out = fan_in_and_fan_out(shape)
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def _kaiming_std(
    shape: Shape, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> float:
    return calculate_gain(nonlinearity, a) / math.sqrt(_fan(shape, mode))


def _orthogonal(shape: Shape, rng: np.random.Generator, gain: float = 1.0) -> Array:
    """torch's orthogonal_: QR of a Gaussian (rows, cols), Q's columns signed by diag(R)."""
    if len(shape) < 2:
        raise ValueError(f"orthogonal needs a weight with at least 2 dimensions, got {shape}")
    rows = shape[0]
    cols = math.prod(shape[1:])
    flat = rng.normal(0.0, 1.0, size=(rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))  # NOTE: makes Q unique, i.e. Haar-distributed
    if rows < cols:
        q = q.T
    return gain * q.reshape(shape)


def _orthogonal_second_moment(shape: Shape, gain: float = 1.0) -> float:
    rows = shape[0]
    cols = math.prod(shape[1:])
    return gain**2 / max(rows, cols)  # every row (or column) is a unit vector


def _symmetric(shape: Shape, rng: np.random.Generator, bound: float) -> Array:
    return rng.uniform(-bound, bound, size=shape)


def _torch_default_bound(shape: Shape) -> float:
    fan_in, _ = fan_in_and_fan_out(shape)
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


INITIALIZERS: dict[str, Initializer] = {
    "normal": Initializer("normal", _normal, lambda shape, mean=0.0, std=1.0: std**2 + mean**2),
    "uniform": Initializer(
        "uniform", _uniform, lambda shape, a=0.0, b=1.0: (a * a + a * b + b * b) / 3.0
    ),
    "xavier_uniform": Initializer(
        "xavier_uniform",
        lambda shape, rng, gain=1.0: _symmetric(
            shape, rng, math.sqrt(3) * _xavier_std(shape, gain)
        ),
        lambda shape, gain=1.0: _xavier_std(shape, gain) ** 2,
    ),
    "xavier_normal": Initializer(
        "xavier_normal",
        lambda shape, rng, gain=1.0: rng.normal(0.0, _xavier_std(shape, gain), size=shape),
        lambda shape, gain=1.0: _xavier_std(shape, gain) ** 2,
    ),
    "kaiming_uniform": Initializer(
        "kaiming_uniform",
        lambda shape, rng, **kw: _symmetric(shape, rng, math.sqrt(3) * _kaiming_std(shape, **kw)),
        lambda shape, **kw: _kaiming_std(shape, **kw) ** 2,
    ),
    "kaiming_normal": Initializer(
        "kaiming_normal",
        lambda shape, rng, **kw: rng.normal(0.0, _kaiming_std(shape, **kw), size=shape),
        lambda shape, **kw: _kaiming_std(shape, **kw) ** 2,
    ),
    "lecun_normal": Initializer(
        "lecun_normal",
        lambda shape, rng: rng.normal(0.0, 1.0 / math.sqrt(_fan(shape, "fan_in")), size=shape),
        lambda shape: 1.0 / _fan(shape, "fan_in"),
    ),
    "orthogonal": Initializer("orthogonal", _orthogonal, _orthogonal_second_moment),
    "torch_default": Initializer(
        "torch_default",
        lambda shape, rng: _symmetric(shape, rng, _torch_default_bound(shape)),
        lambda shape: _torch_default_bound(shape) ** 2 / 3.0,
    ),
    "small_normal": Initializer(
        "small_normal", lambda shape, rng: rng.normal(0.0, 0.01, size=shape), lambda shape: 1e-4
    ),
    "large_normal": Initializer(
        "large_normal", lambda shape, rng: rng.normal(0.0, 1.0, size=shape), lambda shape: 1.0
    ),
}

#: the names the gradient-flow experiment accepts, besides `sigma2=X`.
EXPERIMENT_INITS = ("small_normal", "large_normal", "torch_default", "xavier_uniform",
                    "xavier_normal", "kaiming_uniform", "kaiming_normal", "lecun_normal",
                    "orthogonal")  # fmt: skip


def _sigma2_entry(name: str) -> Initializer:
    """`sigma2=X`: W ~ N(0, X / fan_in)."""
    text = name[len(SIGMA2_PREFIX) :]
    try:
        sigma2 = float(text)
    except ValueError:
        sigma2 = float("nan")
    if not (math.isfinite(sigma2) and sigma2 > 0):
        raise ValueError(f"{name!r}: expected sigma2=X with X a positive number, got {text!r}")
    return Initializer(
        name,
        lambda shape, rng: rng.normal(0.0, math.sqrt(sigma2 / _fan(shape, "fan_in")), size=shape),
        lambda shape: sigma2 / _fan(shape, "fan_in"),
    )


def get_initializer(name: str) -> Initializer:
    """The table's entry called `name` (or `sigma2=X`); unknown names list the known ones."""
    if name.startswith(SIGMA2_PREFIX):
        return _sigma2_entry(name)
    try:
        return INITIALIZERS[name]
    except KeyError:
        raise ValueError(
            f"unknown init {name!r}; known inits: {', '.join(sorted(INITIALIZERS))}, sigma2=X"
        ) from None


def initialize(name: str, shape: Shape, rng: np.random.Generator, **options: Any) -> Array:
    """A float64 weight of `shape` drawn from the distribution called `name`."""
    shape = tuple(int(s) for s in shape)
    return np.asarray(get_initializer(name).sample(shape, rng, **options), dtype=np.float64)


def initialize_bias(name: str, weight_shape: Shape, rng: np.random.Generator) -> Array:
    """The bias beside a weight: zeros, except torch_default's U(±1/√fan_in) (nn.Linear's)."""
    get_initializer(name)  # unknown names fail here as for weights
    out = int(weight_shape[0])
    if name == "torch_default":
        bound = _torch_default_bound(tuple(weight_shape))
        return rng.uniform(-bound, bound, size=(out,))
    return np.zeros(out)


def mean_field_params(name: str, shape: Shape, **options: Any) -> tuple[float, float]:
    """(σ_w², σ_b²) = (E[W²]·fan_in, E[b²]): the two numbers mean-field theory needs.

    For `orthogonal` this is gain² for square weights; the Gaussian theory is then an
    approximation (all singular values are 1, none is spread as for a Gaussian matrix).
    """
    shape = tuple(int(s) for s in shape)
    fan_in, _ = fan_in_and_fan_out(shape)
    sigma_w2 = get_initializer(name).second_moment(shape, **options) * fan_in
    sigma_b2 = _torch_default_bound(shape) ** 2 / 3.0 if name == "torch_default" else 0.0
    return float(sigma_w2), float(sigma_b2)
