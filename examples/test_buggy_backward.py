"""test_my_backward.py's first test with a bug planted in the backward: tanh′ written as
(1 - a1) instead of (1 - a1**2). This test fails on purpose, to show the oracle's message.

    python -m pytest examples/test_buggy_backward.py
"""

import torch
import torch.nn as nn


def my_buggy_backward(model, x, t):
    W1, b1, W2, b2 = (p.detach() for p in model.parameters())
    a1 = torch.tanh(x @ W1.T + b1)
    y = a1 @ W2.T + b2
    dy = 2 * (y - t) / y.numel()
    dz1 = (dy @ W2) * (1 - a1)  # the bug: tanh′(z) is 1 − tanh²(z), not 1 − tanh(z)
    return {"0.weight": dz1.T @ x, "0.bias": dz1.sum(0), "2.weight": dy.T @ a1, "2.bias": dy.sum(0)}


def test_my_buggy_backward_fails(gradient_oracle):
    torch.manual_seed(0)  # (float64: the digits printed are then the same on every CPU)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, t = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    gradient_oracle.check_grads(model, nn.MSELoss(), x, t, my_buggy_backward(model, x, t))
