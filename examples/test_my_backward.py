"""Your gradient code checked by the oracle, in your own test suite (the README's example).

python -m pytest examples/test_my_backward.py
"""

import torch
import torch.nn as nn
from hypothesis import given, settings

from torch_ref.strategies import mlp_models


def my_backward(model, x, t):
    """Your gradient code: Linear → tanh → Linear with the mean squared error, by hand."""
    W1, b1, W2, b2 = (p.detach() for p in model.parameters())
    a1 = torch.tanh(x @ W1.T + b1)
    y = a1 @ W2.T + b2
    dy = 2 * (y - t) / y.numel()  # ∂L/∂y of MSELoss (mean over all entries)
    dz1 = (dy @ W2) * (1 - a1**2)  # δ¹ = (δ² W²) ⊙ tanh′(z¹)
    return {"0.weight": dz1.T @ x, "0.bias": dz1.sum(0), "2.weight": dy.T @ a1, "2.bias": dy.sum(0)}


def test_my_backward_matches_the_oracle(gradient_oracle):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, t = torch.randn(5, 3), torch.randn(5, 2)
    gradient_oracle.check_grads(model, nn.MSELoss(), x, t, my_backward(model, x, t))


def test_my_cnn_backprops_like_autograd(gradient_oracle):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    x, t = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    report = gradient_oracle.assert_close(model, nn.CrossEntropyLoss(), x, t)
    assert report.ok  # every parameter's gradient and every layer's δ, in float64


@settings(max_examples=20, deadline=None)
@given(mlp_models(max_depth=3, max_width=8, losses=("mse", "cross_entropy")))
def test_random_mlps(gradient_oracle, problem):
    model, loss_fn, inputs, target = problem
    gradient_oracle.assert_close(model, loss_fn, inputs, target, l2=problem.spec.l2)
