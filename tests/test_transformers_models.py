"""Real Hugging Face transformers models, handed over as users hold them.

Each model is built from a tiny random config (no download), in float32, and checked as a
user checks it: the model itself, its `ModelOutput` read by the loss, keyword inputs with a
padded attention mask, `use_cache` left at its default. Every parameter and every δ must
match autograd at rtol 1e-9 (the reference is float64 end to end).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from _tolerances import TOLERANCES

import torch_ref

T = pytest.importorskip("transformers")
TOL = TOLERANCES["model"]
V = 50


def _small(config: Any, **kw: Any) -> Any:
    base = dict(
        vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32,
    )  # fmt: skip
    return config(**(base | kw))


MODELS: dict[str, Callable[[], Any]] = {
    "llama": lambda: T.LlamaForCausalLM(_small(T.LlamaConfig, num_key_value_heads=1)),
    "mistral": lambda: T.MistralForCausalLM(_small(T.MistralConfig, num_key_value_heads=1)),
    "qwen2": lambda: T.Qwen2ForCausalLM(_small(T.Qwen2Config, num_key_value_heads=1)),
    "mixtral": lambda: T.MixtralForCausalLM(  # (experts by torch._grouped_mm)
        _small(T.MixtralConfig, num_key_value_heads=1, num_local_experts=4, num_experts_per_tok=2)
    ),
    "gemma": lambda: T.GemmaForCausalLM(_small(T.GemmaConfig, num_key_value_heads=1, head_dim=8)),
    "phi": lambda: T.PhiForCausalLM(_small(T.PhiConfig)),
    "gpt2": lambda: T.GPT2LMHeadModel(
        T.GPT2Config(
            vocab_size=V,
            n_embd=16,
            n_layer=2,
            n_head=2,
            n_positions=32,
            bos_token_id=0,
            eos_token_id=0,
        )  # fmt: skip
    ),
    "bert": lambda: T.BertForMaskedLM(_small(T.BertConfig)),
    "roberta": lambda: T.RobertaForMaskedLM(_small(T.RobertaConfig, pad_token_id=1)),
    "t5": lambda: T.T5ForConditionalGeneration(
        T.T5Config(vocab_size=V, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2)
    ),
    "bart": lambda: T.BartForConditionalGeneration(
        T.BartConfig(
            vocab_size=V,
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_position_embeddings=32,
        )  # fmt: skip
    ),
    "vit": lambda: T.ViTForImageClassification(
        T.ViTConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            image_size=8,
            patch_size=4,
            num_labels=3,
        )  # fmt: skip
    ),
}


def _token_loss(out: Any, t: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.logits.flatten(0, 1), t.flatten())


@pytest.mark.parametrize("name", list(MODELS))
def test_a_real_model_as_users_hold_it_matches_autograd(name: str) -> None:
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    ids = torch.randint(3, V, (2, 6))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    if name == "vit":
        inputs: dict[str, torch.Tensor] = {"pixel_values": torch.randn(2, 3, 8, 8)}
        target, loss = torch.tensor([0, 2]), lambda out, t: F.cross_entropy(out.logits, t)
    elif name in ("t5", "bart"):
        inputs = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": ids[:, :4]}
        target, loss = ids[:, 1:5], _token_loss
    else:
        inputs, target, loss = {"input_ids": ids, "attention_mask": mask}, ids, _token_loss
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = torch_ref.compare_gradients(model, loss, inputs, target, **TOL)
    assert report.ok, str(report)
    params = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {r.name for r in report.rows if r.kind == "param"} == params
    assert any(r.kind == "delta" for r in report.rows)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_model_trained_with_gradient_checkpointing_and_its_own_loss_matches():
    """model.gradient_checkpointing_enable() in training mode (dropout 0), the labels passed
    in and `out.loss` the loss: the checkpoint recomputes the forward in backward, and its
    float32 casts are float64 in the twin as in the recorded run."""
    torch.manual_seed(0)
    model = T.LlamaForCausalLM(_small(T.LlamaConfig, num_key_value_heads=1)).train()
    model.gradient_checkpointing_enable()
    ids = torch.randint(3, V, (2, 6))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    inputs = {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    report = torch_ref.compare_gradients(model, lambda out, _: out.loss, inputs, None, **TOL)
    assert report.ok, str(report)
    assert {r.name for r in report.rows if r.kind == "param"} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }
