"""Idioms people write, each as its authors write it, checked against torch.autograd.

Each case is a small model written the way the library or paper that made the idiom popular
writes it (nn.RMSNorm, torch's parametrizations, a pruning mask, a merged LoRA update,
timm's StdConv2d and in-place activations, ...), run through compare_gradients with input
gradients at the model tolerances.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from _tolerances import TOLERANCES
from torch.nn.utils import parametrizations

import torch_ref

TOL = TOLERANCES["model"]


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- the idioms --------------------------------------------------------------------------


class RMSNormMLP(nn.Module):
    """nn.RMSNorm before a Linear (LLaMA's pre-norm)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(6, eps=1e-6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x))


class FunctionalRMSNorm(nn.Module):
    """F.rms_norm with a weight of the model."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(1 + 0.1 * _randn(1, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (6,), self.scale)


def weight_norm_linear() -> nn.Module:
    return nn.Sequential(parametrizations.weight_norm(nn.Linear(6, 4)), nn.Tanh(), nn.Linear(4, 3))


def spectral_norm_linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(parametrizations.spectral_norm(nn.Linear(6, 4)), nn.ReLU())


def orthogonal_linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(parametrizations.orthogonal(nn.Linear(6, 6)), nn.Tanh())


class PrunedLinear(nn.Module):
    """torch.nn.utils.prune's effect written by hand: weight ⊙ mask passed to F.linear."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(_randn(2, 4, 6))
        self.bias = nn.Parameter(_randn(3, 4))
        self.register_buffer("mask", (_randn(4, 4, 6) > 0).double())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MergedLoRA(nn.Module):
    """A LoRA update merged into the weight in forward: W + (α/r) B A."""

    def __init__(self, r: int = 2, alpha: float = 4.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(_randn(5, 4, 6))
        self.lora_A = nn.Parameter(_randn(6, r, 6))
        self.lora_B = nn.Parameter(_randn(7, 4, r))
        self.scaling = alpha / r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight + self.scaling * self.lora_B @ self.lora_A)


class StdConv2d(nn.Conv2d):
    """timm's StdConv2d: the weight standardised per output channel in forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.batch_norm(
            self.weight.reshape(1, self.out_channels, -1), None, None, training=True, eps=1e-6
        ).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ZeroFirstColumn(nn.Module):
    """x[:, 0] = 0 on a tensor the forward made."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        h[:, 0] = 0
        return torch.tanh(h)


class PoolUnpool(nn.Module):
    """MaxPool2d(return_indices=True) and MaxUnpool2d (SegNet's decoder)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, idx = self.pool(self.conv(x))
        return self.unpool(y, idx)


class InplaceActOnView(nn.Module):
    """timm's resnet10t stem: an in-place activation module applied to a view."""

    def __init__(self, act: type[nn.Module]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.act1 = act(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)[:, 1:]
        x = self.act1(x)
        return x.mean((2, 3))


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.round(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return g


class FakeQuantDetach(nn.Module):
    """Fake quantisation with the straight-through estimator, written with detach
    (x + (q(x) − x).detach(), as in LSQ/PACT code)."""

    def __init__(self, scale: float = 0.25) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        q = torch.clamp(torch.round(h / self.scale), -8, 7) * self.scale
        return h + (q - h).detach()


class FakeQuantTorch(nn.Module):
    """torch.fake_quantize_per_tensor_affine (its gradient: straight through inside the
    range, zero outside)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(self.fc(x), 0.05, 0, -128, 127)


class FakeQuantFunction(nn.Module):
    """A custom autograd Function for the straight-through round."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _RoundSTE.apply(self.fc(x) * 4) / 4


class LocalResponseNorm(nn.Module):
    """AlexNet's local response normalisation, functional form."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.local_response_norm(self.conv(x), size=3)


class SpatialTransformer(nn.Module):
    """A spatial transformer (Jaderberg et al. 2015): affine_grid from a predicted θ, then
    grid_sample."""

    def __init__(self) -> None:
        super().__init__()
        self.loc = nn.Linear(2 * 6 * 6, 6)
        with torch.no_grad():
            self.loc.weight.mul_(0.01)
            self.loc.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.loc(x.flatten(1)).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)


IMAGE = (2, 2, 6, 6)
IDIOMS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "nn.RMSNorm": (RMSNormMLP, (3, 6)),
    "F.rms_norm": (FunctionalRMSNorm, (3, 6)),
    "weight_norm parametrization": (weight_norm_linear, (3, 6)),
    "spectral_norm parametrization": (spectral_norm_linear, (3, 6)),
    "orthogonal parametrization": (orthogonal_linear, (3, 6)),
    "pruning mask into F.linear": (PrunedLinear, (3, 6)),
    "merged LoRA into F.linear": (MergedLoRA, (3, 6)),
    "timm StdConv2d": (lambda: StdConv2d(2, 3, 3, padding=1), IMAGE),
    "x[:, 0] = 0": (ZeroFirstColumn, (3, 6)),
    "MaxPool2d(return_indices) + MaxUnpool2d": (PoolUnpool, IMAGE),
    "in-place ReLU on a view": (lambda: InplaceActOnView(nn.ReLU), IMAGE),
    "in-place Hardswish on a view": (lambda: InplaceActOnView(nn.Hardswish), IMAGE),
    "fake-quant, straight through by detach": (FakeQuantDetach, (3, 6)),
    "fake-quant, torch.fake_quantize_per_tensor_affine": (FakeQuantTorch, (3, 6)),
    "F.local_response_norm": (LocalResponseNorm, IMAGE),
    "F.affine_grid + F.grid_sample": (SpatialTransformer, IMAGE),
}


def _model(make: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return make().to(torch.float64).eval()


@pytest.mark.parametrize("name", list(IDIOMS))
def test_idiom_matches_autograd(name: str) -> None:
    make, shape = IDIOMS[name]
    model = _model(make)
    x = _randn(10, *shape)
    with torch.no_grad():
        out = model(x.clone())
    target = _randn(11, *out.shape)
    report = torch_ref.compare_gradients(
        model, nn.MSELoss(reduction="sum"), x, target, input_grads=True, **TOL
    )
    assert report.ok, f"{name}\n{report}"
    assert any(r.kind == "input" for r in report.rows), name


def test_a_straight_through_custom_function_is_reported_as_a_surrogate() -> None:
    """A custom Function's straight-through backward is not the derivative of its forward
    (round's is zero): the oracle reports the difference and names the Function as a
    straight-through estimator, rather than matching it."""
    model = _model(FakeQuantFunction)
    x = _randn(10, 3, 6)
    report = torch_ref.compare_gradients(
        model, nn.MSELoss(reduction="sum"), x, _randn(11, 3, 4), input_grads=True, **TOL
    )
    assert not report.ok
    assert "_RoundSTE" in str(report) and "straight-through estimator" in str(report)


def test_a_wrong_gradient_in_an_idiom_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: a merged LoRA whose manual matrix product has its backward off."""
    from manual_bp.ops.linalg import MatMul

    backward = MatMul.backward

    def off(self: MatMul, delta, cache):  # type: ignore[no-untyped-def]
        grads, extra = backward(self, delta, cache)
        return tuple(1.01 * g if g is not None else None for g in grads), extra

    monkeypatch.setattr(MatMul, "backward", off)
    model = _model(MergedLoRA)
    x = _randn(10, 3, 6)
    report = torch_ref.compare_gradients(
        model, nn.MSELoss(reduction="sum"), x, _randn(11, 3, 4), input_grads=True, **TOL
    )
    assert not report.ok
