"""The oracle on CNNs against torch.autograd (float64): parameter gradients and every δ.

- properties: random 2-d and 1-d CNNs from `cnn_specs()` (kernel, stride, padding incl.
  'same'/'valid', padding_mode, dilation, groups, bias, activations, eval dropout, every
  pool kind and option, Flatten, Linear, every loss), and integer-valued ones with max
  pooling in every block, where ReLU kinks and max-pool ties are hit exactly.
- CASES: one named model per layer option, each through the oracle alone, after a 1×1
  conv "0" whose δ is the δ_prev of the layer under test.
- the trace: δ of a conv layer is ∂L/∂z of shape (N, C, H, W), as autograd has it.
- REFUSALS: configurations torch cannot run (or runs to −∞) refused by the oracle with a
  ValueError naming the layer and the shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn
from _tolerances import TOLERANCES
from hypothesis import given, settings

import torch_ref
from torch_ref.strategies import CNNSpec, cnn_specs

TOL = TOLERANCES["model"]
AFFINE = (nn.Conv1d, nn.Conv2d, nn.Linear)


def check_model(
    where: str,
    model: nn.Module,
    loss_fn: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor,
    l2: float = 0.0,
) -> None:
    """Every parameter gradient and every Conv/Linear δ equals autograd's."""
    report = torch_ref.compare_gradients(model, loss_fn, inputs, target, l2=l2, **TOL)
    assert report.ok, f"{where}: manual gradients differ from autograd\n{report}"
    params = {n for n, p in model.named_parameters() if p.requires_grad}
    got = {r.name for r in report.rows if r.kind == "param"}
    assert got == params, f"{where}: param rows {sorted(got)}, expected {sorted(params)}"
    affine = {n for n, m in model.named_modules() if isinstance(m, AFFINE)}
    deltas = {r.name for r in report.rows if r.kind == "delta"}
    assert deltas == affine, f"{where}: δ rows {sorted(deltas)}, expected {sorted(affine)}"


def check(spec: CNNSpec) -> None:
    model, loss_fn, inputs, target = spec.build()
    check_model(repr(spec), model, loss_fn, inputs, target, spec.l2)


# --- properties -------------------------------------------------------------------------


@settings(max_examples=70)
@given(cnn_specs(conv_dims=(2,)))
def test_random_2d_cnns_match_autograd(spec: CNNSpec) -> None:
    check(spec)


@settings(max_examples=30)
@given(cnn_specs(conv_dims=(1,)))
def test_random_1d_cnns_match_autograd(spec: CNNSpec) -> None:
    check(spec)


@settings(max_examples=40)
@given(cnn_specs(integer_valued=True, pools=("max", "adaptive_max"), max_hw=8))
def test_max_pool_ties_and_kinks_match_autograd(spec: CNNSpec) -> None:
    """Integer weights and inputs: windows hold equal maxima (torch routes δ to the first)
    and ReLU-family inputs land exactly on their kinks."""
    check(spec)


# --- one named case per layer option ----------------------------------------------------


@dataclass(frozen=True)
class Case:
    """`layers` after a 1×1 conv on (N, C, *size); `integer`: small-integer weights/input."""

    name: str
    layers: Callable[[], list[nn.Module]]
    in_shape: tuple[int, ...]
    integer: bool = False


def conv2(c_in: int = 3, c_out: int = 4, k: int | tuple[int, int] = 3, **kw) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, dtype=torch.float64, **kw)


def conv1(c_in: int = 3, c_out: int = 4, k: int = 3, **kw) -> nn.Conv1d:
    return nn.Conv1d(c_in, c_out, k, dtype=torch.float64, **kw)


X2, X1 = (2, 3, 7, 6), (2, 3, 9)

