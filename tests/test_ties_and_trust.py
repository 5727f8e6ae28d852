"""Never cry wolf, never hide a bug.

- Kinks and ties decided by rounding are reported as `tie` (ok), with where they were: the
  four cases found by an independent random-network generator, and random integer-valued
  nets where ties and kinks are everywhere.
- Real bugs still fail: a derivative off by 1%, a wrong tie rule in max pooling, a wrong
  kink side — each planted by patching a registry row.
- The reference is the user's own autograd: a custom autograd.Function with a wrong backward
  is found and named; a straight-through estimator is reported with its reason; a correct
  custom backward is OK.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from _tolerances import TOLERANCES
from hypothesis import given
from hypothesis import strategies as st

import torch_ref
from manual_bp.ops import activations as A
from manual_bp.ops.pooling import MaxPool1d, MaxPool2d
from torch_ref.registry import _tables, lookup_module, registry
from torch_ref.report import GradientReport

pytest_plugins = ["pytester"]

TOL = TOLERANCES["model"]


def statuses(report: GradientReport) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in report.rows:
        out[r.status] = out.get(r.status, 0) + 1
    return out


# --- the four cases of the issue ---------------------------------------------------------


def _bn_constant_channel(act: nn.Module) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """BatchNorm in training mode over a channel whose values are all equal: x − mean is 0
    here and ±3e-15 in torch, and the activation after it takes opposite branches."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), act, nn.Flatten(),
                          nn.Linear(3 * 4, 2)).double().train()  # fmt: skip
    with torch.no_grad():
        model[0].weight[1].zero_()
        model[0].bias[1] = 0.3
    return model, torch.randn(5, 2, 2, 2, dtype=torch.float64), torch.randn(5, 2).double()


def _gelu_tail() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """GELU of −38..−9 is −0.0 in torch: a max pool after it sees a tie of zeros."""
    model = nn.Sequential(nn.Conv1d(1, 1, 1), nn.GELU(), nn.MaxPool1d(2)).double()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.zero_()
    x = torch.tensor([[[-20.0, -30.0, -15.0, -38.0, -9.5, -12.0, 1.0, 2.0]]]).double()
    return model, x, torch.zeros(1, 1, 4).double()


def _circular_1x1() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A convolution over a circularly padded 1×1 input: nine mathematically equal values,
    then an adaptive max pool choosing among them."""
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 1, padding=1, padding_mode="circular")
    model = nn.Sequential(conv, nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, 2)).double()
    return model, torch.randn(6, 3, 1, 1).double(), torch.randn(6, 2).double()


def _hardtanh_bounds() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Linear outputs that land on Hardtanh's bounds within 1e-14 (0.1 + 0.2 + 0.3 …)."""
    model = nn.Sequential(nn.Linear(3, 4), nn.Hardtanh(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]] * 2))
        model[0].bias.copy_(torch.tensor([0.4, 0.4, -1.6, -1.6]))
    x = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0], [2.0, 1.0, 1.0]]).double()
    return model, x, torch.randn(3, 2, generator=torch.Generator().manual_seed(2)).double()


CASES = {
    "batchnorm constant channel, relu": lambda: _bn_constant_channel(nn.ReLU()),
    "batchnorm constant channel, leaky relu": lambda: _bn_constant_channel(nn.LeakyReLU(0.1)),
    "batchnorm constant channel, elu": lambda: _bn_constant_channel(nn.ELU(0.5)),
    "gelu far tail then max pool": _gelu_tail,
    "circular pad of a 1x1 input then adaptive max pool": _circular_1x1,
    "hardtanh bounds": _hardtanh_bounds,
}


@pytest.mark.parametrize("case", CASES)
def test_rounding_at_kinks_is_never_a_failure(case: str) -> None:
    model, x, t = CASES[case]()
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t, **TOL)
    assert report.ok, f"{case}\n{report}"
    assert "fail" not in statuses(report), f"{case}\n{report}"


