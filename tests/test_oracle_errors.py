"""The oracle's refusals: every bad input, through all four public functions.

- CASES: a table of named bad calls, each with the error type and a regex for what the
  message must say (what was expected, what was given, which layer or tensor). Every
  case runs through manual_gradients, manual_trace, compare_gradients and
  assert_gradients_close: they share one front door and must refuse alike.
- a hypothesis property over garbage-ish calls (wrong ranks, shapes, target dtypes and
  values, l2): whatever is refused is refused by our code, as ValueError / TypeError /
  UnsupportedModuleError naming a shape or a name, never by NumPy or torch underneath.
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import torch_ref
from torch_ref import UnsupportedModuleError

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "manual_gradients": torch_ref.manual_gradients,
    "manual_trace": torch_ref.manual_trace,
    "compare_gradients": torch_ref.compare_gradients,
    "assert_gradients_close": torch_ref.assert_gradients_close,
}

N, F_IN, C = 6, 4, 3  # batch, input features, outputs / classes


# --- builders ------------------------------------------------------------------------


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mlp(*tail: nn.Module, hidden_in: int = 5) -> nn.Sequential:
    """Linear(4, 5) → Tanh → Linear(hidden_in, 3) → tail, with fixed weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Linear(F_IN, 5, dtype=torch.float64),
            nn.Tanh(),
            nn.Linear(hidden_in, C, dtype=torch.float64),
            *tail,
        )