CASES = [
    # Conv2d: padding modes, 'same'/'valid', stride, dilation, groups, bias
    Case("conv2d-zeros", lambda: [conv2(padding=(2, 1))], X2),
    Case("conv2d-reflect", lambda: [conv2(padding=(2, 1), padding_mode="reflect")], X2),
    Case("conv2d-replicate", lambda: [conv2(padding=(3, 2), padding_mode="replicate")], X2),
    Case("conv2d-circular", lambda: [conv2(padding=(2, 3), padding_mode="circular")], X2),
    Case("conv2d-same-odd", lambda: [conv2(k=3, padding="same")], X2),
    Case("conv2d-same-even", lambda: [conv2(k=(4, 2), padding="same")], X2),
    Case("conv2d-same-dilated", lambda: [conv2(k=3, padding="same", dilation=(2, 3))], X2),
    Case(
        "conv2d-same-reflect", lambda: [conv2(k=(4, 3), padding="same", padding_mode="reflect")], X2
    ),
    Case("conv2d-valid", lambda: [conv2(padding="valid")], X2),
    Case("conv2d-stride", lambda: [conv2(stride=(2, 3), padding=1)], X2),
    Case("conv2d-stride-leftover", lambda: [conv2(k=2, stride=3)], X2),
    Case("conv2d-dilation", lambda: [conv2(dilation=(2, 1))], X2),
    Case("conv2d-groups", lambda: [conv2(c_in=3, c_out=6, groups=3, k=2)], X2),
    Case("conv2d-depthwise", lambda: [conv2(c_in=3, c_out=3, groups=3)], X2),
    Case("conv2d-no-bias", lambda: [conv2(bias=False)], X2),
    Case("conv2d-kernel-fills-input", lambda: [conv2(k=(7, 6))], X2),
    # Conv1d
    Case("conv1d-zeros", lambda: [conv1(padding=2)], X1),
    Case("conv1d-reflect", lambda: [conv1(padding=2, padding_mode="reflect")], X1),
    Case("conv1d-replicate", lambda: [conv1(padding=4, padding_mode="replicate")], X1),
    Case("conv1d-circular", lambda: [conv1(padding=9, padding_mode="circular")], X1),
    Case("conv1d-same", lambda: [conv1(k=4, padding="same", dilation=2)], X1),
    Case("conv1d-valid-stride-dilation", lambda: [conv1(stride=2, dilation=3)], X1),
    Case("conv1d-groups-no-bias", lambda: [conv1(c_in=3, c_out=6, groups=3, bias=False)], X1),
    # max pooling
    Case("maxpool2d", lambda: [nn.MaxPool2d(2)], X2),
    Case("maxpool2d-stride-padding", lambda: [nn.MaxPool2d(3, stride=(1, 2), padding=1)], X2),
    Case("maxpool2d-dilation", lambda: [nn.MaxPool2d(2, stride=1, dilation=(3, 2))], X2),
    Case("maxpool2d-ceil", lambda: [nn.MaxPool2d((3, 2), stride=2, ceil_mode=True)], X2),
    Case(
        "maxpool2d-ceil-padding", lambda: [nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)], X2
    ),
    Case("maxpool2d-ties", lambda: [nn.MaxPool2d(3, stride=1, padding=1)], X2, integer=True),
    Case("maxpool1d", lambda: [nn.MaxPool1d(3, stride=2, padding=1, dilation=2)], X1),
    Case("maxpool1d-ceil-ties", lambda: [nn.MaxPool1d(2, ceil_mode=True)], X1, integer=True),
    # average pooling
    Case("avgpool2d", lambda: [nn.AvgPool2d(2)], X2),
    Case("avgpool2d-padding-count-pad", lambda: [nn.AvgPool2d(3, stride=2, padding=1)], X2),
    Case(
        "avgpool2d-padding-no-count-pad",
        lambda: [nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)],
        X2,
    ),
    Case(
        "avgpool2d-ceil",
        lambda: [nn.AvgPool2d((2, 4), stride=(3, 3), padding=(1, 2), ceil_mode=True)],
        X2,
    ),
    Case(
        "avgpool2d-ceil-no-count-pad",
        lambda: [nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)],
        X2,
    ),
    Case(
        "avgpool2d-divisor-override",
        lambda: [nn.AvgPool2d(3, stride=2, padding=1, divisor_override=2)],
        X2,
    ),
    Case("avgpool1d", lambda: [nn.AvgPool1d(4, stride=3, padding=2, ceil_mode=True)], X1),
    Case(
        "avgpool1d-no-count-pad",
        lambda: [nn.AvgPool1d(3, stride=2, padding=1, count_include_pad=False)],
        X1,
    ),
    # adaptive pooling
    Case("adaptive-avg2d-int", lambda: [nn.AdaptiveAvgPool2d(3)], X2),
    Case("adaptive-avg2d-none", lambda: [nn.AdaptiveAvgPool2d((None, 4))], X2),
    Case("adaptive-avg2d-upsample", lambda: [nn.AdaptiveAvgPool2d((9, 5))], X2),
    Case("adaptive-max2d-int", lambda: [nn.AdaptiveMaxPool2d(2)], X2),
    Case("adaptive-max2d-none", lambda: [nn.AdaptiveMaxPool2d((3, None))], X2),
    Case("adaptive-max2d-ties", lambda: [nn.AdaptiveMaxPool2d((4, 5))], X2, integer=True),
    Case("adaptive-avg1d", lambda: [nn.AdaptiveAvgPool1d(4)], X1),
    Case("adaptive-max1d", lambda: [nn.AdaptiveMaxPool1d(5)], X1),
    # dropout in eval, flatten
    Case("dropout2d-eval", lambda: [nn.Dropout2d(0.5), conv2(k=2)], X2),
    Case("dropout1d-eval", lambda: [nn.Dropout1d(0.5), conv1(k=2)], X1),
    Case("dropout-eval", lambda: [nn.Dropout(0.3), conv2(k=2)], X2),
    Case(
        "flatten-default", lambda: [nn.Flatten(), nn.Linear(3 * 7 * 6, 5, dtype=torch.float64)], X2
    ),
    Case(
        "flatten-2-3-into-conv1d",
        lambda: [
            nn.Flatten(2, 3),
            conv1(k=5, stride=2),
            nn.Flatten(),
            nn.Linear(4 * 19, 3, dtype=torch.float64),
        ],
        X2,
    ),
    Case(
        "flatten-1-2-linear-on-last",
        lambda: [nn.Flatten(1, 2), nn.Linear(6, 4, dtype=torch.float64), nn.Flatten(-2, -1)],
        X2,
    ),
    Case(
        "flatten-negative", lambda: [nn.Flatten(-3, -2), nn.Linear(6, 2, dtype=torch.float64)], X2
    ),
]


