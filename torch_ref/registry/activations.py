"""Elementwise activations: one row each, f and f′ in manual_bp.ops.activations.

Every form reaches the same rule: `nn.LeakyReLU(0.2)(x)`, `F.leaky_relu(x, 0.2)`,
`torch.nn.functional.leaky_relu(x, negative_slope=0.2, inplace=True)`. The rule's options
are the functional form's keyword arguments, in torch's positional order, with torch's
defaults; a module passes its attributes of the same names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from manual_bp.ops.activations import get_activation
from torch_ref.errors import UnsupportedModuleError
from torch_ref.registry.core import Op, OpEntry, Sample, tensor


def activation_rule(act: str, **defaults: Any) -> Callable[..., Op]:
    """f(x, *options, inplace=False) as the activation `act` of manual_bp, options in torch's
    positional order (`defaults` gives names, order and torch's default values)."""
    names = [*defaults, "inplace"]

    def rule(input: Any, *args: Any, **kwargs: Any) -> Op:
        if len(args) > len(names):
            raise UnsupportedModuleError(f"{act}: expected at most {len(names)} options")
        options = dict(defaults)
        options.update(zip(names, args, strict=False))
        unknown = set(kwargs) - set(names)
        if unknown:
            raise UnsupportedModuleError(f"{act}: unsupported option(s) {sorted(unknown)}")
        options.update(kwargs)
        options.pop("inplace", None)  # in-place or not, the value is the same (see capture)
        return Op(get_activation(act, **options), (tensor(input, act),))

    return rule


def _samples(fn: Callable[..., Any], module: nn.Module | None) -> Callable[[], list[Sample]]:
    def samples() -> list[Sample]:
        g = torch.Generator().manual_seed(0)
        x = 3 * torch.randn(4, 7, generator=g, dtype=torch.float64)
        cases = [Sample("function", (x,), fn=fn)]
        if module is not None:
            cases.append(Sample("module", (x,), module=module))
        return cases

    return samples


def activation(
    name: str,
    functions: tuple[Any, ...],
    methods: tuple[str, ...] = (),
    module: type[nn.Module] | None = None,
    sample: Callable[..., Any] | None = None,
    note: str = "",
    **defaults: Any,
) -> OpEntry:
    """The row of activation `name` (its manual_bp table name) with torch's option defaults."""
    return OpEntry(
        name=name,
        family="activation",
        rule=activation_rule(name, **defaults),
        functions=functions,
        methods=methods,
        modules=(module,) if module else (),
        module_args=tuple(defaults),
        note=note,
        samples=_samples(sample or functions[0], module() if module else None),
    )


ROWS = [
    activation("relu", (F.relu, torch.relu, F.relu_, torch.relu_), ("relu", "relu_"), nn.ReLU),
    activation("sigmoid", (F.sigmoid, torch.sigmoid), ("sigmoid", "sigmoid_"), nn.Sigmoid),
    activation("tanh", (F.tanh, torch.tanh), ("tanh", "tanh_"), nn.Tanh),
    activation(
        "leaky_relu",
        (F.leaky_relu, F.leaky_relu_),
        module=nn.LeakyReLU,
        sample=lambda x: F.leaky_relu(x, 0.2),
        negative_slope=0.01,
    ),
    activation("elu", (F.elu, F.elu_), module=nn.ELU, alpha=1.0),
    activation(
        "gelu",
        (F.gelu,),
        module=nn.GELU,
        note="approximate 'none' and 'tanh'",
        approximate="none",
    ),
    activation("silu", (F.silu,), module=nn.SiLU),
    activation("softplus", (F.softplus,), module=nn.Softplus, beta=1.0, threshold=20.0),
    activation(
        "hardtanh", (F.hardtanh, F.hardtanh_), module=nn.Hardtanh, min_val=-1.0, max_val=1.0
    ),
    activation("relu6", (F.relu6,), module=nn.ReLU6),
]