class _Spectrum(nn.Module):
    """A real FFT's magnitude: torch runs it as one ATen op with complex values, no row and no
    decomposition: refused, naming the module."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft(x).abs()


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(shape or (N, F_IN), generator=_gen(1), dtype=torch.float64)


def _y(*shape: int) -> torch.Tensor:
    return torch.randn(shape or (N, C), generator=_gen(2), dtype=torch.float64)


def _labels() -> torch.Tensor:
    return torch.tensor([0, 1, 2, 0, 1, 2])


def _with(t: torch.Tensor, index: tuple[int, ...], value: float) -> torch.Tensor:
    t = t.clone()
    t[index] = value
    return t


def _poisoned(param: str, value: float) -> nn.Module:
    model = _mlp()
    with torch.no_grad():
        model.get_parameter(param).view(-1)[1] = value
    return model


def _batchnorm_with_bad_buffer() -> nn.Module:
    model = nn.Sequential(nn.Linear(F_IN, C, dtype=torch.float64), nn.BatchNorm1d(C)).eval()
    model[1].running_var[2] = float("inf")
    return model


class _Nested(nn.Module):
    """Qualified names two deep: 'body.0', 'body.2', 'head'."""

    def __init__(self, middle: nn.Module, body_in: int = F_IN) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(body_in, 5, dtype=torch.float64), nn.Tanh(), middle)
        self.head = nn.Linear(5, C, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class _FunctionalDropout(nn.Module):
    """F.dropout with training=True written into forward: random whatever the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(F_IN, C, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(torch.tanh(self.fc(x)), p=0.25, training=True)


def _negative_running_var() -> nn.Module:
    model = nn.Sequential(
        nn.Linear(F_IN, C, dtype=torch.float64), nn.BatchNorm1d(C, dtype=torch.float64)
    ).eval()
    with torch.no_grad():
        model[1].running_var[1] = -0.5
    return model


# --- the table -----------------------------------------------------------------------


@dataclass
class Case:
    """One bad call: `build()` gives (model, loss_fn, inputs, target); `l2` its keyword."""

    name: str
    build: Callable[[], tuple[Any, Any, Any, Any]]
    error: type[Exception]
    match: str
    l2: Any = 0.0


def _ce(model: Any = None, inputs: Any = None, target: Any = None, **options: Any):
    def build():
        return (
            _mlp() if model is None else model(),
            nn.CrossEntropyLoss(**options),
            _x() if inputs is None else inputs(),
            _labels() if target is None else target(),
        )

    return build


def _regression(loss: Callable[[], Any], target: Callable[[], Any], tail=(), inputs=None):
    return lambda: (_mlp(*tail), loss(), _x() if inputs is None else inputs(), target())


CASES: list[Case] = [
    # -- shapes that do not fit a layer: the layer's qualified name, expected and given
    Case(
        "wrong_feature_count",
        _ce(inputs=lambda: _x(N, 7)),
        ValueError,
        r"layer '0' .*expected input \(\*, 4\) with 4 features, got shape \(6, 7\)",
    ),
    Case(
        "wrong_feature_count_inside",
        _ce(model=lambda: _mlp(hidden_in=6)),
        ValueError,
        r"layer '2' .*expected input \(\*, 6\) with 6 features, got shape \(6, 5\)",
    ),
    Case(
        "wrong_feature_count_nested",
        _ce(model=lambda: _Nested(nn.Linear(7, 5, dtype=torch.float64))),
        ValueError,
        r"layer 'body\.2' .*with 7 features, got shape \(6, 5\)",
    ),
    # -- NaN / Inf: which tensor, how many
    Case(
        "nan_in_inputs",
        _ce(inputs=lambda: _with(_x(), (1, 2), float("nan"))),
        ValueError,
        r"input.*'inputs' holds 1 NaN/Inf value\(s\); expected finite",
    ),
    Case(
        "inf_in_inputs",
        _ce(inputs=lambda: _with(_x(), (0, 0), -float("inf"))),
        ValueError,
        r"'inputs' holds 1 NaN/Inf value\(s\); expected finite",
    ),
    Case(
        "nan_in_parameter",
        _ce(model=lambda: _poisoned("0.weight", float("nan"))),
        ValueError,
        r"parameter '0\.weight' holds 1 NaN/Inf value\(s\); expected finite",
    ),
    Case(
        "inf_in_parameter",
        _ce(model=lambda: _poisoned("2.bias", float("inf"))),
        ValueError,
        r"parameter '2\.bias' holds 1 NaN/Inf value\(s\); expected finite",
    ),
    Case(
        "inf_in_buffer",
        _ce(model=_batchnorm_with_bad_buffer),
        ValueError,
        r"buffer '1\.running_var' holds 1 NaN/Inf value\(s\); expected finite",
    ),
    # -- class targets
    Case(
        "class_target_too_large",
        _ce(target=lambda: _with(_labels(), (2,), 3)),
        ValueError,
        r"CrossEntropyLoss: expected class indices in \[0, 3\) or ignore_index=-100, "
        r"got 3 at index \(2,\)",
    ),
    Case(
        "class_target_negative",
        _ce(target=lambda: _with(_labels(), (4,), -1)),
        ValueError,
        r"expected class indices in \[0, 3\) or ignore_index=-100, got -1 at index \(4,\)",
    ),
    Case(
        "class_target_negative_not_ignore_index",
        _ce(target=lambda: _with(_labels(), (0,), -100), ignore_index=-1),
        ValueError,
        r"expected class indices in \[0, 3\) or ignore_index=-1, got -100 at index \(0,\)",
    ),
    Case(
        "nll_target_too_large",
        lambda: (_mlp(nn.LogSoftmax(dim=1)), nn.NLLLoss(), _x(), _with(_labels(), (5,), 7)),
        ValueError,
        r"NLLLoss: expected class indices in \[0, 3\).*got 7 at index \(5,\)",
    ),
    Case(
        "class_target_float",
        _ce(target=lambda: _labels().double()),
        ValueError,
        r"expected integer class indices, got dtype float64",
    ),
    Case(
        "every_target_ignored_mean",
        _ce(target=lambda: torch.full((N,), -100)),
        ValueError,
        r"reduction='mean' divides by .* which is 0 here \(6 of 6 targets ignored\)",
    ),
    # -- batch sizes and target shapes
    Case(
        "batch_sizes_differ",
        _ce(target=lambda: _labels()[:5]),
        ValueError,
        r"CrossEntropyLoss: expected target batch size 6 \(input shape \(6, 3\)\), got target "
        r"batch size 5 \(target shape \(5,\)\)",
    ),
    Case(
        "mse_target_of_another_shape",
        _regression(nn.MSELoss, lambda: _y(N, 1)),
        ValueError,
        r"MSELoss: expected a target of the input's shape \(6, 3\), got shape \(6, 1\)",
    ),
    Case(
        "mse_target_scalar",
        _regression(nn.MSELoss, lambda: torch.tensor(1.0)),
        ValueError,
        r"MSELoss: expected a target of the input's shape \(6, 3\), got shape \(\)",
    ),
    Case(
        "ce_probabilities_of_wrong_shape",
        _ce(target=lambda: torch.rand(N, 4)),
        ValueError,
        r"expected class indices of shape \(6,\) or probabilities of shape \(6, 3\) for "
        r"input of shape \(6, 3\), got target shape \(6, 4\)",
    ),
    Case(
        "ce_index_target_2d",
        _ce(target=lambda: _labels()[:, None]),
        ValueError,
        r"expected class indices of shape \(6,\).*got target shape \(6, 1\)",
    ),
    Case(
        "bce_target_shape",
        _regression(nn.BCELoss, lambda: torch.rand(N), (nn.Sigmoid(),)),
        ValueError,
        r"BCELoss: expected a target of the input's shape \(6, 3\), got shape \(6,\)",
    ),
    Case(
        "bce_with_logits_target_shape",
        _regression(nn.BCEWithLogitsLoss, lambda: torch.rand(N, 2)),
        ValueError,
        r"BCEWithLogitsLoss: expected a target of the input's shape \(6, 3\), "
        r"got shape \(6, 2\)",
    ),
    Case(
        "empty_batch",
        _ce(inputs=lambda: _x(0, F_IN), target=lambda: _labels()[:0]),
        ValueError,
        r"inputs must hold a non-empty batch, got shape \(0, 4\)",
    ),
    # -- randomness: no reference gradient exists
    Case(
        "dropout_in_training_mode",
        lambda: (_mlp(nn.Dropout(0.3)).train(), nn.CrossEntropyLoss(), _x(), _labels()),
        ValueError,
        r"module '3' \(Dropout\).*training mode \(p=0\.3\).*expected model\.eval\(\)",
    ),
    Case(
        "dropout_in_training_mode_nested",
        _ce(model=lambda: _Nested(nn.Dropout(0.5)).train(), inputs=None),
        ValueError,
        r"module 'body\.2' \(Dropout\).*is in training mode",
    ),
    Case(
        "functional_dropout_training_true",
        _ce(model=_FunctionalDropout),
        ValueError,
        r"F\.dropout .*line \d+.*training mode \(p=0\.25\).*training=self\.training",
    ),
    # -- not tensors, not a module, not a number
    Case(
        "inputs_a_list",
        _ce(inputs=lambda: _x().tolist()),
        TypeError,
        r"inputs\[0\] must be a torch\.Tensor \(or a tuple of them\), got list",
    ),
    Case(
        "inputs_an_ndarray",
        _ce(inputs=lambda: _x().numpy()),
        TypeError,
        r"inputs must be a torch\.Tensor \(or a tuple of them\), got ndarray",
    ),
    Case(
        "target_a_list",
        _ce(target=lambda: [0, 1, 2, 0, 1, 2]),
        TypeError,
        r"target must be a torch\.Tensor, got list",
    ),
    Case(
        "target_none",
        _ce(target=lambda: None),
        TypeError,
        r"target must be a torch\.Tensor, got NoneType",
    ),
    Case(
        "model_a_function",
        _ce(model=lambda: lambda x: x),
        TypeError,
        r"model must be a torch\.nn\.Module, got function",
    ),
    Case(
        "model_a_state_dict",
        _ce(model=lambda: _mlp().state_dict()),
        TypeError,
        r"model must be a torch\.nn\.Module, got OrderedDict",
    ),
    Case("l2_negative", _ce(), ValueError, r"l2 must be a finite number ≥ 0, got -0\.5", l2=-0.5),
    Case("l2_nan", _ce(), ValueError, r"l2 must be a finite number ≥ 0, got nan", l2=float("nan")),
    Case("l2_inf", _ce(), ValueError, r"l2 must be a finite number ≥ 0, got inf", l2=float("inf")),
    Case("l2_a_string", _ce(), TypeError, r"l2 must be a .*number.*got '0\.1'", l2="0.1"),
    Case("l2_none", _ce(), TypeError, r"l2 must be a .*number.*got None", l2=None),
    # -- dtypes
    Case(
        "integer_inputs",
        _ce(inputs=lambda: torch.ones(N, F_IN, dtype=torch.int64)),
        ValueError,
        r"module '0' \(Linear\).*expects floating inputs, got int values of shape \(6, 4\)",
    ),
    Case(
        "bool_inputs",
        _ce(inputs=lambda: torch.ones(N, F_IN, dtype=torch.bool)),
        ValueError,
        r"module '0' \(Linear\).*expects floating inputs, got bool values",
    ),
    Case(
        "complex_inputs",
        _ce(inputs=lambda: torch.ones(N, F_IN, dtype=torch.complex128)),
        ValueError,
        r"inputs of shape \(6, 4\) is complex \(torch\.complex128\); expected real values",
    ),
    Case(
        "complex_target",
        _regression(nn.MSELoss, lambda: _y().to(torch.complex128)),
        ValueError,
        r"(?i)expected a real .*target.*got dtype .*complex128",
    ),
    Case(
        "class_target_int32",
        _ce(target=lambda: _labels().int()),
        ValueError,
        r"target.*(int64|Long).*got .*int32",
    ),
    Case(
        "class_target_bool",
        _ce(target=lambda: _labels().bool()),
        ValueError,
        r"target.*(int64|Long).*got .*bool",
    ),
    Case(
        "bce_target_bool",
        _regression(nn.BCELoss, lambda: torch.ones(N, C, dtype=torch.bool), (nn.Sigmoid(),)),
        ValueError,
        r"BCELoss.*(float|floating).*target.*got .*bool",
    ),
    Case(
        "huber_target_int64",
        _regression(nn.HuberLoss, lambda: torch.ones(N, C, dtype=torch.int64)),
        ValueError,
        r"HuberLoss.*(float|floating).*target.*got .*int64",
    ),
    # -- what the oracle has no backward for: qualified name, class, what is supported
    Case(
        "fold_in_sequential",
        lambda: (
            nn.Sequential(
                nn.Linear(F_IN, 4 * F_IN),
                nn.Unflatten(1, (4, F_IN)),
                _Spectrum(),
                nn.Flatten(),
                nn.Linear(4 * F_IN, C),
            ),
            nn.MSELoss(),
            _x().float(),
            _y().float(),
        ),
        UnsupportedModuleError,
        r"torch.fft.fft in module '2' \(_Spectrum\).* is not supported: it has no registry row, "
        r"and torch runs it as aten._fft_\w+, on complex values; the oracle differentiates real",
    ),
    Case(
        "fold_nested",
        _ce(
            model=lambda: _Nested(nn.Sequential(nn.Unflatten(1, (5, 1)), _Spectrum(), nn.Flatten()))
        ),
        UnsupportedModuleError,
        r"in module 'body\.2\.1' \(_Spectrum\) at File .*line \d+.* is not supported",
    ),
    Case(
        "loss_reduction_none",
        _ce(reduction="none"),
        ValueError,  # (per sample: torch's lowering of it; the loss_fn must reduce it)
        r"loss_fn must return a scalar .*got shape \(6,\).*reduction='none'",
    ),
    Case(
        "loss_returns_a_float",
        _regression(lambda: lambda out, t: float(F.mse_loss(out, t)), _y),
        ValueError,  # (said of the loss, not wrapped as a failed check of the model)
        r"^loss_fn must return a scalar floating tensor, got float from the loss .*float\(\)",
    ),
    Case(
        "loss_returns_none",
        _regression(lambda: lambda out, t: None, _y),
        ValueError,
        r"^loss_fn must return a scalar floating tensor, got NoneType from the loss",
    ),
    Case(
        "loss_detached",
        _regression(lambda: lambda out, t: F.mse_loss(out, t).detach(), _y),
        ValueError,  # (the record's own reason, not "a check in ... failed")
        r"^\w+\.forward returned no tensor that carries gradient",
    ),
    Case(
        "functional_loss_reduction_none",
        _regression(lambda: functools.partial(F.mse_loss, reduction="none"), _y),
        ValueError,  # (one loss per element is a row of its own; the loss_fn must reduce it)
        r"loss_fn must return a scalar .*got shape \(6, 3\).*reduction='none'",
    ),
    # -- tensors that hold no plain values, and a loss weight that wants a gradient
    Case(
        "sparse_inputs",
        _ce(inputs=lambda: _x().to_sparse()),
        ValueError,
        r"expected a dense \(strided\) tensor, got inputs of shape \(6, 4\) as torch\.sparse_coo",
    ),
    Case(
        "meta_inputs",
        _ce(inputs=lambda: torch.empty(N, F_IN, dtype=torch.float64, device="meta")),
        ValueError,
        r"expected real values, got inputs of shape \(6, 4\) on the meta device",
    ),
    Case(
        "sparse_target",
        _regression(nn.MSELoss, lambda: _y().to_sparse()),
        ValueError,
        r"expected a dense \(strided\) tensor, got target of shape \(6, 3\) as torch\.sparse_coo",
    ),
    Case(
        "meta_target",
        _regression(nn.MSELoss, lambda: torch.empty(N, C, dtype=torch.float64, device="meta")),
        ValueError,
        r"expected real values, got target of shape \(6, 3\) on the meta device",
    ),
    Case(
        "loss_weight_requires_grad",
        _ce(weight=torch.ones(C, dtype=torch.float64, requires_grad=True)),
        ValueError,
        r"the loss's weight requires grad; .*weight\.detach\(\)",
    ),
    Case(
        "empty_sequential",
        _ce(model=lambda: nn.Sequential()),
        ValueError,
        r"expected a model with at least one layer, got an empty nn\.Sequential\(\)",
    ),
    Case(
        "batch_norm_negative_running_var",
        _ce(model=lambda: _negative_running_var()),
        ValueError,
        r"module '1' \(BatchNorm1d\).*running_var must be ≥ 0.*running_var\[1\] = .*-0\.5",
    ),
]


def _params() -> list:
    return [pytest.param(case, fn, id=f"{case.name}-{fn}") for case in CASES for fn in FUNCTIONS]


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch's own broadcast warnings
@pytest.mark.parametrize(("case", "fn"), _params())
def test_bad_input_is_refused_with_what_was_expected_and_given(case: Case, fn: str):
    model, loss_fn, inputs, target = case.build()
    with pytest.raises(case.error, match=case.match) as info:
        FUNCTIONS[fn](model, loss_fn, inputs, target, l2=case.l2)
    _assert_ours(f"{case.name} via {fn}", info.value)


def test_table_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), f"duplicate case names: {names}"