def case_problem(case: Case) -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
    """Conv 1×1 "0" → ReLU → the case's layers, eval mode, sum-MSE against a random target."""
    g = torch.Generator().manual_seed(0)
    c = case.in_shape[1]
    pre = nn.Conv2d if len(case.in_shape) == 4 else nn.Conv1d
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(pre(c, c, 1, dtype=torch.float64), nn.ReLU(), *case.layers())
    model.eval()
    if case.integer:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randint(-2, 3, p.shape, generator=g))
        inputs = torch.randint(-2, 3, case.in_shape, generator=g).double()
    else:
        inputs = torch.randn(case.in_shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out_shape = model(inputs).shape
    target = torch.randn(out_shape, generator=g, dtype=torch.float64)
    return model, nn.MSELoss(reduction="sum"), inputs, target


def test_case_names_are_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), f"duplicate case names in {names}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_layer_option_matches_autograd(case: Case) -> None:
    check_model(case.name, *case_problem(case))


# --- the trace ----------------------------------------------------------------------------


def test_trace_conv_delta_is_dL_dz() -> None:
    """trace.deltas[name] of a conv is ∂L/∂z of shape (N, C, H, W), as autograd has it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(
            conv2(3, 4, padding=1),
            nn.Tanh(),
            nn.MaxPool2d(2),
            nn.Sequential(conv2(4, 5, k=2, padding_mode="reflect", padding=1), nn.ReLU()),
            nn.Flatten(),
            nn.Linear(5 * 4 * 4, 3, dtype=torch.float64),
        )
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 2])
    trace = torch_ref.manual_trace(model, nn.CrossEntropyLoss(), x, t)
    z0 = model[0](x)
    z3 = model[3][0](model[2](model[1](z0)))
    loss = nn.CrossEntropyLoss()(model[5](model[4](model[3][1](z3))), t)
    dz0, dz3 = torch.autograd.grad(loss, [z0, z3])
    assert set(trace.deltas) == {"0", "3.0", "5"}, f"trace δ keys {sorted(trace.deltas)}"
    for name, want in (("0", dz0), ("3.0", dz3)):
        got = trace.deltas[name]
        assert got.shape == want.shape, f"δ[{name}]: shape {got.shape}, expected {want.shape}"
        assert got.dtype == torch.float64, f"δ[{name}]: dtype {got.dtype}"
        torch.testing.assert_close(got, want, **TOL, msg=lambda m, n=name: f"δ[{n}]: {m}")
    assert trace.deltas["0"].shape == (2, 4, 7, 6)
    assert trace.outputs["3.0"].shape == (2, 5, 4, 4), f"outputs[3.0] {trace.outputs['3.0'].shape}"
    assert trace.loss == pytest.approx(loss.item(), rel=1e-12)


# --- refusals -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A model torch cannot run on `in_shape` (`torch_gives` "error"), or runs to −∞ ("-inf");
    `match`: what the oracle's ValueError must say."""

    name: str
    layers: Callable[[], list[nn.Module]]
    in_shape: tuple[int, ...]
    match: str
    torch_gives: str = "error"


REFUSALS = [
    Refusal(
        "kernel-larger-than-padded-input",
        lambda: [conv2(2, 3, k=5, padding=1)],
        (1, 2, 2, 4),
        r"layer '0' \(Conv2d.*kernel of reach 5 .*larger than the padded input 4 .*"
        r"\(1, 2, 2, 4\)",
    ),
    Refusal(
        "dilated-kernel-output-zero",
        lambda: [conv1(2, 3, k=3, dilation=3)],
        (2, 2, 6),
        r"layer '0' \(Conv1d.*reach 7 .*padded input 6 .*\(2, 2, 6\).*output size would be 0",
    ),
    Refusal(
        "pool-output-zero",
        lambda: [conv2(2, 2, k=1), nn.AvgPool2d(3)],
        (1, 2, 2, 5),
        r"layer '1' \(AvgPool2d.*\(1, 2, 2, 5\) is too small.*output size would be 0",
    ),
    Refusal(
        "reflect-padding-not-below-input",
        lambda: [conv2(2, 2, k=1), conv2(2, 3, padding=2, padding_mode="reflect")],
        (1, 2, 2, 3),
        r"layer '1' \(Conv2d.*reflect padding \(2, 2\) must be smaller than the input "
        r"size 2 .*\(1, 2, 2, 3\)",
    ),
    Refusal(
        "circular-padding-wraps-twice",
        lambda: [conv1(2, 3, k=1, padding=3, padding_mode="circular")],
        (1, 2, 2),
        r"layer '0' \(Conv1d.*circular padding \(3, 3\) must be at most the input size 2",
    ),
    Refusal(
        "max-pool-window-on-padding-only",
        lambda: [conv2(2, 2, k=1), nn.MaxPool2d(2, stride=1, padding=1, dilation=2)],
        (1, 2, 1, 1),
        r"layer '1' \(MaxPool2d.*covers only padding.*\(1, 2, 1, 1\)",
        "-inf",
    ),
    Refusal(
        "wrong-channel-count",
        lambda: [conv2(3, 4)],
        (2, 2, 5, 5),
        r"layer '0' \(Conv2d.*expected input with 3 channels.*got 2 channels in shape "
        r"\(2, 2, 5, 5\)",
    ),
    Refusal(
        "wrong-channel-count-deeper",
        lambda: [conv1(2, 4), nn.ReLU(), conv1(3, 1)],
        (2, 2, 8),
        r"layer '2' \(Conv1d.*expected input with 3 channels.*got 4 channels in shape "
        r"\(2, 4, 6\)",
    ),
]


@pytest.mark.parametrize("bad", REFUSALS, ids=lambda r: r.name)
def test_oracle_refuses_what_torch_cannot_run(bad: Refusal) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(*bad.layers())
    x = torch.randn(bad.in_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    if bad.torch_gives == "error":
        with pytest.raises(RuntimeError):
            model(x)
    else:
        with torch.no_grad():
            assert torch.isneginf(model(x)).any(), f"{bad.name}: torch gave no −∞"
    target = torch.zeros(bad.in_shape[0], 1, dtype=torch.float64)
    for fn in (torch_ref.manual_gradients, torch_ref.compare_gradients):
        with pytest.raises(ValueError, match=bad.match):
            fn(model, nn.MSELoss(), x, target)


@settings(max_examples=100)
@given(cnn_specs())
def test_integer_valued_cnns_are_drawn_in_float64_only(spec):
    """(as mlp_specs: an integer net saturates a float32 softmax)"""
    assert spec.dtype == "float64" or not spec.integer_valued, spec
