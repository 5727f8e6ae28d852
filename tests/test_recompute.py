"""Activation checkpointing (torch.utils.checkpoint): autograd runs part of the forward a
second time in backward. In the twin that recompute is float64 as the recorded run was,
whatever casts the block makes (torch_ref.recording.twin_backward)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from _tolerances import TOLERANCES
from torch.utils.checkpoint import checkpoint

import torch_ref

TOL = TOLERANCES["model"]


class RMSNorm(nn.Module):
    """As Llama writes it: the statistics in float32, the result back in the input's dtype."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        return self.weight * x.to(dtype)


class Block(nn.Module):
    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.norm, self.fc = RMSNorm(d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.gelu(self.fc(self.norm(x)).float()).type_as(x)


class Checkpointed(nn.Module):
    def __init__(self, reentrant: bool, block: type[nn.Module] = Block) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([block(), block()])
        self.head = nn.Linear(8, 3)
        self.reentrant = reentrant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=self.reentrant)
        return self.head(x)


@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_a_checkpointed_model_with_float32_casts_matches_autograd(reentrant):
    torch.manual_seed(0)
    model = Checkpointed(reentrant).train()
    x = torch.randn(4, 8, requires_grad=reentrant)  # (reentrant checkpoint needs an input
    report = torch_ref.compare_gradients(  # that requires grad to reach the parameters)
        model, nn.CrossEntropyLoss(), x, torch.tensor([0, 1, 2, 0]), **TOL
    )
    assert report.ok, str(report)
    assert {r.name for r in report.rows if r.kind == "param"} == {
        n for n, _ in model.named_parameters()
    }


class _Halved(torch.autograd.Function):
    """A planted bug inside the checkpointed block: gelu's backward halved."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.gelu(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            x = x.detach().requires_grad_()
            (d,) = torch.autograd.grad(F.gelu(x), x, g)
        return 0.5 * d


class BuggyBlock(Block):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + _Halved.apply(self.fc(self.norm(x)))


def test_a_wrong_backward_inside_a_checkpointed_block_fails_naming_it():
    torch.manual_seed(0)
    model = Checkpointed(False, BuggyBlock).train()
    report = torch_ref.compare_gradients(
        model, nn.CrossEntropyLoss(), torch.randn(4, 8), torch.tensor([0, 1, 2, 0]), **TOL
    )
    assert not report.ok
    assert "_Halved" in str(report)


def test_a_reentrant_checkpoint_that_cuts_the_parameters_off_is_a_real_difference():
    """torch's known pitfall: use_reentrant=True with no input that requires grad gives the
    parameters inside no gradient in your run; the oracle's are not zero, and it says why."""
    torch.manual_seed(0)
    model = Checkpointed(True).train()
    with pytest.warns(UserWarning, match="None of the inputs have requires_grad"):
        report = torch_ref.compare_gradients(
            model, nn.CrossEntropyLoss(), torch.randn(4, 8), torch.tensor([0, 1, 2, 0]), **TOL
        )
    failing = {r.name for r in report.rows if not r.ok}
    assert failing == {n for n, _ in model.blocks.named_parameters(prefix="blocks")}
    assert any("use_reentrant=False" in n for n in report.notes)