def test_unsupported_module_error_is_a_not_implemented_error():
    assert issubclass(UnsupportedModuleError, NotImplementedError)
    model = nn.Sequential(
        nn.Linear(F_IN, 4 * F_IN), nn.Unflatten(1, (4, F_IN)), _Spectrum(), nn.Flatten()
    )
    with pytest.raises(NotImplementedError, match=r"'2' \(_Spectrum\)"):
        torch_ref.manual_gradients(model, nn.MSELoss(), _x().float(), _y(N, 4 * F_IN).float())


# --- no bare NumPy (or torch) error, whatever the call -------------------------------

_PROJECT = tuple(str(Path(__file__).resolve().parents[1] / d) for d in ("manual_bp", "torch_ref"))
#: phrases of errors raised by NumPy or torch, not by the oracle's own checks
_FOREIGN = re.compile(
    r"operands could not be broadcast|mismatch in its core dimension|ufunc|safely coerced|"
    r"is out of bounds|cannot reshape|too many indices|only integers, slices|"
    r"setting an array element|not supported for the input types|mat1 and mat2|"
    r"expected scalar type|Found dtype|can't be cast|not implemented for"
)
#: an oracle message names a shape, a dtype, or a module / tensor / option by name
_NAMES_SOMETHING = re.compile(
    r"shape|dtype|\(\d[\d, ]*\)|\(\)|'[\w.#-]+'|\bgot\b|\b[A-Z][a-z]+[A-Z]\w*"  # or a class
)


