"""Real Hugging Face transformers models, handed over as users hold them.

Each model is built from a tiny random config (no download), in float32, and checked as a
user checks it: the model itself, its `ModelOutput` read by the loss, keyword inputs with a
padded attention mask, `use_cache` left at its default. Every parameter and every δ must
match autograd at rtol 1e-9 (the reference is float64 end to end).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _tolerances import TOLERANCES

import torch_ref
from experiments.acceptance.transformers import cases, data

T = pytest.importorskip("transformers")
TOL = TOLERANCES["model"]

#: the CI's subset of experiments.transformers_models' cases (the whole table, 71 cases,
#: is docs/transformers_models.md): decoders, MoE, encoders, encoder-decoders, a ViT
CASES = {c.name: c for c in cases()}
MODELS = [
    "llama", "mistral", "qwen2", "mixtral", "gemma", "phi", "gpt2", "bert", "roberta", "t5",
    "bart", "vit",
]  # fmt: skip


def _check(name: str) -> tuple[Any, Any]:
    """The case's model and its report, as experiments.transformers_models checks it."""
    case = CASES[name]
    model = case.model(T)
    inputs, target, loss = data(case.data)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = torch_ref.compare_gradients(model, loss, inputs, target, **TOL)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    return model, report


@pytest.mark.parametrize("name", MODELS)
def test_a_real_model_as_users_hold_it_matches_autograd(name: str) -> None:
    model, report = _check(name)
    assert report.ok, str(report)
    params = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {r.name for r in report.rows if r.kind == "param"} == params
    assert any(r.kind == "delta" for r in report.rows)


def test_a_model_trained_with_gradient_checkpointing_and_its_own_loss_matches():
    """model.gradient_checkpointing_enable() in training mode (dropout 0), the labels passed
    in and `out.loss` the loss: the checkpoint recomputes the forward in backward, and its
    float32 casts are float64 in the twin as in the recorded run."""
    model, report = _check("llama, gradient checkpointing in training")
    assert model.is_gradient_checkpointing and model.training
    assert report.ok, str(report)
    assert {r.name for r in report.rows if r.kind == "param"} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }
