"""The converter, op by op: one small model per supported module, function and method,
each compared with torch.autograd in float64 (parameter gradients and δ), and the
refusals declared as data (what is raised, and what the message must name)."""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from _tolerances import TOLERANCES

import torch_ref
from manual_bp.ops import (
    Add,
    AddConstant,
    Cat,
    Div,
    Flatten,
    Identity,
    Layer,
    Linear,
    LogSoftmax,
    Mean,
    Mul,
    Permute,
    Reshape,
    Scale,
    Softmax,
    Sub,
    Sum,
    Transpose,
)
from manual_bp.ops.conv import Conv1d, Conv2d
from manual_bp.ops.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from manual_bp.ops.pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)
from torch_ref.capture import capture

TOL = TOLERANCES["model"]


class Fn(nn.Module):
    """forward(x) = fn(self, x), with the given submodules: one op, written as users do."""

    def __init__(self, fn: Callable[[Any, torch.Tensor], torch.Tensor], **modules: nn.Module):
        super().__init__()
        self.fn = fn
        for name, m in modules.items():
            self.add_module(name, m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self, x)


def seq(*modules: nn.Module) -> Callable[[], nn.Module]:
    return lambda: nn.Sequential(*modules)


def fn(f: Callable[[Any, torch.Tensor], torch.Tensor], **modules: nn.Module) -> Callable[[], Fn]:
    return lambda: Fn(f, **modules)


@dataclass(frozen=True)
class Case:
    """A model of one op: its input shape, the manual layer it must become, how many δ rows."""

    name: str
    build: Callable[[], nn.Module]
    shape: tuple[int, ...]
    layer: type[Layer]
    deltas: int = 0
    modes: tuple[str, ...] = ("eval",)


def conv1d(**kw: Any) -> nn.Conv1d:
    return nn.Conv1d(kw.pop("c_in", 2), kw.pop("c_out", 4), kw.pop("k", 3), **kw)


def conv2d(**kw: Any) -> nn.Conv2d:
    return nn.Conv2d(kw.pop("c_in", 2), kw.pop("c_out", 4), kw.pop("k", 3), **kw)


BOTH = ("train", "eval")