def _assert_ours(where: str, err: BaseException) -> None:
    """The error is one of the oracle's, raised by its own code, naming what is wrong."""
    kind = type(err).__name__
    assert isinstance(err, (ValueError, TypeError, UnsupportedModuleError)), (
        f"{where}: {kind} is not ValueError/TypeError/UnsupportedModuleError: {err}"
    )
    frame = traceback.extract_tb(err.__traceback__)[-1]
    assert frame.filename.startswith(_PROJECT), (
        f"{where}: {kind} raised in {frame.filename}:{frame.lineno}, outside manual_bp and "
        f"torch_ref: {err}"
    )
    message = str(err)
    foreign = _FOREIGN.search(message)
    assert foreign is None, f"{where}: {kind} reads like NumPy/torch ({foreign[0]!r}): {message}"
    assert _NAMES_SOMETHING.search(message), f"{where}: {kind} names no shape or name: {message}"


FLOATS = ("float64", "float32", "float16")
INTEGERS = ("int64", "int32", "int16", "uint8", "bool")

#: loss name → (torch loss, the output layer it needs, the target dtypes torch takes for it:
#: its backward ran in float64 for each; the class losses take Long or Byte indices)
GARBAGE_LOSSES: dict[str, tuple[Callable[[], Any], tuple[nn.Module, ...], tuple[str, ...]]] = {
    "mse": (nn.MSELoss, (), FLOATS + INTEGERS),
    "l1": (lambda: nn.L1Loss(reduction="sum"), (), FLOATS + INTEGERS[:-1]),
    "huber": (nn.HuberLoss, (), FLOATS),
    "smooth_l1": (lambda: nn.SmoothL1Loss(beta=0.5), (), FLOATS + INTEGERS),
    "cross_entropy": (nn.CrossEntropyLoss, (), FLOATS + ("int64", "uint8")),
    "cross_entropy_options": (
        lambda: nn.CrossEntropyLoss(ignore_index=0, label_smoothing=0.1),
        (),
        ("int64", "uint8"),
    ),
    "cross_entropy_sum_weight": (
        lambda: nn.CrossEntropyLoss(reduction="sum", weight=torch.tensor([1.0, 2.0, 0.5])),
        (),
        FLOATS + ("int64", "uint8"),
    ),
    "nll": (nn.NLLLoss, (nn.LogSoftmax(dim=-1),), ("int64", "uint8")),
    "bce": (nn.BCELoss, (nn.Sigmoid(),), FLOATS),
    "bce_with_logits": (nn.BCEWithLogitsLoss, (), FLOATS),
}


