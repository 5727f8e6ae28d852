"""check_grads: your gradients, from any framework, against the oracle's.

    report = torch_ref.check_grads(model, loss_fn, inputs, target, my_grads)

`my_grads` maps the names of `model.named_parameters()` to your ∂L/∂θ (torch tensors or NumPy
arrays, of any floating dtype: a JAX port's, a kernel's, a framework's). They are compared
with the oracle's float64 gradients; a difference raises AssertionError whose message is the
table naming the worst entries (the same check as the pytest fixture's
`gradient_oracle.check_grads`, which calls this).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch_ref import tolerances

if TYPE_CHECKING:
    import numpy as np
    import torch
    import torch.nn as nn

    from torch_ref.oracle import LossFn
    from torch_ref.report import GradientReport

#: default (rtol, atol) of `check_grads`, keyed by the dtype of the user's gradient (the
#: library's one table, torch_ref.tolerances)
GRAD_TOLERANCES = tolerances.GRAD_TOLERANCES


def _tolerances(
    rtol: float | None,
    atol: float | None,
    default: tuple[float, float],
    configured: tuple[float | None, float | None],
) -> tuple[float, float]:
    """The call's tolerance, else the configured one, else the default."""
    rtol = rtol if rtol is not None else configured[0] if configured[0] is not None else default[0]
    atol = atol if atol is not None else configured[1] if configured[1] is not None else default[1]
    return rtol, atol


def _sources(
    rtol: float | None,
    atol: float | None,
    default: str,
    configured: tuple[float | None, float | None],
) -> str:
    """Where each tolerance comes from, in words: the call, the configuration, a default."""
    words = [
        "given to the call"
        if given is not None
        else "set in the pytest configuration"
        if conf is not None
        else default
        for given, conf in ((rtol, configured[0]), (atol, configured[1]))
    ]
    if words[0] == words[1]:
        return words[0].replace("the default ", "the defaults ")
    return f"rtol {words[0]}, atol {words[1]}"


def _dtype_name(g: Any) -> str:
    """ "float32" for a torch.float32 tensor or a NumPy float32 array."""
    return str(g.dtype).removeprefix("torch.")


def _check_user_grad(name: str, g: object, shape: tuple[int, ...]) -> None:
    """TypeError/ValueError unless `g` is a real floating tensor or array of `shape`."""
    import numpy as np
    import torch

    if isinstance(g, torch.Tensor):
        floating = g.is_floating_point()
    elif isinstance(g, np.ndarray):
        floating = np.issubdtype(g.dtype, np.floating)
    else:
        raise TypeError(
            f"your gradient {name!r} must be a torch.Tensor or a numpy.ndarray, "
            f"got {type(g).__name__}"
        )
    if not floating:
        raise TypeError(
            f"your gradient {name!r} has dtype {_dtype_name(g)}; expected a floating-point "
            f"dtype ({', '.join(GRAD_TOLERANCES)})"
        )
    if tuple(g.shape) != shape:
        raise ValueError(
            f"your gradient {name!r} has shape {tuple(g.shape)}, "
            f"but the parameter has shape {shape}"
        )


def _as_float64(g: Any) -> np.ndarray:
    import numpy as np
    import torch

    if isinstance(g, torch.Tensor):
        return g.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(g, dtype=np.float64)


def check_grads(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    target: torch.Tensor,
    grads: Mapping[str, torch.Tensor | np.ndarray],
    *,
    l2: float = 0.0,
    rtol: float | None = None,
    atol: float | None = None,
    configured: tuple[float | None, float | None] = (None, None),
) -> GradientReport:
    """Your ∂L/∂θ (keyed like named_parameters(); torch tensors or NumPy arrays) against
    the oracle's; the check if they agree, else AssertionError with the table naming the
    worst entries. `configured`: (rtol, atol) that a configuration sets in place of the
    defaults (the pytest fixture's options), below what the call gives.

    Default tolerances follow the dtype of your gradients (`GRAD_TOLERANCES`; the least
    precise dtype among them when they differ); the table's first line says which."""
    __tracebackhide__ = True
    from torch_ref.oracle import layer_scales, manual_trace
    from torch_ref.report import GradientReport, compare

    if not isinstance(grads, Mapping):
        raise TypeError(
            f"grads must map parameter names to tensors or arrays, got {type(grads).__name__}"
        )
    params = dict(model.named_parameters())
    for name, g in grads.items():
        if name in params:
            _check_user_grad(name, g, tuple(params[name].shape))
    dtypes = {_dtype_name(g) for n, g in grads.items() if n in params}
    unknown = sorted(dtypes - set(GRAD_TOLERANCES))
    if unknown and any(map(math.isnan, _tolerances(rtol, atol, (math.nan, math.nan), configured))):
        raise TypeError(
            f"no default tolerances for {', '.join(unknown)} gradients (known: "
            f"{', '.join(GRAD_TOLERANCES)}); pass rtol= and atol="
        )
    # the least precise dtype among your gradients sets the default tolerances
    known = sorted(dtypes & set(GRAD_TOLERANCES), key=lambda d: GRAD_TOLERANCES[d])
    coarsest = known[-1] if known else "float64"
    rtol_, atol_ = _tolerances(rtol, atol, GRAD_TOLERANCES[coarsest], configured)
    check = GradientReport(
        None,
        None,
        rtol=rtol_,
        atol=atol_,
        labels=("yours", "oracle"),
        yours="your gradients",
        tolerances=_sources(rtol, atol, f"the default for {coarsest} gradients", configured),
        dtype=coarsest,
    )
    trace = manual_trace(model, loss_fn, inputs, target, l2=l2)
    oracle = trace.grads
    scales = layer_scales(trace.layers, {n: g.numpy() for n, g in oracle.items()})
    missing = [n for n in oracle if n not in grads]
    unexpected = sorted(n for n in grads if n not in oracle)
    if missing:
        check.errors.append(f"missing from your gradients: {', '.join(missing)}")
    if unexpected:
        check.errors.append(f"not parameters that require grad: {', '.join(unexpected)}")
    for name, ref in oracle.items():
        if name in grads:
            yours = _as_float64(grads[name])
            check.rows.append(
                compare("param", name, yours, ref.numpy(), rtol_, atol_, scale=scales[name])
            )
    if not check.ok:
        raise AssertionError(check.failure_message())
    return check
