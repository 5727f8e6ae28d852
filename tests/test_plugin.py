"""The pytest plugin, run as a user would: test files in a fresh temporary project (pytester),
the `gradient_oracle` fixture found through the installed `pytest11` entry point.

Each case is a user's test file, the pytest arguments, the outcomes, and the lines the
output must (and must not) hold."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn as nn

from torch_ref.pytest_plugin import GRAD_TOLERANCES, GradientOracle

pytest_plugins = ["pytester"]

# A user's model and a hand-written backward for it, as in a course or a custom kernel:
# Linear(3, 4) → tanh → Linear(4, 2), mean squared error.
USER_CODE = """
import torch
import torch.nn as nn


def problem():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x, t = torch.randn(5, 3, generator=g), torch.randn(5, 2, generator=g)
    return model, nn.MSELoss(), x, t


def my_backward(model, x, t, buggy=False):
    W1, b1, W2, b2 = (p.detach() for p in model.parameters())
    z1 = x @ W1.T + b1
    a1 = torch.tanh(z1)
    y = a1 @ W2.T + b2
    dy = 2 * (y - t) / y.numel()
    dz1 = (dy @ W2) * ((1 - z1**2) if buggy else (1 - a1**2))  # the bug: tanh' = 1 - z²
    return {"0.weight": dz1.T @ x, "0.bias": dz1.sum(0),
            "2.weight": dy.T @ a1, "2.bias": dy.sum(0)}
"""

PASSING = """
from user_code import my_backward, problem


def test_autograd_and_oracle_agree(gradient_oracle):
    report = gradient_oracle.assert_close(*problem())
    assert report.ok and len(report.rows) == 6  # 4 parameters, 2 deltas


def test_my_backward_matches_the_oracle(gradient_oracle):
    model, loss_fn, x, t = problem()
    gradient_oracle.check_grads(model, loss_fn, x, t, my_backward(model, x, t))


def test_passthroughs(gradient_oracle):
    model, loss_fn, x, t = problem()
    grads = gradient_oracle.gradients(model, loss_fn, x, t)
    trace = gradient_oracle.trace(model, loss_fn, x, t)
    assert set(grads) == set(trace.grads) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert set(trace.deltas) == {"0", "2"}
    assert gradient_oracle.compare(model, loss_fn, x, t).ok
"""

BUGGY_BACKWARD = """
from user_code import my_backward, problem


def test_my_backward_matches_the_oracle(gradient_oracle):
    model, loss_fn, x, t = problem()
    mine = my_backward(model, x, t, buggy=True)
    gradient_oracle.check_grads(model, loss_fn, x, t, mine)
"""

NUMPY_GRADIENTS = """
import numpy as np
from user_code import my_backward, problem


def test_float64_arrays(gradient_oracle):
    model, loss_fn, x, t = problem()
    model, x, t = model.double(), x.double(), t.double()
    mine = {k: v.numpy() for k, v in my_backward(model, x, t).items()}
    check = gradient_oracle.check_grads(model, loss_fn, x, t, mine)
    assert (check.rtol, check.atol) == (1e-7, 1e-10)


def test_buggy_float32_arrays(gradient_oracle):
    model, loss_fn, x, t = problem()
    mine = {k: v.numpy() for k, v in my_backward(model, x, t, buggy=True).items()}
    gradient_oracle.check_grads(model, loss_fn, x, t, mine)
"""

MISSING_GRADIENT = """
from user_code import my_backward, problem


def test_my_backward_matches_the_oracle(gradient_oracle):
    model, loss_fn, x, t = problem()
    mine = my_backward(model, x, t)
    del mine["2.bias"]
    mine["2.scale"] = mine["0.bias"]
    gradient_oracle.check_grads(model, loss_fn, x, t, mine)
"""

# A bug in the reference itself (tanh′ replaced by 1 − z²): assert_close must catch it.
BROKEN_REFERENCE = """
import numpy as np
from manual_bp.ops.activations import ACTIVATIONS, Activation
from user_code import problem


def test_oracle_against_autograd(gradient_oracle, monkeypatch):
    broken = lambda: Activation("tanh", np.tanh, lambda z: 1 - z**2)
    monkeypatch.setitem(ACTIVATIONS, "tanh", broken)
    gradient_oracle.assert_close(*problem())
