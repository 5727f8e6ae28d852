"""The pytest plugin, run as a user would: test files in a fresh temporary project (pytester),
the `gradient_oracle` fixture found through the installed `pytest11` entry point.

Each case is a user's test file, the pytest arguments, the outcomes, and the lines the
output must (and must not) hold."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

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
            "E*your gradients differ from the oracle's",
            "E*GradCheck: MISMATCH (4 tensors, rtol=0.0001, atol=1e-06)*",
            "E*worst: 0.*yours * vs oracle *",
            "E*name*shape*max_abs_err*max_rel_err*ok*worst*",
            "E*0.weight*(4, 3)*FAIL*yours*oracle*",
            "E*2.weight*(2, 4)*ok*",
        ),
        absent=("*pytest_plugin.py*", "*report.py*"),
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
            "E*manual gradients differ from torch.autograd",
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


@pytest.mark.parametrize("value", ["-1", "tight"])
def test_bad_tolerance_option_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile(test_user="def test_nothing():\n    pass\n")
    pytester.makeini(f"[pytest]\ngradient_oracle_atol = {value}\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*gradient_oracle_atol must be *, got *{value}*"])