def test_a_tie_row_says_how_many_entries_and_where() -> None:
    model, x, t = _bn_constant_channel(nn.ReLU())
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t, **TOL)
    ties = report.ties
    assert ties, f"the constant channel should need a replay here\n{report}"
    assert all(r.layers == ("1",) and "entries at kinks/ties in 1" in r.note for r in ties)
    text = str(report)
    assert text.splitlines()[0].startswith("GradientReport: OK")
    assert "differ only at kinks or ties that rounding decided (in 1)" in text
    assert torch_ref.assert_gradients_close(model, nn.MSELoss(), x, t, **TOL) is not None


# --- planted bugs: a patched registry row must fail, never become a tie --------------------


@pytest.fixture
def patch_row(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Replace a row's rule wherever a name reaches it (functions, methods, modules)."""

    def patch(name: str, rule: Any) -> None:
        row = next(r for r in registry() if r.name == name)
        new = dataclasses.replace(row, rule=rule)
        for table in _tables(registry()):
            for key, entry in list(table.items()):
                if entry is row:
                    monkeypatch.setitem(table, key, new)

    return patch


def _off_by(act: A.Activation, factor: float) -> A.Activation:
    grad = act.grad
    return dataclasses.replace(
        act, grad=lambda z: factor * grad(z), grad_from_output=None, kink=act.kink
    )


def _integer_mlp(act: nn.Module, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), act, nn.Linear(6, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randint(-2, 3, p.shape, generator=g).double())
    x = torch.randint(-2, 3, (8, 4), generator=g).double()
    return model, x, torch.randint(-2, 3, (8, 3), generator=g).double()


def test_planted_derivative_off_by_one_percent_fails(patch_row: Any) -> None:
    patch_row("tanh", lambda input, **kw: torch_ref.registry.core.Op(
        _off_by(A.tanh(), 1.01), (input,)))  # fmt: skip
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x, t = torch.randn(8, 4).double(), torch.randn(8, 3).double()
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t)
    assert not report.ok and "tie" not in statuses(report), str(report)
    failing = {r.name for r in report.failures()}
    assert {"0.weight", "0.bias", "0"} <= failing, failing


def test_planted_wrong_kink_side_fails_on_exact_zeros(patch_row: Any) -> None:
    """relu′(0) = 1 instead of torch's 0: integer nets put z exactly on 0 on both sides, so
    no rounding is involved and no replay may excuse it."""
    wrong = dataclasses.replace(A.relu(), grad=lambda z: (z >= 0).astype(np.float64))
    patch_row("relu", lambda input, *a, **kw: torch_ref.registry.core.Op(wrong, (input,)))
    hits = 0
    for seed in range(20):
        model, x, t = _integer_mlp(nn.ReLU(), seed)
        with torch.no_grad():
            on_kink = bool((model[0](x) == 0).any())
        report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t)
        if on_kink:
            hits += 1
            assert not report.ok and "tie" not in statuses(report), f"seed {seed}\n{report}"
    assert hits >= 5, "the integer nets should put some z exactly on the kink"


def test_planted_wrong_tie_rule_in_max_pooling_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ties going to the last maximum instead of torch's first, on exactly tied integers."""
    real = MaxPool2d.forward

    def last_wins(self: MaxPool2d, x: np.ndarray) -> Any:
        z, cache = real(self, x[..., ::-1, ::-1].copy())
        return z[..., ::-1, ::-1], ("flipped", cache)

    def backward(self: MaxPool2d, delta: np.ndarray, cache: Any) -> Any:
        dx, grads = real_backward(self, delta[..., ::-1, ::-1].copy(), cache[1])
        return dx[..., ::-1, ::-1], grads

    real_backward = MaxPool2d.backward
    monkeypatch.setattr(MaxPool2d, "forward", last_wins)
    monkeypatch.setattr(MaxPool2d, "backward", backward)
    model = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 2)).double()
    x = torch.tensor([[[[1.0, 1.0, 2.0, 0.0], [0.0, 1.0, 2.0, 2.0],
                        [3.0, 0.0, 0.0, 3.0], [0.0, 0.0, 1.0, 1.0]]]])  # fmt: skip
    t = torch.zeros(1, 2).double()
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x.double(), t, input_grads=True)
    assert not report.ok and "tie" not in statuses(report), str(report)
    assert [r.name for r in report.failures()] == ["input"]
    assert MaxPool1d.forward is not last_wins


