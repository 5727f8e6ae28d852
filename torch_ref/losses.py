"""Torch losses → manual_bp losses, with every option carried over.

Two tables, one row per loss:

- `MODULE_CONVERTERS`, keyed by the module's exact type (a subclass may override
  forward, so it is not taken for its parent): `nn.CrossEntropyLoss(weight=w,
  label_smoothing=0.1)` → `manual_bp.losses.CrossEntropyLoss(weight=w64, ...)`;
- `FUNCTIONAL_LOSSES`, keyed by the function: `F.cross_entropy`, plain or wrapped in
  `functools.partial(F.cross_entropy, label_smoothing=0.1)`.

Weight tensors are copied to float64 NumPy; the caller's tensors are never touched.
`reduction='none'`, the deprecated `size_average` / `reduce`, and options torch's modules
do not have (the functional `weight` of mse/l1/huber) raise UnsupportedModuleError.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from manual_bp import losses as L
from torch_ref.errors import UnsupportedModuleError

_DEPRECATED = ("size_average", "reduce")


def _to_numpy(x: torch.Tensor | None) -> np.ndarray | None:
    """A float64 NumPy copy of a weight tensor (None stays None)."""
    if x is None:
        return None
    return np.array(x.detach().cpu().to(torch.float64).numpy(), dtype=np.float64, copy=True)


def _supported_list() -> str:
    modules = ", ".join(f"nn.{cls.__name__}" for cls in MODULE_CONVERTERS)
    functions = ", ".join(f"F.{fn.__name__}" for fn in FUNCTIONAL_LOSSES)
    return f"supported: {modules}; {functions} (plain or in functools.partial)"


def _unsupported(what: str, problem: str) -> UnsupportedModuleError:
    return UnsupportedModuleError(f"loss {what}: {problem}; {_supported_list()}")


def _reduction(what: str, reduction: str) -> str:
    if reduction == "none":
        raise _unsupported(
            what,
            "option reduction='none' is not supported (no scalar to differentiate); "
            "use 'mean' or 'sum'",
        )
    return reduction


# --- modules: one row per type -------------------------------------------------------


def _module_reduction(module: nn.Module) -> str:
    if module.reduction == "none" and not isinstance(module, _CLASS_LOSSES):
        return "none"  # (per element: a LossNode of the loss's shape)
    return _reduction(f"nn.{type(module).__name__}", module.reduction)


_CLASS_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss)


MODULE_CONVERTERS: dict[type[nn.Module], Callable[[Any], L.Loss]] = {
    nn.MSELoss: lambda m: L.MSELoss(reduction=_module_reduction(m)),
    nn.L1Loss: lambda m: L.L1Loss(reduction=_module_reduction(m)),
    nn.SmoothL1Loss: lambda m: L.SmoothL1Loss(reduction=_module_reduction(m), beta=m.beta),
    nn.HuberLoss: lambda m: L.HuberLoss(reduction=_module_reduction(m), delta=m.delta),
    nn.CrossEntropyLoss: lambda m: L.CrossEntropyLoss(
        weight=_to_numpy(m.weight),
        ignore_index=m.ignore_index,
        reduction=_module_reduction(m),
        label_smoothing=m.label_smoothing,
    ),
    nn.NLLLoss: lambda m: L.NLLLoss(
        weight=_to_numpy(m.weight), ignore_index=m.ignore_index, reduction=_module_reduction(m)
    ),
    nn.BCELoss: lambda m: L.BCELoss(weight=_to_numpy(m.weight), reduction=_module_reduction(m)),
    nn.BCEWithLogitsLoss: lambda m: L.BCEWithLogitsLoss(
        weight=_to_numpy(m.weight),
        reduction=_module_reduction(m),
        pos_weight=_to_numpy(m.pos_weight),
    ),
}

# --- functions: the manual class and the options it takes ----------------------------

#: function → (manual_bp class, the keyword options it carries over)
FUNCTIONAL_LOSSES: dict[Callable[..., torch.Tensor], tuple[type[L.Loss], tuple[str, ...]]] = {
    F.mse_loss: (L.MSELoss, ("reduction",)),
    F.l1_loss: (L.L1Loss, ("reduction",)),
    F.smooth_l1_loss: (L.SmoothL1Loss, ("reduction", "beta")),
    F.huber_loss: (L.HuberLoss, ("reduction", "delta")),
    F.cross_entropy: (
        L.CrossEntropyLoss,
        ("weight", "ignore_index", "reduction", "label_smoothing"),
    ),
    F.nll_loss: (L.NLLLoss, ("weight", "ignore_index", "reduction")),
    F.binary_cross_entropy: (L.BCELoss, ("weight", "reduction")),
    F.binary_cross_entropy_with_logits: (
        L.BCEWithLogitsLoss,
        ("weight", "reduction", "pos_weight"),
    ),
}


def _convert_function(fn: Callable[..., torch.Tensor], args: tuple, keywords: dict) -> L.Loss:
    """F.<loss> with the options a partial fixed, checked against torch's signature."""
    cls, carried = FUNCTIONAL_LOSSES[fn]
    what = f"F.{fn.__name__}"
    signature = inspect.signature(fn)
    try:
        bound = signature.bind_partial(*args, **keywords)
    except TypeError as err:
        raise _unsupported(what, f"cannot bind the partial's arguments ({err})") from None
    fixed = bound.arguments
    for name in ("input", "target"):
        if name in fixed:
            raise _unsupported(what, f"a partial that fixes {name!r} is not supported")
    options: dict[str, Any] = {}
    for name, value in fixed.items():
        default = signature.parameters[name].default
        if name in _DEPRECATED:
            if value is not None:
                raise _unsupported(
                    what,
                    f"the deprecated option {name}={value!r} is not supported; "
                    f"use reduction='mean' or 'sum'",
                )
        elif name in carried:
            options[name] = _to_numpy(value) if isinstance(value, torch.Tensor) else value
        elif value is not default and value != default:
            raise _unsupported(
                what,
                f"option {name}={value!r} is not supported (supported options: "
                f"{', '.join(carried)})",
            )
    if "reduction" in options and not (options["reduction"] == "none" and cls.per_element):
        _reduction(what, options["reduction"])
    return cls(**options)


