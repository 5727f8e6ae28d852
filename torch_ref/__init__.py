"""torch_ref: the gradient oracle for torch models.

    grads  = torch_ref.manual_gradients(model, loss_fn, inputs, target, l2=0.0)
    trace  = torch_ref.manual_trace(model, loss_fn, inputs, target, l2=0.0)
    report = torch_ref.compare_gradients(model, loss_fn, inputs, target, rtol=1e-7, atol=1e-10)
    torch_ref.assert_gradients_close(model, loss_fn, inputs, target)
    torch_ref.gradcheck(func, inputs)   # torch.autograd.gradcheck's drop-in, exact
    torch_ref.__version__   # the installed manual-bp distribution's version

The names load on first use (PEP 562), so that pytest, which imports this package for its
plugin, does not import torch in test runs that never use the oracle.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from torch_ref.errors import UnsupportedModuleError

try:
    __version__: str = version("manual-bp")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "Trace": "torch_ref.oracle",
    "assert_gradients_close": "torch_ref.oracle",
    "compare_gradients": "torch_ref.oracle",
    "manual_gradients": "torch_ref.oracle",
    "manual_trace": "torch_ref.oracle",
    "GradientReport": "torch_ref.report",
    "Row": "torch_ref.report",
    "convert_loss": "torch_ref.losses",
    "check_grads": "torch_ref.checks",
    "gradcheck": "torch_ref.gradchecks",
    "gradgradcheck": "torch_ref.gradchecks",
    "GradcheckError": "torch_ref.gradchecks",
}

__all__ = ["UnsupportedModuleError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'torch_ref' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
