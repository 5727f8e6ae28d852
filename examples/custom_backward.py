"""A model whose activation is a `torch.autograd.Function` with a hand-written backward:
swish(x) = x·σ(x) (Ramachandran, Zoph & Le 2017, "Searching for activation functions"),
swish′(x) = σ(x) (1 + x (1 − σ(x))). With `buggy=True` the backward forgets a term, and the
oracle, which differentiates the forward itself, finds it.

    torch-ref check examples/custom_backward.py:SwishMLP --input-shape 16,4
    torch-ref check examples/custom_backward.py:SwishMLP --input-shape 16,4 \
        --init-args '{"buggy": true}'
"""

import torch
import torch.nn as nn


class Swish(torch.autograd.Function):
    """x·σ(x) forward; its derivative written by hand for backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, s = ctx.saved_tensors
        return grad * s * (1 + x * (1 - s))  # swish′(x) = σ(x) (1 + x (1 − σ(x)))


class SwishWithABug(Swish):
    """The same forward; a backward that forgets the x σ(x) (1 − σ(x)) term."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, s = ctx.saved_tensors
        return grad * s  # the bug: swish′(x) is σ(x) (1 + x (1 − σ(x))), not σ(x)


class SwishMLP(nn.Module):
    def __init__(self, n_in: int = 4, hidden: int = 8, n_out: int = 3, buggy: bool = False):
        super().__init__()
        self.hidden = nn.Linear(n_in, hidden)
        self.out = nn.Linear(hidden, n_out)
        self.swish = SwishWithABug if buggy else Swish

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.swish.apply(self.hidden(x)))