def _target_dtypes(loss: str, torch_takes: bool = True) -> tuple[str, ...]:
    """The target dtypes torch's loss takes, or those it refuses."""
    takes = GARBAGE_LOSSES[loss][2]
    return takes if torch_takes else tuple(d for d in FLOATS + INTEGERS if d not in takes)


@dataclass(frozen=True)
class GarbageSpec:
    """A call that is probably wrong somewhere: printable, built by `build()`."""

    loss: str
    inputs_shape: tuple[int, ...]
    inputs_dtype: str
    target_shape: tuple[int, ...]
    target_dtype: str
    target_values: str  # "labels" | "normal" | "unit" | "nan" | "huge"
    l2: float
    function: str
    dropout_train: bool

    def build(self) -> tuple[Any, Any, Any, Any]:
        make_loss, tail, _ = GARBAGE_LOSSES[self.loss]
        middle = nn.Dropout(0.5) if self.dropout_train else nn.Identity()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = nn.Sequential(nn.Linear(F_IN, 5), nn.Tanh(), middle, nn.Linear(5, C), *tail)
        model.train(self.dropout_train)
        g = _gen(3)
        inputs = torch.randn(self.inputs_shape, generator=g, dtype=torch.float64)
        inputs = inputs.to(getattr(torch, self.inputs_dtype))
        values = {
            "labels": lambda s: torch.randint(-1, C + 1, s, generator=g).double(),
            "normal": lambda s: torch.randn(s, generator=g, dtype=torch.float64),
            "unit": lambda s: torch.rand(s, generator=g, dtype=torch.float64),
            "nan": lambda s: torch.full(s, float("nan"), dtype=torch.float64),
            "huge": lambda s: torch.full(s, 1e30, dtype=torch.float64),
        }[self.target_values](self.target_shape)
        dtype = getattr(torch, self.target_dtype)
        if not dtype.is_floating_point:
            values = values.nan_to_num(0.0).clamp(-2, 2**20)
            if dtype == torch.uint8:
                values = values.clamp(min=0)
        return model, make_loss(), inputs, values.to(dtype)