MODULE_CASES = [
    # convolutions: every option, each padding mode, string paddings
    Case("Conv1d", seq(conv1d()), (3, 2, 9), Conv1d, 1),
    Case("Conv1d-stride-pad-dil", seq(conv1d(stride=2, padding=2, dilation=2)), (3, 2, 11),
         Conv1d, 1),
    Case("Conv1d-groups-nobias", seq(conv1d(groups=2, bias=False)), (3, 2, 8), Conv1d, 1),
    Case("Conv1d-reflect", seq(conv1d(padding=2, padding_mode="reflect")), (2, 2, 7), Conv1d, 1),
    Case("Conv1d-same", seq(conv1d(k=4, padding="same", dilation=2)), (2, 2, 9), Conv1d, 1),
    Case("Conv2d", seq(conv2d()), (2, 2, 6, 7), Conv2d, 1),
    Case("Conv2d-tuple-options",
         seq(conv2d(k=(3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2))),
         (2, 2, 7, 6), Conv2d, 1),
    Case("Conv2d-groups", seq(conv2d(c_in=4, c_out=6, groups=2)), (2, 4, 5, 5), Conv2d, 1),
    Case("Conv2d-replicate", seq(conv2d(padding=1, padding_mode="replicate")), (2, 2, 5, 6),
         Conv2d, 1),
    Case("Conv2d-circular", seq(conv2d(padding=(2, 1), padding_mode="circular")), (2, 2, 5, 6),
         Conv2d, 1),
    Case("Conv2d-reflect-same", seq(conv2d(k=2, padding="same", padding_mode="reflect")),
         (2, 2, 5, 6), Conv2d, 1),
    Case("Conv2d-valid-nobias", seq(conv2d(padding="valid", bias=False)), (2, 2, 5, 6), Conv2d, 1),
    # pooling
    Case("MaxPool1d", seq(nn.MaxPool1d(3, stride=2, padding=1, dilation=1, ceil_mode=True)),
         (2, 3, 10), MaxPool1d),
    Case("MaxPool2d", seq(nn.MaxPool2d(2)), (2, 3, 6, 7), MaxPool2d),
    Case("MaxPool2d-options", seq(nn.MaxPool2d((3, 2), stride=(2, 1), padding=1, dilation=(1, 2))),
         (2, 3, 7, 7), MaxPool2d),
    Case("AvgPool1d", seq(nn.AvgPool1d(3, stride=2, padding=1, count_include_pad=False)),
         (2, 3, 9), AvgPool1d),
    Case("AvgPool2d", seq(nn.AvgPool2d(2)), (2, 3, 6, 6), AvgPool2d),
    Case("AvgPool2d-options", seq(nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True,
                                               divisor_override=5)), (2, 3, 8, 7), AvgPool2d),
    Case("AdaptiveAvgPool1d", seq(nn.AdaptiveAvgPool1d(3)), (2, 3, 7), AdaptiveAvgPool1d),
    Case("AdaptiveAvgPool2d", seq(nn.AdaptiveAvgPool2d((3, None))), (2, 3, 7, 5),
         AdaptiveAvgPool2d),
    Case("AdaptiveMaxPool1d", seq(nn.AdaptiveMaxPool1d(4)), (2, 3, 7), AdaptiveMaxPool1d),
    Case("AdaptiveMaxPool2d", seq(nn.AdaptiveMaxPool2d(2)), (2, 3, 5, 7), AdaptiveMaxPool2d),
    # normalisation: eval (running statistics) and train (batch statistics)
    Case("BatchNorm1d-2d-input",
         seq(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)),
         (6, 4), BatchNorm1d, 2, BOTH),
    Case("BatchNorm1d-3d-input", seq(nn.BatchNorm1d(3)), (4, 3, 5), BatchNorm1d, 0, BOTH),
    Case("BatchNorm1d-no-affine", seq(nn.BatchNorm1d(4, affine=False), nn.Linear(4, 2)),
         (5, 4), BatchNorm1d, 1, BOTH),
    Case("BatchNorm1d-no-running-stats", seq(nn.BatchNorm1d(4, track_running_stats=False)),
         (5, 4), BatchNorm1d, 0, BOTH),
    Case("BatchNorm2d", seq(conv2d(padding=1), nn.BatchNorm2d(4, eps=1e-3), nn.ReLU()),
         (3, 2, 4, 5), BatchNorm2d, 1, BOTH),
    Case("BatchNorm2d-momentum-None", seq(nn.BatchNorm2d(2, momentum=None)), (3, 2, 3, 3),
         BatchNorm2d, 0, BOTH),
    Case("BatchNorm2d-no-affine-no-stats",
         seq(nn.BatchNorm2d(2, affine=False, track_running_stats=False)), (3, 2, 3, 3),
         BatchNorm2d, 0, BOTH),
    Case("LayerNorm", seq(nn.Linear(3, 6), nn.LayerNorm(6), nn.GELU(), nn.Linear(6, 2)),
         (4, 3), LayerNorm, 2),
    Case("LayerNorm-trailing-2", seq(nn.LayerNorm((3, 4), eps=1e-3)), (2, 5, 3, 4), LayerNorm),
    Case("LayerNorm-no-affine", seq(nn.LayerNorm(4, elementwise_affine=False)), (3, 4), LayerNorm),
    Case("LayerNorm-no-bias", seq(nn.LayerNorm(4, bias=False)), (3, 2, 4), LayerNorm),
    # shape, identity and along-a-dim modules
    Case("Flatten", seq(conv1d(), nn.Flatten(), nn.Linear(28, 2)), (2, 2, 9), Flatten, 2),
    Case("Dropout-eval", seq(nn.Linear(3, 4), nn.Dropout(0.5), nn.Dropout1d(0.3)), (2, 3),
         Identity, 1),
    Case("Dropout2d-eval", seq(conv2d(), nn.Dropout2d(0.5)), (2, 2, 4, 4), Identity, 1),
    Case("Identity", seq(nn.Identity(), nn.Linear(3, 2)), (2, 3), Identity, 1),
    Case("LogSoftmax", seq(nn.Linear(3, 4), nn.LogSoftmax(dim=1)), (2, 3), LogSoftmax, 1),
    Case("Softmax", seq(nn.Linear(3, 4), nn.Softmax(dim=-1)), (2, 3), Softmax, 1),
]  # fmt: skip

