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

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pytest

# NOTE: pytest imports every installed plugin at start-up, in every project; torch, NumPy
# and pandas are imported where they are first needed, so an unused plugin costs nothing.
if TYPE_CHECKING:
    import numpy as np
    import torch
    import torch.nn as nn

    from torch_ref.oracle import LossFn, Trace
    from torch_ref.report import GradientReport

#: default (rtol, atol) of `check_grads`, keyed by the dtype of the user's gradient; the
#: oracle's value is float64, the user's carries the rounding of its own dtype
GRAD_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-7, 1e-10),
    "float32": (1e-4, 1e-6),
    "float16": (1e-2, 1e-4),
    "bfloat16": (5e-2, 1e-3),
}

#: the defaults of `assert_close`: those of `torch_ref.compare_gradients` (both sides float64)
COMPARE_TOLERANCES = (1e-7, 1e-10)


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
        """Your ∂L/∂θ (keyed like named_parameters(); torch tensors or NumPy arrays) against
        the oracle's; the check if they agree, else AssertionError with the table naming the
        worst entries.

        Default tolerances follow the dtype of your gradients (`GRAD_TOLERANCES`; the least
        precise dtype among them when they differ); the table's first line says which."""
        __tracebackhide__ = True
        from torch_ref.oracle import layer_scales
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
        if unknown and any(map(math.isnan, self._tolerances(rtol, atol, (math.nan, math.nan)))):
            raise TypeError(
                f"no default tolerances for {', '.join(unknown)} gradients (known: "
                f"{', '.join(GRAD_TOLERANCES)}); pass rtol= and atol="
            )
        # the least precise dtype among your gradients sets the default tolerances
        known = sorted(dtypes & set(GRAD_TOLERANCES), key=lambda d: GRAD_TOLERANCES[d])
        coarsest = known[-1] if known else "float64"
        rtol_, atol_ = self._tolerances(rtol, atol, GRAD_TOLERANCES[coarsest])
        check = GradientReport(
            None,
            None,
            rtol=rtol_,
            atol=atol_,
            labels=("yours", "oracle"),
            yours="your gradients",
            tolerances=self._sources(rtol, atol, f"the default for {coarsest} gradients"),
            dtype=coarsest,
        )
        trace = self.trace(model, loss_fn, inputs, target, l2=l2)
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


_TOLERANCES = pytest.StashKey[tuple[float | None, float | None]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TOLERANCES] = (_configured(config, "rtol"), _configured(config, "atol"))


@pytest.fixture(scope="session")
def gradient_oracle(pytestconfig: pytest.Config) -> GradientOracle:
    """The gradient oracle of torch_ref: `assert_close`, `check_grads`, `compare`,
    `gradients`, `trace`."""
    return GradientOracle(*pytestconfig.stash[_TOLERANCES])