def test_a_replay_cannot_excuse_a_bug_far_from_any_kink(patch_row: Any) -> None:
    """A wrong leaky_relu slope is wrong everywhere on the negative side, not only near 0."""
    wrong = dataclasses.replace(
        A.leaky_relu(0.1), grad=lambda z: np.where(z > 0, 1.0, 0.2), grad_from_output=None
    )
    patch_row("leaky_relu", lambda input, *a, **kw: torch_ref.registry.core.Op(wrong, (input,)))
    model, x, t = _bn_constant_channel(nn.LeakyReLU(0.1))
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t, **TOL)
    assert not report.ok and statuses(report).get("fail", 0) >= 3, str(report)


# --- random integer-valued nets: ties and kinks everywhere -----------------------------

_ACTS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, lambda: nn.LeakyReLU(0.5), nn.ELU, nn.GELU,
         nn.Hardswish, nn.Identity)  # fmt: skip


def integer_net(seed: int) -> tuple[nn.Module, Any, torch.Tensor, torch.Tensor]:
    """A random small CNN or MLP with integer weights and inputs, built of ops that bring
    rounding (averages, normalisation in training mode, thirds) in front of kinks and ties."""
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    act = _ACTS[rng.integers(len(_ACTS))]
    C = int(rng.integers(1, 4))
    layers: list[nn.Module] = [nn.Conv2d(C, 3, int(rng.choice([1, 3])), padding="same")]
    if rng.random() < 0.5:
        layers.append(nn.BatchNorm2d(3))
    layers.append(act())
    layers.append([nn.AvgPool2d(3, 1, 1), nn.Identity()][int(rng.integers(2))])
    layers.append([nn.MaxPool2d(2), nn.AdaptiveMaxPool2d(2), nn.AvgPool2d(2)][int(rng.integers(3))])
    layers.extend([nn.Flatten(), nn.Linear(12, 4), act(), nn.Linear(4, 3)])
    model = nn.Sequential(*layers).double().train(bool(rng.random() < 0.5))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randint(-2, 3, p.shape, generator=g).double())
    N = int(rng.integers(2, 5))
    x = torch.randint(-3, 4, (N, C, 4, 4), generator=g).double()
    loss = [nn.MSELoss(), nn.L1Loss(), nn.CrossEntropyLoss()][int(rng.integers(3))]
    if isinstance(loss, nn.CrossEntropyLoss):
        t = torch.randint(0, 3, (N,), generator=g)
    else:
        t = torch.randint(-2, 3, (N, 3), generator=g).double()
    return model, loss, x, t


def _run_nets(seeds: range) -> dict[str, int]:
    counts = {"ok": 0, "tie": 0, "fail": 0, "nets with ties": 0}
    for seed in seeds:
        model, loss, x, t = integer_net(seed)
        report = torch_ref.compare_gradients(model, loss, x, t, **TOL)
        found = statuses(report)
        assert report.ok and "fail" not in found, f"seed {seed}: {model}\n{report}"
        for k, n in found.items():
            counts[k] += n
        counts["nets with ties"] += bool(found.get("tie"))
    return counts


def test_integer_valued_nets_never_fail_and_some_need_the_replay() -> None:
    counts = _run_nets(range(60))
    assert counts["fail"] == 0 and counts["nets with ties"] >= 1, counts


@given(seed=st.integers(0, 2**31 - 1))
def test_integer_valued_nets_never_fail(seed: int) -> None:
    """A property over random integer-valued nets: never a failure (ties are reported as
    such). HYPOTHESIS_PROFILE=thorough runs 1,000 of them (about a minute of CPU)."""
    _run_nets(range(seed, seed + 1))


# --- custom autograd Functions: the user's own backward is what is checked ---------------