# --- the entry points ----------------------------------------------------------------


def convert_loss(loss_fn: Any) -> L.Loss:
    """The manual_bp loss computing exactly what `loss_fn` (a module or F.<loss>) computes."""
    if isinstance(loss_fn, L.Loss):
        return loss_fn
    convert = MODULE_CONVERTERS.get(type(loss_fn))
    if convert is not None:
        return convert(loss_fn)
    if isinstance(loss_fn, functools.partial) and loss_fn.func in FUNCTIONAL_LOSSES:
        return _convert_function(loss_fn.func, loss_fn.args, loss_fn.keywords)
    if callable(loss_fn) and loss_fn in FUNCTIONAL_LOSSES:
        return _convert_function(loss_fn, (), {})
    if isinstance(loss_fn, functools.partial):
        name = getattr(loss_fn.func, "__qualname__", repr(loss_fn.func))
        raise _unsupported(f"functools.partial({name})", "the wrapped function is not supported")
    name = (
        type(loss_fn).__name__
        if isinstance(loss_fn, nn.Module)
        else getattr(loss_fn, "__qualname__", type(loss_fn).__name__)
    )
    raise _unsupported(name, "this loss is not supported")


def target_to_numpy(loss: L.Loss, target: torch.Tensor) -> np.ndarray:
    """The target as NumPy: class indices → int64, float targets → float64 (a copy).

    Integer targets of the class losses stay integers (a float target of class-index
    shape is refused by their check, as torch refuses it); for the others they become
    float64, as torch promotes them. Bool is kept, and refused by the loss's check.
    """
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"expected the target as a torch.Tensor, got {type(target).__name__}")
    t = target.detach().cpu()
    if t.is_complex():
        raise ValueError(f"expected a real target, got dtype {t.dtype}")
    if t.dtype == torch.bool:
        return t.numpy().copy()
    if t.is_floating_point() or not isinstance(loss, (L.CrossEntropyLoss, L.NLLLoss)):
        return t.to(torch.float64).numpy().copy()
    return t.to(torch.int64).numpy().copy()