FUNCTIONAL_CASES = [
    # layers in functional form: weights are the model's own parameters (get_attr)
    Case("F.linear", fn(lambda m, x: F.linear(x, m.fc.weight, m.fc.bias), fc=nn.Linear(3, 4)),
         (2, 3), Linear, 1),
    Case("F.conv1d", fn(lambda m, x: F.conv1d(x, m.c.weight, m.c.bias, stride=2, padding=1),
                        c=conv1d()), (2, 2, 9), Conv1d, 1),
    Case("F.conv2d", fn(lambda m, x: F.conv2d(x, m.c.weight, None, 1, "same", 2, 2),
                        c=conv2d(c_in=4, groups=2, bias=False)), (2, 4, 6, 6), Conv2d, 1),
    Case("F.max_pool1d", fn(lambda m, x: F.max_pool1d(x, 3, 2, ceil_mode=True)), (2, 2, 8),
         MaxPool1d),
    Case("F.max_pool2d", fn(lambda m, x: F.max_pool2d(x, 2)), (2, 2, 6, 5), MaxPool2d),
    Case("F.max_pool2d-options", fn(lambda m, x: F.max_pool2d(x, (2, 3), stride=1, padding=1,
                                                              dilation=(2, 1))),
         (2, 2, 5, 6), MaxPool2d),
    Case("F.avg_pool1d", fn(lambda m, x: F.avg_pool1d(x, 2, padding=1, count_include_pad=False)),
         (2, 2, 7), AvgPool1d),
    Case("F.avg_pool2d", fn(lambda m, x: F.avg_pool2d(x, 2, 2)), (2, 3, 6, 6), AvgPool2d),
    Case("F.avg_pool2d-options", fn(lambda m, x: F.avg_pool2d(x, 3, 2, 1, True, False, 4)),
         (2, 3, 7, 6), AvgPool2d),
    Case("F.adaptive_avg_pool2d", fn(lambda m, x: F.adaptive_avg_pool2d(x, (1, 3))),
         (2, 3, 5, 7), AdaptiveAvgPool2d),
    Case("F.adaptive_max_pool2d", fn(lambda m, x: F.adaptive_max_pool2d(x, 2)), (2, 3, 5, 5),
         AdaptiveMaxPool2d),
    Case("F.layer_norm", fn(lambda m, x: F.layer_norm(x, (4,), m.ln.weight, m.ln.bias, 1e-6),
                            ln=nn.LayerNorm(4)), (3, 4), LayerNorm),
    Case("F.layer_norm-no-affine", fn(lambda m, x: F.layer_norm(x, x.shape[-2:])), (3, 2, 4),
         LayerNorm),
    Case("F.dropout-training-off", fn(lambda m, x: F.dropout(m.fc(x), 0.5, training=m.training),
                                      fc=nn.Linear(3, 3)), (2, 3), Identity, 1),
    Case("F.dropout2d-training-off", fn(lambda m, x: F.dropout2d(x, training=False)), (2, 2, 3, 3),
         Identity),
    Case("F.log_softmax", fn(lambda m, x: F.log_softmax(m.fc(x), dim=1), fc=nn.Linear(3, 4)),
         (2, 3), LogSoftmax, 1),
    Case("F.softmax", fn(lambda m, x: F.softmax(x, -1)), (2, 3, 4), Softmax),
    Case("torch.flatten", fn(lambda m, x: m.fc(torch.flatten(x, 1)), fc=nn.Linear(6, 2)),
         (2, 2, 3), Flatten, 1),
    # elementwise activations in functional and method form (fused into their producer)
    Case("F.relu", fn(lambda m, x: F.relu(m.fc(x)), fc=nn.Linear(3, 4)), (5, 3), Linear, 1),
    Case("torch.tanh", fn(lambda m, x: torch.tanh(m.fc(x)), fc=nn.Linear(3, 4)), (5, 3), Linear, 1),
    Case("Tensor.sigmoid", fn(lambda m, x: m.fc(x).sigmoid(), fc=nn.Linear(3, 4)), (5, 3),
         Linear, 1),
    Case("F.leaky_relu", fn(lambda m, x: F.leaky_relu(m.fc(x), 0.2), fc=nn.Linear(3, 4)),
         (5, 3), Linear, 1),
    Case("F.elu-gelu-silu", fn(lambda m, x: F.silu(F.gelu(F.elu(m.fc(x), alpha=0.5),
                                                          approximate="tanh")),
                               fc=nn.Linear(3, 4)), (5, 3), Identity, 1),
    Case("F.softplus-hardtanh", fn(lambda m, x: F.hardtanh(F.softplus(x, beta=2), -0.5, 0.5)),
         (5, 3), Identity),
]  # fmt: skip

