"""A property test of your gradient code against the oracle, on random MLPs (the README's
example; torch.autograd stands in for "your framework").

python -m pytest examples/test_my_framework.py
"""

import torch
from hypothesis import given, settings

from torch_ref.strategies import mlp_models


def my_framework_gradients(model, loss_fn, inputs, target):
    """Your gradient code; here torch.autograd stands in for it."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model(inputs), target), [p for _, p in named])
    return {name: g for (name, _), g in zip(named, grads, strict=True)}


@settings(max_examples=25, deadline=None)  # the first call imports and warms up: no deadline
@given(mlp_models(max_depth=4, activations=("relu", "gelu"), losses=("mse", "cross_entropy")))
def test_my_framework_agrees(gradient_oracle, problem):
    model, loss_fn, inputs, target = problem
    grads = my_framework_gradients(model, loss_fn, inputs, target)
    gradient_oracle.check_grads(model, loss_fn, inputs, target, grads)