class Double(torch.autograd.Function):
    """Forward t·2 with a wrong backward g·3."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        return t * 2

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        return g * 3


class GoodSwish(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(t)
        return t * torch.sigmoid(t)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        (t,) = ctx.saved_tensors
        s = torch.sigmoid(t)
        return g * s * (1 + t * (1 - s))


class StraightThrough(torch.autograd.Function):
    """Rounding with the identity as its backward: a deliberate surrogate."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        return torch.round(t)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        return g


class WithFunction(nn.Module):
    def __init__(self, fn: type[torch.autograd.Function]) -> None:
        super().__init__()
        self.fn = fn
        self.hidden = nn.Linear(4, 5)
        self.out = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.fn.apply(self.hidden(x))))


def _check(fn: type[torch.autograd.Function]) -> GradientReport:
    torch.manual_seed(0)
    model = WithFunction(fn).double()
    x, t = 2 * torch.randn(6, 4).double(), torch.randn(6, 2).double()
    return torch_ref.compare_gradients(model, nn.MSELoss(), x, t, input_grads=True)


def test_a_wrong_custom_backward_is_found_and_named() -> None:
    report = _check(Double)
    assert not report.ok
    rows = [r for r in report.rows if r.kind == "function"]
    assert [r.name for r in rows] == ["Double#0 input 0"] and rows[0].status == "fail"
    assert rows[0].max_rel_err == pytest.approx(1 / 3, rel=1e-9)  # 3 against the true 2
    assert any("Double (call 0): its backward differs" in n for n in report.notes)
    user = WithFunction(Double).double()  # what the user's own loss.backward() gives
    assert {r.name for r in report.failures()} >= {"hidden.weight", "hidden.bias", "hidden"}
    assert user is not None


def test_a_straight_through_estimator_is_reported_with_its_reason() -> None:
    report = _check(StraightThrough)
    assert not report.ok
    (row,) = [r for r in report.rows if r.kind == "function"]
    assert row.status == "fail" and "straight-through" in row.note
    assert any("straight-through estimator is a deliberate surrogate" in n for n in report.notes)


def test_a_correct_custom_backward_is_ok() -> None:
    report = _check(GoodSwish)
    assert report.ok, str(report)
    assert not [r for r in report.rows if r.kind == "function"]


# --- the fixture and the command line on a tie-only report ---------------------------------


def test_the_fixture_passes_a_tie_only_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        textwrap.dedent(
            """
            import torch, torch.nn as nn

            def test_constant_channel(gradient_oracle):
                torch.manual_seed(0)
                model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.ReLU(),
                                      nn.Flatten(), nn.Linear(12, 2)).double().train()
                with torch.no_grad():
                    model[0].weight[1].zero_()
                    model[0].bias[1] = 0.3
                x, t = torch.randn(5, 2, 2, 2).double(), torch.randn(5, 2).double()
                report = gradient_oracle.assert_close(model, nn.MSELoss(), x, t)
                assert report.ties
            """
        )
    )
    result = pytester.runpytest_subprocess("-q", "-p", "torch_ref")
    result.assert_outcomes(passed=1)


def test_the_cli_exits_0_on_a_tie_only_report_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(
        textwrap.dedent(
            """
            import torch, torch.nn as nn

            class ConstantChannel(nn.Module):
                # channel 1 is 0.3 everywhere: BatchNorm's x − mean is 0 here, not in torch

                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(2, 3, 1)
                    self.bn = nn.BatchNorm2d(3)
                    self.head = nn.Linear(12, 2)

                def forward(self, x):
                    keep = torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1)
                    z = self.conv(x) * keep + 0.3
                    return self.head(torch.relu(self.bn(z)).flatten(1))
            """
        )
    )
    cmd = [sys.executable, "-m", "torch_ref", "check", "model.py:ConstantChannel",
           "--input-shape", "5,2,2,2", "--train"]  # fmt: skip
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "GradientReport: OK" in result.stdout and "tie" in result.stdout, result.stdout


def test_the_relu_row_is_reached_by_the_module_and_function_forms() -> None:
    """(The planted-bug fixture patches rows through the lookup tables: both forms.)"""
    assert lookup_module(nn.ReLU) is next(r for r in registry() if r.name == "relu")
    assert F.relu in next(r for r in registry() if r.name == "relu").functions