GRAPH_CASES = [
    # arithmetic: residual adds, constants on either side, tensor × tensor
    Case("operator.add-residual", fn(lambda m, x: m.fc(x) + x, fc=nn.Linear(3, 3)), (4, 3), Add, 1),
    Case("operator.add-broadcast", fn(lambda m, x: m.a(x) + m.b(x).mean(1, keepdim=True),
                                      a=nn.Linear(3, 4), b=nn.Linear(3, 4)), (4, 3), Add, 2),
    Case("torch.add-alpha", fn(lambda m, x: torch.add(m.fc(x), x, alpha=-0.5), fc=nn.Linear(3, 3)),
         (4, 3), Scale, 1),
    Case("Tensor.add", fn(lambda m, x: m.fc(x).add(x), fc=nn.Linear(3, 3)), (4, 3), Add, 1),
    Case("x + c", fn(lambda m, x: x + 1.5), (4, 3), AddConstant),
    Case("c + x", fn(lambda m, x: 2 + m.fc(x), fc=nn.Linear(3, 2)), (4, 3), AddConstant, 1),
    Case("x - y", fn(lambda m, x: m.fc(x) - x, fc=nn.Linear(3, 3)), (4, 3), Sub, 1),
    Case("torch.sub-alpha", fn(lambda m, x: torch.sub(x, m.fc(x), alpha=3), fc=nn.Linear(3, 3)),
         (4, 3), Sub, 1),
    Case("c - x", fn(lambda m, x: 1 - x), (4, 3), Scale),
    Case("x - c", fn(lambda m, x: x - 0.25), (4, 3), AddConstant),
    Case("x * y", fn(lambda m, x: m.a(x) * torch.sigmoid(m.b(x)),
                     a=nn.Linear(3, 4), b=nn.Linear(3, 4)), (4, 3), Mul, 2),
    Case("x * c", fn(lambda m, x: m.fc(x) * 0.5, fc=nn.Linear(3, 2)), (4, 3), Scale, 1),
    Case("c * x", fn(lambda m, x: 3 * x), (4, 3), Scale),
    Case("torch.mul", fn(lambda m, x: torch.mul(x, x)), (4, 3), Mul),
    Case("x / c", fn(lambda m, x: m.fc(x) / 4, fc=nn.Linear(3, 2)), (4, 3), Div, 1),
    Case("x / size", fn(lambda m, x: x / x.size(1)), (4, 3), Div),
    Case("torch.div", fn(lambda m, x: torch.div(x, -8.0)), (4, 3), Div),
    Case("-x", fn(lambda m, x: -m.fc(x), fc=nn.Linear(3, 2)), (4, 3), Scale, 1),
    # joining and reducing
    Case("torch.cat-dim1", fn(lambda m, x: torch.cat([m.a(x), m.b(x)], 1),
                              a=nn.Linear(3, 2), b=nn.Linear(3, 4)), (4, 3), Cat, 2),
    Case("torch.cat-three-dim-neg", fn(lambda m, x: torch.cat((x, 2 * x, x), dim=-1)), (2, 3, 4),
         Cat),
    Case("torch.cat-dim0", fn(lambda m, x: torch.cat([x, m.fc(x)]).view(x.size(0), -1),
                                 fc=nn.Linear(3, 3)),
         (2, 3), Cat, 1),
    Case("Tensor.mean-dims", fn(lambda m, x: m.fc(m.c(x).mean((2, 3))), c=conv2d(),
                                fc=nn.Linear(4, 2)), (2, 2, 5, 5), Mean, 2),
    Case("torch.mean-keepdim", fn(lambda m, x: torch.mean(x, dim=1, keepdim=True)), (2, 3, 4),
         Mean),
    Case("Tensor.mean-all", fn(lambda m, x: x.mean() * x), (2, 3), Mean),
    Case("Tensor.sum", fn(lambda m, x: x.sum(-1)), (2, 3, 4), Sum),
    Case("torch.sum-batch", fn(lambda m, x: x * torch.sum(x, (0, 2), keepdim=True)), (2, 3, 4),
         Sum),
    # shapes: sizes read off the tracked shapes
    Case("view-size", fn(lambda m, x: m.fc(m.c(x).view(x.size(0), -1)), c=conv2d(),
                         fc=nn.Linear(36, 2)), (2, 2, 5, 5), Reshape, 2),
    Case("view-shape", fn(lambda m, x: x.view(x.shape[0], x.shape[1] // 2, -1)), (2, 4, 3),
         Reshape),
    Case("view-tuple", fn(lambda m, x: x.view((-1, 6))), (2, 3, 2), Reshape),
    Case("view-size-tuple", fn(lambda m, x: x.flatten(1).view(x.size())), (2, 3, 2), Reshape),
    Case("reshape", fn(lambda m, x: x.reshape(-1, x.size(-1) * x.ndim)), (2, 3, 2), Reshape),
    Case("torch.reshape", fn(lambda m, x: torch.reshape(x, (-1, x.dim() * 2))), (2, 3, 2), Reshape),
    Case("Tensor.flatten", fn(lambda m, x: x.flatten(1, 2)), (2, 3, 2, 2), Flatten),
    Case("unsqueeze-squeeze", fn(lambda m, x: x.unsqueeze(1).squeeze(-1).unsqueeze(-1)),
         (2, 3, 1), Reshape),
    Case("torch.squeeze-dims", fn(lambda m, x: torch.squeeze(x, (1, 3))), (2, 1, 3, 1), Reshape),
    Case("permute", fn(lambda m, x: m.fc(x.permute(0, 2, 1).contiguous()), fc=nn.Linear(3, 2)),
         (2, 3, 4), Permute, 1),
    Case("torch.permute", fn(lambda m, x: torch.permute(x, (0, 2, 1))), (2, 3, 4), Permute),
    Case("transpose", fn(lambda m, x: m.fc(x.transpose(1, 2)), fc=nn.Linear(3, 2)), (2, 3, 4),
         Transpose, 1),
    Case("torch.transpose", fn(lambda m, x: torch.transpose(x, -1, 1).clone()), (2, 3, 4),
         Transpose),
]  # fmt: skip

CASES = MODULE_CASES + FUNCTIONAL_CASES + GRAPH_CASES
PAIRS = [pytest.param(c, mode, id=f"{c.name}-{mode}") for c in CASES for mode in c.modes]


class Stemmed(nn.Module):
    """op(stem(x)), stem a Linear on the last axis: the op's backward then shows in the
    stem's gradients and δ (and a model of a parameter-free op still has parameters)."""

    def __init__(self, op: nn.Module, width: int) -> None:
        super().__init__()
        self.stem = nn.Linear(width, width)
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(self.stem(x))


def build(case: Case, mode: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = Stemmed(case.build(), case.shape[-1]).double().train(mode == "train")
    for m in model.modules():  # running statistics away from (0, 1), so eval mode shows
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(case.shape, dtype=torch.float64)
    with torch.no_grad():
        target = torch.randn_like(copy.deepcopy(model)(x))
    return model, x, target


def test_case_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize(("case", "mode"), PAIRS)
def test_op_matches_autograd(case: Case, mode: str):
    model, x, target = build(case, mode)
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x, target, **TOL)
    assert report.ok, f"{case.name} ({mode})\n{report}"
    params = {r.name for r in report.rows if r.kind == "param"}
    assert params == {n for n, p in model.named_parameters() if p.requires_grad}, case.name
    deltas = [r.name for r in report.rows if r.kind == "delta"]
    assert deltas[0] == "stem" and len(deltas) == 1 + case.deltas, f"{case.name}: δ rows {deltas}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_op_becomes_its_layer(case: Case):
    """The op is converted to the manual layer that computes it (not silently dropped)."""
    model, x, _ = build(case, case.modes[0])
    layers = [type(n.layer) for n in capture(model, [(tuple(x.shape), "float")]).network.nodes]
    if case.layer is Identity:  # nn.Identity, eval dropout: the value itself, no node needed
        return
    assert case.layer in layers, f"{case.name}: {[c.__name__ for c in layers]}"


# --- properties the table does not show --------------------------------------------


class SharedLinear(nn.Module):
    """One nn.Linear called twice: its gradient is the sum over both uses."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.out = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.fc(torch.relu(self.fc(x)))))


def test_module_used_twice_sums_its_gradients():
    torch.manual_seed(0)
    model = SharedLinear().double()
    x, t = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t, **TOL)
    assert report.ok, str(report)
    assert {r.name for r in report.rows if r.kind == "delta"} == {"fc", "fc#1", "out"}
    trace = torch_ref.manual_trace(model, nn.MSELoss(), x, t)
    assert set(trace.deltas) == {"fc", "fc#1", "out"}
    # ∂L/∂W of the shared layer = δ_1ᵀ x + δ_2ᵀ relu(z_1), one term per use
    z1 = model.fc(x).detach()
    by_use = trace.deltas["fc"].T @ x + trace.deltas["fc#1"].T @ torch.relu(z1)
    torch.testing.assert_close(trace.grads["fc.weight"], by_use, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_train_mode_batch_norm_leaves_the_callers_buffers_alone(momentum):
    torch.manual_seed(0)
    layers = [nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3, momentum=momentum), nn.ReLU(), nn.Flatten(),
              nn.Linear(27, 4), nn.BatchNorm1d(4)]  # fmt: skip
    model = nn.Sequential(*layers).double().train()
    x, t = torch.randn(5, 2, 5, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = torch_ref.compare_gradients(model, nn.CrossEntropyLoss(), x, t, **TOL)
    torch_ref.manual_trace(model, nn.CrossEntropyLoss(), x, t)
    assert report.ok, str(report)
    after = model.state_dict()
    assert "1.num_batches_tracked" in after
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} changed: {v} → {after[k]}"
    assert model.training and all(m.training for m in model.modules())


# --- refusals, declared as data ----------------------------------------------------


class Fft(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft(x).real


class Spectrum(nn.Module):
    """A complex FFT's magnitude: no row, no decomposition in torch._decomp."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft(x).abs()


class WithSpectrum(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(3, 12), nn.Unflatten(1, (4, 3)), Spectrum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class ThreeInputs(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return x + y + z


class Mismatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class CatMismatch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x.flatten()], dim=1)


class ShapeCheck(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert(x.shape[1] == 4, "expected 4 features")
        return x * 2


class PlainAssert(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4, "expected an image batch"
        return x * 2


class InPlaceOnInput(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(2)
        return x


class InPlaceOnView(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        flat = h.view(-1)
        h.relu_()
        return flat.view(h.shape)


def line_of(cls: type, text: str) -> str:
    """'line N' of the first line of cls's source holding `text`."""
    lines, start = inspect.getsourcelines(cls)
    k = next(i for i, line in enumerate(lines) if text in line)
    return f"line {start + k}"


@dataclass(frozen=True)
class Refusal:
    name: str
    build: Callable[[], nn.Module]
    shape: tuple[int, ...]
    error: type[Exception]
    #: fragments the message must hold (plain text, not regexes)
    says: tuple[str, ...] = field(default_factory=tuple)
    training: bool = False


REFUSALS = [
    Refusal("unsupported function", Fft, (2, 3), torch_ref.UnsupportedModuleError,
            ("fft", "test_capture.py", line_of(Fft, "torch.fft"), "return torch.fft.fft(x).real",
             "no registry row")),
    Refusal("unsupported module", WithSpectrum, (2, 3), torch_ref.UnsupportedModuleError,
            ("torch.fft.fft", "in module 'block.2' (Spectrum)", "no registry row",
             "aten._fft_")),
    Refusal("more inputs than given", ThreeInputs, (2, 3), ValueError,
            ("ThreeInputs.forward(x, y, z)", "got 1", "missing: y, z")),
    Refusal("in-place on the input", InPlaceOnInput, (2, 3), torch_ref.UnsupportedModuleError,
            ("Tensor.mul_", "modifies 'input' in place", line_of(InPlaceOnInput, "x.mul_"))),
    Refusal("in-place on a view, the view read after", InPlaceOnView, (2, 3),
            torch_ref.UnsupportedModuleError,
            ("Tensor.view", "modified in place", line_of(InPlaceOnView, "flat.view(h.shape)"))),
    Refusal("shape mismatch", Mismatch, (2, 4), ValueError,
            ("'fc'", "Linear(5 → 3", "(2, 4)", line_of(Mismatch, "self.fc(x)"))),
    Refusal("cat shape mismatch", CatMismatch, (2, 3), ValueError,
            ("torch.cat", "(2, 3)", "(6,)", line_of(CatMismatch, "torch.cat"))),
    Refusal("torch._assert on a shape", ShapeCheck, (2, 3), ValueError,
            ("ShapeCheck.forward failed", line_of(ShapeCheck, "torch._assert"),
             "expected 4 features", "(2, 3)")),
    Refusal("assert on a shape", PlainAssert, (2, 3), ValueError,
            ("PlainAssert.forward failed", line_of(PlainAssert, "assert x.ndim"),
             "expected an image batch")),
    Refusal("size dim out of range", fn(lambda m, x: x.view(x.size(2), -1)), (2, 3),
            ValueError, ("Tensor.size", "Dimension out of range", "(2, 3)")),
    Refusal("divide by zero", fn(lambda m, x: x / 0), (2, 3), ValueError, ("'truediv'", "nonzero")),
    Refusal("dropout in training", seq(nn.Linear(3, 3), nn.Dropout(0.2)), (2, 3), ValueError,
            ("Dropout", "'1'", "training mode", "model.eval()"), training=True),
    Refusal("F.dropout in training", fn(lambda m, x: F.dropout(x, 0.3)), (2, 3), ValueError,
            ("F.dropout", "training mode", "training=self.training")),
    Refusal("batch norm, one value per channel", seq(nn.BatchNorm1d(3)), (1, 3), ValueError,
            ("'0'", "more than 1 value per channel"), training=True),
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS, ids=[r.name for r in REFUSALS])
def test_refusal_names_what_and_where(case: Refusal):
    torch.manual_seed(0)
    model = case.build().double().train(case.training)
    x = torch.randn(case.shape, dtype=torch.float64)
    with pytest.raises(case.error) as info:  # (∂L/∂x asked for: parameterless models too)
        torch_ref.manual_trace(model, lambda out, t: out.square().sum(), x, None, input_grads=True)
    message = str(info.value)
    missing = [s for s in case.says if s not in message]
    assert not missing, f"{case.name}: the message lacks {missing}:\n{message}"


def test_refusals_fail_before_touching_anything():
    """A refused model leaves the caller's state as it was (no partial conversion leaks)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(3, 12), nn.BatchNorm1d(12), nn.Unflatten(1, (4, 3)), Spectrum()
    ).double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(torch_ref.UnsupportedModuleError, match=re.escape("'3' (Spectrum)")):
        torch_ref.compare_gradients(model.train(), nn.MSELoss(), torch.randn(4, 3).double(),
                                    torch.zeros(4, 4, 3).double())  # fmt: skip
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


#: a forward hook and a forward pre-hook, each changing what its module computes
_CHANGING_HOOKS = pytest.mark.parametrize(
    "register",
    [
        lambda m: m.register_forward_hook(lambda mod, args, out: out * 2),
        lambda m: m.register_forward_pre_hook(lambda mod, args: (args[0] * 2,)),
    ],
    ids=["forward_hook", "forward_pre_hook"],
)


@_CHANGING_HOOKS
def test_forward_hooks_run_in_the_twin_as_in_the_model(register):
    """The record runs the model's forward hooks (they change what the module computes)."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x, t = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    plain = torch_ref.manual_gradients(model, nn.MSELoss(), x, t)
    handle = register(model[2])
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t)
    hooked = torch_ref.manual_gradients(model, nn.MSELoss(), x, t)
    handle.remove()
    assert report.ok, str(report)
    assert not torch.allclose(plain["0.weight"], hooked["0.weight"])


def _autograd64(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
    """∂L/∂θ of an MSE loss by torch.autograd, on the model as given (float64)."""
    model.zero_grad(set_to_none=True)
    F.mse_loss(model(x), t).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


class _HooksInForward(nn.Module):
    """Its first forward gives its last layer a hook, as a model that hooks itself lazily."""

    def __init__(self, register: Callable[[nn.Module], Any]) -> None:
        super().__init__()
        self.fc, self.out = nn.Linear(3, 4), nn.Linear(4, 2)
        self.register, self.hooked = register, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.hooked:
            self.register(self.out)
            self.hooked = True
        return self.out(torch.tanh(self.fc(x)))


@_CHANGING_HOOKS
def test_hooks_given_in_the_run_run_in_the_twin_as_in_the_model(register):
    """A forward that hooks a module before calling it: the hook changes that call, in the
    twin as in the model (the recorder joins the hooks it finds at the call)."""
    x, t = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    torch.manual_seed(0)
    model = _HooksInForward(register).double()
    fresh = copy.deepcopy(model)
    manual = torch_ref.manual_gradients(model, nn.MSELoss(), x, t)
    assert not model.hooked  # (the caller's model never ran: its twin did)
    want = _autograd64(fresh, x, t)
    unhooked = _autograd64(_unhooked(fresh), x, t)
    for name, g in want.items():
        assert torch.allclose(manual[name], g, rtol=1e-10, atol=1e-13), name
    assert not torch.allclose(want["fc.weight"], unhooked["fc.weight"])


def _unhooked(model: nn.Module) -> nn.Module:
    plain = copy.deepcopy(model)
    plain.out._forward_hooks.clear()
    plain.out._forward_pre_hooks.clear()
    return plain


def test_a_global_forward_hook_runs_in_the_twin_as_in_the_model():
    """register_module_forward_hook: every module's output through it, in the twin too."""
    from torch.nn.modules.module import register_module_forward_hook

    x, t = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    handle = register_module_forward_hook(
        lambda m, args, out: out * 2 if isinstance(m, nn.Linear) else None
    )
    try:
        report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t)
        manual = torch_ref.manual_gradients(model, nn.MSELoss(), x, t)
        want = _autograd64(copy.deepcopy(model), x, t)
    finally:
        handle.remove()
    assert report.ok, str(report)
    for name, g in want.items():
        assert torch.allclose(manual[name], g, rtol=1e-10, atol=1e-13), name
    plain = _autograd64(copy.deepcopy(model), x, t)
    assert not torch.allclose(plain["0.weight"], want["0.weight"])


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy], ids=["copy", "deepcopy"])
def test_a_module_copied_in_the_run_is_called_as_torch_calls_it(copier):
    """A forward that copies a module and calls the copy: the copy's torch calls are recorded
    one by one (a deep copy's parameters are its own: no gradient reaches the model's)."""

    class CallsACopy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Sequential(nn.Linear(3, 3), nn.Tanh())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(x) + copier(self.block)(x)

    torch.manual_seed(0)
    model = CallsACopy().double()
    x, t = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    manual = torch_ref.manual_gradients(model, nn.MSELoss(), x, t)
    want = _autograd64(copy.deepcopy(model), x, t)
    for name, g in want.items():
        assert torch.allclose(manual[name], g, rtol=1e-10, atol=1e-13), name
    assert torch_ref.compare_gradients(model, nn.MSELoss(), x, t).ok


@pytest.mark.parametrize(
    "register",
    [
        lambda m: m[2].register_full_backward_hook(lambda mod, gin, gout: None),
        lambda m: m[2].weight.register_hook(lambda g: g.clamp(-0.01, 0.01)),
    ],
    ids=["module backward hook", "parameter gradient hook"],
)
def test_a_backward_hook_is_refused_by_name(register):
    """A backward hook changes the gradient autograd returns: refused, naming it."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    handle = register(model)
    x, t = torch.randn(5, 3), torch.randn(5, 2)
    with pytest.raises(torch_ref.UnsupportedModuleError, match=r"'2\b.*hook"):
        torch_ref.manual_gradients(model, nn.MSELoss(), x, t)
    handle.remove()
    assert torch_ref.compare_gradients(model, nn.MSELoss(), x, t).ok


def test_data_dependent_control_flow_takes_the_branch_of_this_batch():
    """The record is of this run: `if x.sum() > 0` took its branch, and the check is for it."""

    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.other = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) if x.sum() > 0 else self.other(x)

    torch.manual_seed(0)
    model = DataDependent().double()
    for sign in (1.0, -1.0):
        x = sign * torch.rand(4, 3, dtype=torch.float64)
        t = torch.randn(4, 3, dtype=torch.float64)
        report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t, **TOL)
        assert report.ok, str(report)
        grads = torch_ref.manual_gradients(model, nn.MSELoss(), x, t)
        used, unused = ("fc", "other") if sign > 0 else ("other", "fc")
        assert grads[f"{used}.weight"].abs().sum() > 0
        assert grads[f"{unused}.weight"].abs().sum() == 0


@pytest.mark.parametrize(
    "dropout",
    [nn.Dropout(0.0), nn.Dropout(0.5).eval(), nn.Dropout(0.0, inplace=True)],
    ids=["p=0", "eval", "p=0-inplace"],
)
def test_dropout_that_draws_nothing_is_its_input(dropout: nn.Module):
    """A dropout that passes its input through (its rule returns the value it was given)
    reports its output as that node, and the gradients are autograd's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), dropout, nn.Tanh(), nn.Linear(4, 2)).double()
    x, t = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    report = torch_ref.compare_gradients(model, nn.MSELoss(), x, t, **TOL)
    assert report.ok, str(report)
    outputs = capture(model, [x]).module_outputs
    assert outputs["1"] == outputs["0"], outputs
