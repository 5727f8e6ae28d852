"""More idioms of everyday torch code, each written as users write it: the old
weight_norm / spectral_norm hooks, lazy modules, gradient hooks put on tensors in the
forward, a random draw in the forward. Each matches autograd, or is refused or reported
with the true reason."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from _tolerances import TOLERANCES

import torch_ref

TOL = TOLERANCES["model"]
Y = torch.tensor([0, 1, 2, 0])


@pytest.mark.parametrize("wrap", ["weight_norm", "spectral_norm"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_the_old_weight_norm_and_spectral_norm_hooks_match_autograd(wrap, train):
    """nn.utils.weight_norm / spectral_norm (deprecated, still everywhere): a pre-hook
    recomputes `weight` from weight_g and weight_v (or weight_orig) before each forward; after
    one forward the module holds that computed tensor, which torch itself cannot deep-copy."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        layer = getattr(nn.utils, wrap)(nn.Linear(8, 8))
    model = nn.Sequential(layer, nn.Tanh(), nn.Linear(8, 3)).train(train)
    x = torch.randn(4, 8)
    model(x)  # (the computed weight is now an attribute of the module)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = torch_ref.compare_gradients(model, nn.CrossEntropyLoss(), x, Y, **TOL)
    assert report.ok, str(report)
    assert {r.name for r in report.rows if r.kind == "param"} == {
        n for n, _ in model.named_parameters()
    }
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_lazy_module_not_yet_run_is_refused_naming_the_parameter():
    model = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match=r"parameter '0.weight' is not initialised yet"):
        torch_ref.compare_gradients(model, nn.CrossEntropyLoss(), torch.randn(4, 5), Y)
    model(torch.randn(1, 5))  # (its first forward draws the weights)
    assert torch_ref.compare_gradients(model, nn.CrossEntropyLoss(), torch.randn(4, 5), Y).ok


class Hooked(nn.Module):
    def __init__(self, rescale: bool) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 3)
        self.rescale, self.seen = rescale, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.a(x))
        if h.requires_grad:
            h.register_hook(lambda g: 2 * g if self.rescale else self.seen.append(g))
        return self.b(h)


def test_a_gradient_hook_that_rescales_is_refused_naming_its_line():
    """As a parameter's gradient hook is: autograd's answer is then for another function.
    Found only when autograd's backward runs it (compare_gradients); manual_gradients gives
    the loss's own derivative."""
    torch.manual_seed(0)
    x = torch.randn(4, 8)
    with pytest.raises(
        torch_ref.UnsupportedModuleError,
        match=r"gradient hook registered in the forward \(Tensor\.register_hook at .*"
        r"test_everyday_idioms\.py.*\) changed the gradient",
    ):
        torch_ref.compare_gradients(Hooked(True), nn.CrossEntropyLoss(), x, Y, **TOL)
    grads = torch_ref.manual_gradients(Hooked(True), nn.CrossEntropyLoss(), x, Y)
    assert set(grads) == {"a.weight", "a.bias", "b.weight", "b.bias"}


def test_a_gradient_hook_that_only_reads_changes_nothing():
    """Grad-CAM's pattern: the hook keeps the gradient and returns None."""
    torch.manual_seed(0)
    model = Hooked(False)
    report = torch_ref.compare_gradients(model, nn.CrossEntropyLoss(), torch.randn(4, 8), Y, **TOL)
    assert report.ok, str(report)
    assert model.seen == []  # (the twin's run kept its gradients, not the caller's model)


def test_a_forward_that_draws_is_refused_with_the_reason_itself():
    class Gumbel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.gumbel_softmax(self.a(x), hard=True)

    with pytest.raises(ValueError, match=r"^Gumbel.forward draws random numbers"):
        torch_ref.compare_gradients(Gumbel(), nn.CrossEntropyLoss(), torch.randn(4, 8), Y)


def test_an_embedding_with_max_norm_matches_and_the_callers_weight_is_not_renormalised():
    """torch renormalises the looked-up rows in place before the lookup: in the twin's weight
    here, so the caller's model is as it was."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 8, max_norm=1.0), nn.Flatten(), nn.Linear(40, 3))
    ids = torch.randint(0, 10, (4, 5))
    before = model[0].weight.detach().clone()
    report = torch_ref.compare_gradients(model, nn.CrossEntropyLoss(), ids, Y, **TOL)
    assert report.ok, str(report)
    assert torch.equal(model[0].weight, before)
    assert (before[ids.unique()].norm(dim=1) > 1.0).any()  # (some rows were renormalised)


class _Maml(nn.Module):
    """MAML's inner step: a gradient taken inside the forward, with create_graph=True."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
        inner = F.cross_entropy(self.fc(xs), ys)
        gw, gb = torch.autograd.grad(inner, (self.fc.weight, self.fc.bias), create_graph=True)
        return F.linear(xq, self.fc.weight - 0.1 * gw, self.fc.bias - 0.1 * gb)


def test_a_second_order_forward_is_refused_with_its_reason():
    torch.manual_seed(0)
    x = torch.randn(4, 8)
    with pytest.raises(
        torch_ref.UnsupportedModuleError,
        match=r"torch\.autograd\.grad .*differentiates inside the forward \(a second-order",
    ):
        torch_ref.compare_gradients(_Maml(), nn.CrossEntropyLoss(), (x, Y, x), Y)


def test_a_torch_func_transform_inside_the_forward_is_refused_with_its_reason():
    class PerSample(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.vmap(lambda row: self.fc(row).tanh())(x)

    with pytest.raises(torch_ref.UnsupportedModuleError, match=r"runs under a torch\.func"):
        torch_ref.compare_gradients(PerSample(), nn.CrossEntropyLoss(), torch.randn(4, 8), Y)
