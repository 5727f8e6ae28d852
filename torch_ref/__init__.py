"""torch_ref: the gradient oracle for torch models.

    grads  = torch_ref.manual_gradients(model, loss_fn, inputs, target, l2=0.0)
    trace  = torch_ref.manual_trace(model, loss_fn, inputs, target, l2=0.0)
    report = torch_ref.compare_gradients(model, loss_fn, inputs, target, rtol=1e-7, atol=1e-10)
    torch_ref.assert_gradients_close(model, loss_fn, inputs, target)
"""

from torch_ref.errors import UnsupportedModuleError
from torch_ref.oracle import (
    Trace,
    assert_gradients_close,
    compare_gradients,
    manual_gradients,
    manual_trace,
)
from torch_ref.report import GradientReport, Row

__all__ = [
    "GradientReport",
    "Row",
    "Trace",
    "UnsupportedModuleError",
    "assert_gradients_close",
    "compare_gradients",
    "manual_gradients",
    "manual_trace",
]