@st.composite
def garbage_specs(draw: st.DrawFn) -> GarbageSpec:
    """Mostly-right calls with a few things wrong: each field is right more often than not
    (repeats in sampled_from weigh the draw), so that some calls get past the first check.
    The target's dtype is always one torch's loss takes (the others: WRONG_TARGET_DTYPES)."""
    loss = draw(st.sampled_from(sorted(GARBAGE_LOSSES)))
    rank = draw(st.sampled_from([0, 1, 2, 2, 2, 3]))
    dims = st.sampled_from([0, 1, 2, 3, 4, 4])
    inputs_shape = tuple(draw(st.lists(dims, min_size=rank, max_size=rank)))
    if rank and draw(st.sampled_from([True, True, True, False])):
        inputs_shape = (*inputs_shape[:-1], F_IN)  # the right feature count
    output = (*inputs_shape[:-1], C) if rank else ()
    target_shape = draw(
        st.one_of(
            st.just(output),  # what an elementwise loss takes
            st.just(output[:-1]),  # class indices for a 2-d output
            st.just(output[:1]),
            st.lists(st.integers(0, 7), max_size=3).map(tuple),
        )
    )
    return GarbageSpec(
        loss=loss,
        inputs_shape=inputs_shape,
        inputs_dtype=draw(st.sampled_from(["float64", "float64", "float64", "float32", "int64"])),
        target_shape=target_shape,
        target_dtype=draw(st.sampled_from(_target_dtypes(loss))),
        target_values=draw(st.sampled_from(["labels", "labels", "normal", "unit", "nan", "huge"])),
        l2=draw(st.sampled_from([0.0, 0.0, 0.0, 0.3, 0.3, -1.0, float("nan")])),
        function=draw(st.sampled_from(sorted(FUNCTIONS))),
        dropout_train=draw(st.sampled_from([False, False, False, True])),
    )


