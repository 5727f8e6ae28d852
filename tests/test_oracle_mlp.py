"""Property tests: random MLPs against torch.autograd (float64), parameter gradients and δ.

Every activation × loss pair is its own test case, so CI draws each pair; within a pair,
hypothesis draws depth 1–6, widths 1–16, bias on/off, the loss's options, batch 1–8,
l2 on/off, float32 or float64, and (in float64) integer-valued weights and inputs that land
on kinks."""

import pytest
import torch
import torch.nn as nn
from _tolerances import TOLERANCES
from hypothesis import given, settings

import torch_ref
from torch_ref.strategies import ACTIVATION_MODULES, LOSSES, mlp_specs

TOL = TOLERANCES["model"]


def check(spec) -> None:
    model, loss_fn, inputs, target = spec.build()
    report = torch_ref.compare_gradients(model, loss_fn, inputs, target, l2=spec.l2, **TOL)
    assert report.ok, f"{spec!r}\n{report}"
    assert {r.name for r in report.rows if r.kind == "param"} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }
    assert sum(r.kind == "delta" for r in report.rows) == len(spec.widths) - 1


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", sorted(ACTIVATION_MODULES))
def test_every_activation_loss_pair(activation, loss):
    @settings(max_examples=4)
    @given(mlp_specs(activations=(activation,), losses=(loss,)))
    def run(spec):
        check(spec)

    run()


@settings(max_examples=150)
@given(mlp_specs())
def test_random_mlps_match_autograd(spec):
    check(spec)


@settings(max_examples=60)
@given(mlp_specs(integer_valued=True, max_width=6))
def test_kinks_and_ties_match_autograd(spec):
    """Integer weights and inputs put pre-activations exactly on 0, ±1, 6: the kinks."""
    check(spec)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_low_precision_models_get_grads_in_their_dtype(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype)
    x, t = torch.randn(4, 6).to(dtype), torch.tensor([0, 2, 1, 2])
    grads = torch_ref.manual_gradients(model, nn.CrossEntropyLoss(), x, t)
    for name, p in model.named_parameters():
        assert grads[name].dtype == dtype and grads[name].shape == p.shape, name
    report = torch_ref.compare_gradients(model, nn.CrossEntropyLoss(), x, t, **TOL)
    assert report.ok, str(report)
    # the returned grads are the float64 ones rounded to the parameter's dtype
    trace = torch_ref.manual_trace(model, nn.CrossEntropyLoss(), x, t)
    for name in grads:
        assert torch.equal(grads[name], trace.grads[name].to(dtype)), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_gets_cuda_grads():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).cuda()
    x, t = torch.randn(4, 6, device="cuda"), torch.tensor([0, 2, 1, 2], device="cuda")
    grads = torch_ref.manual_gradients(model, nn.CrossEntropyLoss(), x, t)
    assert all(g.device.type == "cuda" for g in grads.values())
    report = torch_ref.compare_gradients(model, nn.CrossEntropyLoss(), x, t, **TOL)
    assert report.ok, str(report)


def test_trace_has_every_delta_and_output():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 3), nn.ReLU(), nn.Sequential(nn.Linear(3, 3), nn.Sigmoid()), nn.Linear(3, 2)
    )
    x, t = torch.randn(5, 4), torch.randn(5, 2)
    trace = torch_ref.manual_trace(model, nn.MSELoss(), x, t)
    assert set(trace.deltas) == {"0", "2.0", "3"}
    assert set(trace.outputs) == {"0", "1", "2.0", "2.1", "3"}
    assert trace.deltas["2.0"].shape == (5, 3) and trace.deltas["2.0"].dtype == torch.float64
    with torch.no_grad():
        assert torch.allclose(trace.outputs["2.1"], model[2](model[1](model[0](x))).double())
        assert trace.loss == pytest.approx(nn.MSELoss()(model(x).double(), t.double()).item())


@settings(max_examples=100)
@given(mlp_specs())
def test_integer_valued_nets_are_drawn_in_float64_only(spec):
    """An integer net's logits reach the hundreds; in float32 its softmax saturates and
    torch's own gradient loses the digits of 1 − p (see mlp_specs): not drawn there."""
    assert spec.dtype == "float64" or not spec.integer_valued, spec
