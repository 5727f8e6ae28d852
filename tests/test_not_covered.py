"""A row that does not cover a form of its call hands the call to torch's lowering.

A row refuses with `NotCovered` where its formula does not cover what the call holds (a
weight computed in forward(), a target that carries gradient, a tensor where it takes a
number, reduction='none' of a class-index loss); the recorder then differentiates the call
through the ATen ops torch runs for it (torch_ref.lowering), as for a call without a row,
and the report names it. Each case must match autograd at rtol 1e-9 with input gradients.
Planted bugs: a wrong ATen adapter on that route fails; a route that cannot be followed is
refused with the row's reason and the lowering's.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_ref
from torch_ref.errors import NotCovered, UnsupportedModuleError


class _Head(nn.Module):
    """Linear(4, 4), then the call under test (with a weight vector w of the model)."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.w = nn.Parameter(1 + torch.rand(4))
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.proj(x), self.w)


def _model(fn: Callable[..., torch.Tensor]) -> _Head:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _Head(fn)


def _x() -> torch.Tensor:
    return torch.randn(3, 4, generator=torch.Generator().manual_seed(1))


def _loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((out - target) ** 2).sum()


#: name → the call in a form its row does not cover
CASES: dict[str, Callable[..., torch.Tensor]] = {
    "layer_norm, a computed weight": lambda h, w: F.layer_norm(h, (4,), w.log(), w.sin()),
    "group_norm, a computed weight": lambda h, w: F.group_norm(h.view(3, 4, 1), 2, 2 * w),
    "batch_norm, training, a computed weight": lambda h, w: F.batch_norm(
        h, None, None, w.exp(), None, training=True
    ),
    "mse_loss, a target that carries gradient": lambda h, w: F.mse_loss(h, h.flip(0) * w),
    "huber_loss, per element": lambda h, w: F.huber_loss(h, (w * h).tanh(), reduction="none"),
    "cross_entropy, reduction='none'": lambda h, w: F.cross_entropy(
        h * w, torch.tensor([0, 3, 1]), reduction="none"
    ),
    "rms_norm, a computed weight": lambda h, w: F.rms_norm(h, (4,), w.exp()),
    "instance_norm, a computed weight": lambda h, w: F.instance_norm(
        h.view(1, 3, 4), weight=w[:3].cos(), bias=None
    ),
    "masked_fill, a tensor value": lambda h, w: h.masked_fill(h > 0, w[0]),
    "narrow, a 0-d tensor start": lambda h, w: h.narrow(1, torch.tensor(1), 2) * w[:2],
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_form_the_row_does_not_cover_matches_through_torchs_lowering(name: str):
    model, x = _model(CASES[name]), _x()
    target = torch.randn(model(x).shape, generator=torch.Generator().manual_seed(2))
    report = torch_ref.compare_gradients(model, _loss, x, target, rtol=1e-9, input_grads=True)
    assert report.ok, report.failure_message()
    assert any("a form its row does not cover" in n for n in report.notes), report.notes


def test_a_module_whose_row_does_not_cover_the_call_runs_its_forward_call_by_call():
    """nn.HuberLoss with a target that carries gradient: the module is not recorded whole;
    its F.huber_loss goes through torch's lowering."""
    model, x = _model(lambda h, w: nn.HuberLoss(delta=0.5)(h, h.flip(1) * w)), _x()
    report = torch_ref.compare_gradients(model, _loss, x, torch.zeros(()), rtol=1e-9)
    assert report.ok, report.failure_message()


def test_running_statistics_written_inside_the_lowering_stay_the_callers():
    """F.instance_norm with a computed weight and running statistics: torch's kernel and its
    decomposition both write them (the decomposition writes copies); the caller's buffers
    are unchanged, and the gradient matches."""
    model = _model(lambda h, w: F.instance_norm(h.view(1, 4, 3), rm, rv, w * 2, None, True))
    rm, rv = torch.zeros(4), torch.ones(4)
    model.register_buffer("rm", rm)
    model.register_buffer("rv", rv)
    report = torch_ref.compare_gradients(
        model, _loss, _x(), torch.randn(1, 4, 3), rtol=1e-9, input_grads=True
    )
    assert report.ok, report.failure_message()
    assert torch.equal(model.rm, torch.zeros(4)) and torch.equal(model.rv, torch.ones(4))


def test_a_wrong_decomposition_on_the_lowering_route_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
):
    """Planted: torch's decomposition of aten.mse_loss, the route of a target that carries
    gradient, off by 1%: its values are not the kernel's, so the oracle refuses to
    differentiate it (a red report would blame your gradient for torch's decomposition).
    torch 2.13's own multilabel_margin_loss_forward decomposition is such a case."""
    from torch_ref import lowering

    op = torch.ops.aten.mse_loss.default
    right = lowering.decomposition_table[op]
    monkeypatch.setitem(lowering.decomposition_table, op, lambda *a, **k: 1.01 * right(*a, **k))
    model, x = _model(CASES["mse_loss, a target that carries gradient"]), _x()
    with pytest.raises(
        UnsupportedModuleError,
        match=r"decomposition of aten\.mse_loss.*computes other values than torch's kernel",
    ):
        torch_ref.compare_gradients(model, _loss, x, torch.zeros(()), input_grads=True)


def test_a_route_that_cannot_be_followed_is_refused_with_both_reasons(
    monkeypatch: pytest.MonkeyPatch,
):
    """Planted: no decompositions at all; F.layer_norm with a computed weight is refused with
    its row's reason and the lowering's, as NotCovered (an UnsupportedModuleError)."""
    from torch_ref import lowering

    monkeypatch.setattr(lowering, "decomposition_table", {})
    model = _model(CASES["layer_norm, a computed weight"])
    with pytest.raises(NotCovered, match=r"weight must be .*cannot be followed either"):
        torch_ref.manual_gradients(model, _loss, _x(), torch.zeros(3, 4))
    assert issubclass(NotCovered, UnsupportedModuleError)


def test_an_op_without_a_row_or_a_decomposition_on_real_values_is_refused_naming_it():
    model = _model(
        lambda h, w: F.fractional_max_pool2d(
            (h * w).view(1, 1, 3, 4),
            2,
            output_size=(2, 2),
            _random_samples=torch.full((1, 1, 2), 0.5),
        )
    )
    with pytest.raises(
        UnsupportedModuleError, match=r"aten\.fractional_max_pool2d, which has no row and no decomp"
    ):
        torch_ref.manual_gradients(model, _loss, _x(), torch.zeros(1, 1, 2, 2))