"""

PROPERTY = """
from hypothesis import given, settings
from torch_ref.strategies import mlp_models


@settings(max_examples=5, deadline=None, derandomize=True)
@given(mlp_models(max_depth=2, max_width=4, max_batch=3, dtypes=("float64",)))
def test_random_mlps(gradient_oracle, problem):
    model, loss_fn, inputs, target = problem
    gradient_oracle.assert_close(model, loss_fn, inputs, target, l2=problem.spec.l2)
"""

TOLERANCES = """
from user_code import problem


def test_tolerances(gradient_oracle):
    report = gradient_oracle.assert_close(*problem())
    assert (report.rtol, report.atol) == (1e-3, 1e-5)
    assert gradient_oracle.assert_close(*problem(), atol=0.5).atol == 0.5
"""


@dataclass(frozen=True)
class Case:
    test_file: str
    args: tuple[str, ...] = ()
    outcomes: tuple[tuple[str, int], ...] = (("passed", 1),)
    lines: tuple[str, ...] = ()  # fnmatch patterns, in order
    absent: tuple[str, ...] = ()  # fnmatch patterns
    ini: str = ""


CASES = {
    "passing tests use the fixture from the entry point": Case(
        PASSING,
        outcomes=(("passed", 3),),
        lines=("plugins:*manual-bp-*",),
    ),
    "a wrong user gradient fails with the table": Case(
        BUGGY_BACKWARD,
        outcomes=(("failed", 1),),
        lines=(
            "*gradient_oracle.check_grads(model, loss_fn, x, t, mine)",
            "E*your gradients differ from the oracle's (explicit backprop in float64)",
            "E*GradientReport: MISMATCH (4 tensors, rtol=0.0001, atol=1e-06: the defaults for "
            "float32 gradients)",
            "E*kind*name*shape*scale*max_rel_err*status",
            "E*0.weight*(4, 3)*FAIL",
            "E*2.weight*(2, 4)*ok",
            "E*worst entry of each failing tensor:",
            "E*param 0.weight[[]*]: yours *, oracle *",
        ),
        absent=("*pytest_plugin.py*", "*report.py*"),
    ),
    "NumPy arrays are gradients too": Case(
        NUMPY_GRADIENTS,
        outcomes=(("passed", 1), ("failed", 1)),
        lines=(
            "E*GradientReport: MISMATCH (4 tensors, rtol=0.0001, atol=1e-06: the defaults for "
            "float32 gradients)*",
            "E*0.weight*(4, 3)*FAIL",
            "E*param 0.weight[[]*]: yours *, oracle *",
        ),
        absent=("*must be a torch.Tensor*",),
    ),
    "the command line's tolerance is named as such": Case(
        BUGGY_BACKWARD,
        args=("--gradient-oracle-rtol=0.001",),
        outcomes=(("failed", 1),),
        lines=(
            "E*GradientReport: MISMATCH (4 tensors, rtol=0.001, atol=1e-06: rtol set in the pytest "
            "configuration,",
            "E*  atol the default for float32 gradients)",  # wrapped at 100 columns
        ),
    ),
    "a missing or unknown user gradient is named": Case(
        MISSING_GRADIENT,
        outcomes=(("failed", 1),),
        lines=(
            "E*missing from your gradients: 2.bias",
            "E*not parameters that require grad: 2.scale",
        ),
    ),
    "a broken reference fails assert_close with the table": Case(
        BROKEN_REFERENCE,
        outcomes=(("failed", 1),),
        lines=(
            "*gradient_oracle.assert_close(*problem())",
            "E*your model's gradients (torch.autograd) differ from the oracle's*",
            "E*GradientReport: MISMATCH*",
            "E*param*0.weight*FAIL*",
        ),
        absent=("*pytest_plugin.py*",),
    ),
    "hypothesis tests may use the session fixture": Case(
        PROPERTY, absent=("*FailedHealthCheck*", "*function-scoped fixture*")
    ),
    "tolerances from the command line": Case(
        TOLERANCES, args=("--gradient-oracle-rtol=1e-3", "--gradient-oracle-atol=1e-5")
    ),
    "tolerances from the ini file": Case(
        TOLERANCES, ini="[pytest]\ngradient_oracle_rtol = 1e-3\ngradient_oracle_atol = 1e-5\n"
    ),
    "the command line wins over the ini file": Case(
        TOLERANCES,
        args=("--gradient-oracle-rtol=1e-3",),
        ini="[pytest]\ngradient_oracle_rtol = 0.1\ngradient_oracle_atol = 1e-5\n",
    ),
    "-p no:torch_ref disables the plugin": Case(
        PASSING,
        args=("-p", "no:torch_ref"),
        outcomes=(("errors", 3),),
        lines=("*fixture 'gradient_oracle' not found*",),
    ),
}


@pytest.fixture(scope="module", autouse=True)
def _import_lazily_loaded_modules() -> None:
    """pytester's in-process runs drop the modules a run imported; torch cannot import some of
    its lazily loaded ones twice (fx tracing registers operator libraries), so load them here."""
    import torch
    import torch.nn as nn

    import torch_ref
    import torch_ref.strategies  # noqa: F401

    model = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    torch_ref.compare_gradients(model, nn.MSELoss(), torch.ones(1, 2), torch.zeros(1, 2))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plugin_in_a_fresh_project(pytester: pytest.Pytester, case: Case) -> None:
    pytester.makepyfile(user_code=USER_CODE, test_user=case.test_file)
    if case.ini:
        pytester.makeini(case.ini)
    result = pytester.runpytest(*case.args)
    result.assert_outcomes(**dict(case.outcomes))
    if case.lines:
        result.stdout.fnmatch_lines(list(case.lines))
    for pattern in case.absent:
        result.stdout.no_fnmatch_line(pattern)


def test_help_shows_the_default_tolerances(pytester: pytest.Pytester) -> None:
    text = " ".join(pytester.runpytest("--help").stdout.str().split())
    for name, i in (("rtol", 0), ("atol", 1)):
        option = text[text.index(f"--gradient-oracle-{name}") :]
        per_dtype = ", ".join(
            f"{dtype} {tol[i]:.0e}".replace("e-0", "e-") for dtype, tol in GRAD_TOLERANCES.items()
        )
        default = "1e-7" if name == "rtol" else "1e-10"
        assert option.startswith(
            f"--gradient-oracle-{name}={name.upper()} "
            f"{'relative' if name == 'rtol' else 'absolute'} tolerance of the gradient_oracle "
            f"fixture; a keyword in the call wins (default: {default} for assert_close and "
            f"compare; for check_grads, by the dtype of your gradients: {per_dtype})"
        ), option[:400]
        assert f"gradient_oracle_{name} (string):" in text  # the ini key, with the same help
    assert "float32 1e-4, float16 1e-2, bfloat16 5e-2" in text
    assert "per call" not in text


def test_failure_tables_have_no_trailing_spaces(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(user_code=USER_CODE, test_user=BUGGY_BACKWARD)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    table = [line for line in result.outlines if line.startswith("E ")]
    assert any(line.endswith(" FAIL") for line in table)
    assert any(line.endswith(" ok") for line in table)
    assert [line for line in table if line != line.rstrip()] == []


# --- check_grads in-process: what it accepts, and how it says what it used ---------------


def tiny_problem(bias: bool = True) -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(3, 2, bias=bias).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    return model, nn.MSELoss(), x, torch.randn(4, 2, generator=g, dtype=torch.float64)


def autograd_grads(model: nn.Module, loss_fn, x, t) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss_fn(model(x), t).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


ACCEPTED = {
    "float64 tensors": (lambda g: g, "the defaults for float64 gradients", 1e-7, 1e-10),
    "float32 tensors": (lambda g: g.float(), "the defaults for float32 gradients", 1e-4, 1e-6),
    "bfloat16 tensors": (
        lambda g: g.bfloat16(),
        "the defaults for bfloat16 gradients",
        5e-2,
        1e-3,
    ),
    "float64 arrays": (lambda g: g.numpy(), "the defaults for float64 gradients", 1e-7, 1e-10),
    "float32 arrays": (
        lambda g: g.float().numpy(),
        "the defaults for float32 gradients",
        1e-4,
        1e-6,
    ),
    "float16 arrays": (
        lambda g: g.numpy().astype(np.float16),
        "the defaults for float16 gradients",
        1e-2,
        1e-4,
    ),
}


@pytest.mark.parametrize("convert, words, rtol, atol", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_check_grads_accepts_tensors_and_arrays(convert, words, rtol, atol) -> None:
    model, loss_fn, x, t = tiny_problem()
    grads = {n: convert(g) for n, g in autograd_grads(model, loss_fn, x, t).items()}
    check = GradientOracle().check_grads(model, loss_fn, x, t, grads)
    assert check.ok and (check.rtol, check.atol) == (rtol, atol)
    assert str(check).splitlines()[0] == (
        f"GradientReport: OK (2 tensors, rtol={rtol:g}, atol={atol:g}: {words})"
    )


def test_check_grads_a_planted_error_in_an_array_fails() -> None:
    model, loss_fn, x, t = tiny_problem()
    grads = {n: g.numpy() for n, g in autograd_grads(model, loss_fn, x, t).items()}
    grads["weight"][1, 2] *= 1.001
    with pytest.raises(AssertionError) as info:
        GradientOracle().check_grads(model, loss_fn, x, t, grads)
    assert "weight (2, 3)" in str(info.value) and "weight[1, 2]: yours" in str(info.value)


def test_the_least_precise_dtype_sets_the_defaults() -> None:
    model, loss_fn, x, t = tiny_problem()
    grads = autograd_grads(model, loss_fn, x, t)
    grads["bias"] = grads["bias"].half().numpy()
    check = GradientOracle().check_grads(model, loss_fn, x, t, grads)
    assert (check.rtol, check.atol) == GRAD_TOLERANCES["float16"]


def test_one_tensor_is_singular() -> None:
    model, loss_fn, x, t = tiny_problem(bias=False)
    check = GradientOracle().check_grads(
        model, loss_fn, x, t, autograd_grads(model, loss_fn, x, t), rtol=1e-9, atol=0.0
    )
    assert str(check).startswith(
        "GradientReport: OK (1 tensor, rtol=1e-09, atol=0: given to the call)\n"
    )


REFUSED = {
    "a list": (
        {"bias": [0.0, 0.0]},
        TypeError,
        "your gradient 'bias' must be a torch.Tensor or a numpy.ndarray, got list",
    ),
    "an integer array": (
        {"bias": np.zeros(2, dtype=np.int64)},
        TypeError,
        "your gradient 'bias' has dtype int64; expected a floating-point dtype (float64, "
        "float32, float16, bfloat16)",
    ),
    "a complex tensor": (
        {"bias": torch.zeros(2, dtype=torch.complex128)},
        TypeError,
        "your gradient 'bias' has dtype complex128; expected a floating-point dtype*",
    ),
    "a wrong shape": (
        {"bias": np.zeros(3)},
        ValueError,
        "your gradient 'bias' has shape (3,), but the parameter has shape (2,)",
    ),
    "a dtype without default tolerances": (
        {"bias": torch.zeros(2, dtype=torch.float8_e4m3fn)},
        TypeError,
        "no default tolerances for float8_e4m3fn gradients (known: float64, float32, float16, "
        "bfloat16); pass rtol= and atol=",
    ),
    "not a mapping": (
        [np.zeros(2)],
        TypeError,
        "grads must map parameter names to tensors or arrays, got list",
    ),
}


@pytest.mark.parametrize("grads, error, message", REFUSED.values(), ids=REFUSED.keys())
def test_check_grads_refuses_before_any_arithmetic(grads, error, message, monkeypatch) -> None:
    model, loss_fn, x, t = tiny_problem()
    oracle = GradientOracle()
    monkeypatch.setattr(oracle, "trace", lambda *a, **k: pytest.fail("the oracle ran"))
    with pytest.raises(error) as info:
        oracle.check_grads(model, loss_fn, x, t, grads)
    assert fnmatch.fnmatchcase(str(info.value), message), str(info.value)


@pytest.mark.parametrize("value", ["-1", "tight"])
def test_bad_tolerance_option_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile(test_user="def test_nothing():\n    pass\n")
    pytester.makeini(f"[pytest]\ngradient_oracle_atol = {value}\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*gradient_oracle_atol must be *, got *{value}*"])