def _refused_by_us_or_accepted(spec: GarbageSpec) -> None:
    model, loss_fn, inputs, target = spec.build()
    try:
        FUNCTIONS[spec.function](model, loss_fn, inputs, target, l2=spec.l2)
    except AssertionError as err:  # assert_gradients_close: a report, not a refusal
        assert spec.function == "assert_gradients_close", f"{spec!r}: {err}"
        assert "differ from the oracle's" in str(err), f"{spec!r}: {err}"
    except Exception as err:  # noqa: BLE001 (the property is about which errors)
        _assert_ours(repr(spec), err)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=200)
@given(garbage_specs())
def test_garbage_is_refused_by_the_oracle_never_by_numpy(spec: GarbageSpec):
    _refused_by_us_or_accepted(spec)


#: (loss, an integer or bool target dtype torch's loss refuses), every such pair
WRONG_TARGET_DTYPES = [
    (loss, dtype)
    for loss in sorted(GARBAGE_LOSSES)
    for dtype in _target_dtypes(loss, torch_takes=False)
    if dtype in INTEGERS
]


@pytest.mark.parametrize(("loss", "dtype"), WRONG_TARGET_DTYPES)
def test_target_of_a_dtype_torch_refuses_is_refused_by_the_oracle(loss, dtype):
    """Everything fits but the target's dtype, which torch's loss refuses: so do we."""
    make_loss, tail, _ = GARBAGE_LOSSES[loss]
    class_indices = loss.startswith(("cross_entropy", "nll"))
    target = (_labels() if class_indices else torch.ones(N, C)).to(getattr(torch, dtype))
    for fn, call in FUNCTIONS.items():
        with pytest.raises(ValueError, match=rf"(?s)target.*{dtype}") as info:
            call(_mlp(*tail), make_loss(), _x(), target)
        _assert_ours(f"{fn}({loss}, target dtype {dtype})", info.value)


