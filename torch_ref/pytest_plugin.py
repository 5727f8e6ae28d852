"""The pytest plugin (entry point `pytest11`, name `torch_ref`): the `gradient_oracle` fixture.

    def test_my_model(gradient_oracle):
        report = gradient_oracle.assert_close(model, loss_fn, inputs, target)

    def test_my_kernel(gradient_oracle):
        gradient_oracle.check_grads(model, loss_fn, inputs, target, my_grads)  # tensors or arrays

A failure raises AssertionError whose message is the comparison table; the plugin's own
frames are hidden, so the traceback ends at the line of the user's test. The fixture is
session-scoped and holds no state, so `@hypothesis.given` tests may use it.

Tolerances: a keyword given to the call wins; else `--gradient-oracle-rtol/-atol` (or the
ini keys `gradient_oracle_rtol/_atol`); else the defaults: those of
`torch_ref.compare_gradients` for `assert_close`, and `GRAD_TOLERANCES[dtype]` of the
user's gradient for `check_grads` (the table's first line says which). Disable the plugin
with `-p no:torch_ref`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pytest

from torch_ref.tolerances import ATOL, GRAD_TOLERANCES, RTOL  # (no torch: cheap to load)

# NOTE: pytest imports every installed plugin at start-up, in every project; torch, NumPy
# and pandas are imported where they are first needed, so an unused plugin costs nothing.
if TYPE_CHECKING:
    import numpy as np
    import torch
    import torch.nn as nn

    from torch_ref.oracle import LossFn, Trace
    from torch_ref.report import GradientReport

#: the defaults of `assert_close`: those of `torch_ref.compare_gradients` (both sides float64)
COMPARE_TOLERANCES = (RTOL, ATOL)


def _num(x: float) -> str:
    """1e-07 → "1e-7", 0.05 → "5e-2": tolerances as people write them."""
    return f"{x:.0e}".replace("e-0", "e-").replace("e+00", "")


def _option_help(what: str, i: int) -> str:
    per_dtype = ", ".join(f"{dtype} {_num(tol[i])}" for dtype, tol in GRAD_TOLERANCES.items())
    return (
        f"{what} tolerance of the gradient_oracle fixture; a keyword in the call wins "
        f"(default: {_num(COMPARE_TOLERANCES[i])} for assert_close and compare; for "
        f"check_grads, by the dtype of your gradients: {per_dtype})"
    )


OPTIONS = {"rtol": _option_help("relative", 0), "atol": _option_help("absolute", 1)}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torch_ref", "gradient oracle (torch_ref)")
    for name, help_text in OPTIONS.items():
        group.addoption(
            f"--gradient-oracle-{name}",
            type=float,
            default=None,
            dest=f"gradient_oracle_{name}",
            metavar=name.upper(),
            help=help_text,
        )
        parser.addini(f"gradient_oracle_{name}", help_text, default=None)


def _configured(config: pytest.Config, name: str) -> float | None:
    """The tolerance set on the command line, else in the ini file, else None."""
    value = config.getoption(f"gradient_oracle_{name}")
    if value is None:
        value = config.getini(f"gradient_oracle_{name}")
    if value is None or value == "":
        return None
    try:
        value = float(value)
    except ValueError:
        raise pytest.UsageError(f"gradient_oracle_{name} must be a number, got {value!r}") from None
    if not value >= 0:
        raise pytest.UsageError(f"gradient_oracle_{name} must be ≥ 0, got {value!r}")
    return value


class GradientOracle:
    """What the `gradient_oracle` fixture returns; see the module docstring."""

    def __init__(self, rtol: float | None = None, atol: float | None = None) -> None:
        self.rtol, self.atol = rtol, atol

    def _tolerances(
        self, rtol: float | None, atol: float | None, default: tuple[float, float]
    ) -> tuple[float, float]:
        rtol = rtol if rtol is not None else self.rtol if self.rtol is not None else default[0]
        atol = atol if atol is not None else self.atol if self.atol is not None else default[1]
        return rtol, atol

    def _sources(self, rtol: float | None, atol: float | None, default: str) -> str:
        """Where each tolerance comes from, in words: the call, the configuration, a default."""
        words = [
            "given to the call"
            if given is not None
            else "set in the pytest configuration"
            if configured is not None
            else default
            for given, configured in ((rtol, self.rtol), (atol, self.atol))
        ]
        if words[0] == words[1]:
            return words[0].replace("the default ", "the defaults ")
        return f"rtol {words[0]}, atol {words[1]}"

    def gradients(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        inputs: torch.Tensor,
        target: torch.Tensor,
        *,
        l2: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """`torch_ref.manual_gradients`: ∂L/∂θ by explicit backprop."""
        from torch_ref.oracle import manual_gradients

        return manual_gradients(model, loss_fn, inputs, target, l2=l2)

    def trace(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        inputs: torch.Tensor,
        target: torch.Tensor,
        *,
        l2: float = 0.0,
    ) -> Trace:
        """`torch_ref.manual_trace`: loss, ∂L/∂θ, δ and outputs of every layer."""
        from torch_ref.oracle import manual_trace

        return manual_trace(model, loss_fn, inputs, target, l2=l2)

    def compare(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        inputs: torch.Tensor,
        target: torch.Tensor,
        *,
        l2: float = 0.0,
        rtol: float | None = None,
        atol: float | None = None,
    ) -> GradientReport:
        """`torch_ref.compare_gradients` with the fixture's tolerances; never fails."""
        from torch_ref.oracle import compare_gradients

        rtol, atol = self._tolerances(rtol, atol, COMPARE_TOLERANCES)
        return compare_gradients(model, loss_fn, inputs, target, l2=l2, rtol=rtol, atol=atol)

    def assert_close(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        inputs: torch.Tensor,
        target: torch.Tensor,
        *,
        l2: float = 0.0,
        rtol: float | None = None,
        atol: float | None = None,
    ) -> GradientReport:
        """torch.autograd through your model (yours) against the oracle's explicit backprop,
        both in float64: ∂L/∂θ and every δ; the report if they agree, else AssertionError
        with the table."""
        __tracebackhide__ = True
        report = self.compare(model, loss_fn, inputs, target, l2=l2, rtol=rtol, atol=atol)
        if not report.ok:
            raise AssertionError(report.failure_message())
        return report

    def check_grads(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        inputs: torch.Tensor,
        target: torch.Tensor,
        grads: Mapping[str, torch.Tensor | np.ndarray],
        *,
        l2: float = 0.0,
        rtol: float | None = None,
        atol: float | None = None,
    ) -> GradientReport:
        """torch_ref.check_grads, with the tolerances this pytest run configured."""
        __tracebackhide__ = True
        from torch_ref.checks import check_grads

        return check_grads(
            model, loss_fn, inputs, target, grads, l2=l2, rtol=rtol, atol=atol,
            configured=(self.rtol, self.atol),
        )  # fmt: skip

    def gradcheck(self, func: Any, inputs: Any, **options: Any) -> bool:
        """torch_ref.gradcheck: torch.autograd.gradcheck's drop-in, exact."""
        __tracebackhide__ = True
        from torch_ref.gradchecks import gradcheck

        return gradcheck(func, inputs, **options)


_TOLERANCES = pytest.StashKey[tuple[float | None, float | None]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TOLERANCES] = (_configured(config, "rtol"), _configured(config, "atol"))


@pytest.fixture(scope="session")
def gradient_oracle(pytestconfig: pytest.Config) -> GradientOracle:
    """The gradient oracle of torch_ref: `assert_close`, `check_grads`, `compare`,
    `gradients`, `trace`."""
    return GradientOracle(*pytestconfig.stash[_TOLERANCES])