def test_known_numpy_messages_are_caught_by_the_property():
    """The property's checks bite: a bare NumPy error fails them."""
    try:
        np.ones((2, 3)) + np.ones((4,))
    except ValueError as err:
        with pytest.raises(AssertionError, match="outside manual_bp and torch_ref"):
            _assert_ours("numpy", err)
    try:
        np.isfinite("a")
    except TypeError as err:
        with pytest.raises(AssertionError, match="outside manual_bp and torch_ref|NumPy"):
            _assert_ours("numpy", err)


# --- tolerances, and inference mode ----------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "value", "error", "match"),
    [
        ("rtol", "a", TypeError, r"rtol must be a finite number ≥ 0, got 'a'"),
        ("rtol", -1, ValueError, r"rtol must be a finite number ≥ 0, got -1"),
        ("atol", float("nan"), ValueError, r"atol must be a finite number ≥ 0, got nan"),
        ("atol", float("inf"), ValueError, r"atol must be a finite number ≥ 0, got inf"),
        ("rtol", True, TypeError, r"rtol must be a finite number ≥ 0, got True"),
    ],
)
@pytest.mark.parametrize("fn", ["compare_gradients", "assert_gradients_close"])
def test_tolerances_are_checked_before_anything_else(keyword, value, error, match, fn):
    with pytest.raises(error, match=match):
        FUNCTIONS[fn](_mlp(), nn.CrossEntropyLoss(), _x(), _labels(), **{keyword: value})


def test_inference_mode_inputs_are_taken_and_calls_inside_it_are_refused():
    with torch.inference_mode():
        x = _x()  # an inference tensor
    for fn in FUNCTIONS.values():
        fn(_mlp(), nn.CrossEntropyLoss(), x, _labels())
    with torch.inference_mode():
        grads = torch_ref.manual_gradients(_mlp(), nn.CrossEntropyLoss(), _x(), _labels())
        assert set(grads) == {"0.weight", "0.bias", "2.weight", "2.bias"}
        for name in ("compare_gradients", "assert_gradients_close"):
            with pytest.raises(
                ValueError, match=r"inside torch\.inference_mode\(\), where autograd"
            ):
                FUNCTIONS[name](_mlp(), nn.CrossEntropyLoss(), _x(), _labels())


def test_finite_parameters_whose_sum_overflows_are_not_refused():
    """The finiteness check sums first; a sum that overflows float32 (finite values, 3e38
    each) is looked at entry by entry, not taken for a NaN or Inf."""

    class Holds(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.big = nn.Parameter(torch.full((4,), 3e38))  # (not used by forward)

        def forward(self, x):
            return self.fc(x)

    model = Holds()
    assert not torch.isfinite(model.big.detach().sum())
    grads = torch_ref.manual_gradients(model, nn.MSELoss(), torch.randn(2, 4), torch.randn(2, 3))
    assert torch.equal(grads["big"], torch.zeros(4))
    poisoned = Holds()
    with torch.no_grad():
        poisoned.big[1] = float("inf")
    with pytest.raises(ValueError, match=r"parameter 'big' holds 1 NaN/Inf value\(s\)"):
        torch_ref.manual_gradients(poisoned, nn.MSELoss(), torch.randn(2, 4), torch.randn(2, 3))
