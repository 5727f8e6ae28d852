"""The cases of experiments.transformers_models (and of tests/test_transformers_models.py):
each a transformers model from a tiny random config (no download), and which inputs and loss
it is checked with (`data`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

V = 50  # vocabulary


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Any], Any]  # transformers module → model
    data: str  # which inputs and loss: "lm", "mlm", "s2s", "image", ...
    train: bool = False
    setup: Callable[[Any], None] | None = None

    def model(self, transformers: Any) -> Any:
        """The model as the case checks it: built from seed 0, in its mode, set up."""
        torch.manual_seed(0)
        model = self.build(transformers).train(self.train)
        if self.setup is not None:
            self.setup(model)
        return model


def _small(config: Any, **kw: Any) -> Any:
    base = dict(
        vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32,
    )  # fmt: skip
    return config(**(base | kw))


def _patches(config: Any, **kw: Any) -> Any:
    """A vision transformer's config: 32×32 images in 8×8 patches, width 16, 2 layers."""
    base = dict(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32,
    )  # fmt: skip
    return config(**(base | kw))


def _seq2seq(config: Any, **kw: Any) -> Any:
    return config(
        vocab_size=V, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_position_embeddings=32, **kw,
    )  # fmt: skip


def cases() -> list[Case]:
    kv = {"num_key_value_heads": 1}
    return [
        # decoders (causal LM), logits read by the loss
        Case("llama", lambda T: T.LlamaForCausalLM(_small(T.LlamaConfig, **kv)), "lm"),
        Case("mistral", lambda T: T.MistralForCausalLM(_small(T.MistralConfig, **kv)), "lm"),
        Case("qwen2", lambda T: T.Qwen2ForCausalLM(_small(T.Qwen2Config, **kv)), "lm"),
        Case("qwen3", lambda T: T.Qwen3ForCausalLM(_small(T.Qwen3Config, **kv, head_dim=8)), "lm"),
        Case(
            "qwen2_moe",
            lambda T: T.Qwen2MoeForCausalLM(
                _small(
                    T.Qwen2MoeConfig,
                    **kv,
                    num_experts=4,
                    num_experts_per_tok=2,
                    moe_intermediate_size=8,
                    shared_expert_intermediate_size=8,
                )  # fmt: skip
            ),
            "lm",
        ),
        Case(
            "mixtral",
            lambda T: T.MixtralForCausalLM(
                _small(T.MixtralConfig, **kv, num_local_experts=4, num_experts_per_tok=2)
            ),
            "lm",
        ),
        Case("gemma", lambda T: T.GemmaForCausalLM(_small(T.GemmaConfig, **kv, head_dim=8)), "lm"),
        Case(
            "gemma2", lambda T: T.Gemma2ForCausalLM(_small(T.Gemma2Config, **kv, head_dim=8)), "lm"
        ),
        Case(
            "gemma3",
            lambda T: T.Gemma3ForCausalLM(_small(T.Gemma3TextConfig, **kv, head_dim=8)),
            "lm",
        ),
        Case("phi", lambda T: T.PhiForCausalLM(_small(T.PhiConfig)), "lm"),
        Case("phi3", lambda T: T.Phi3ForCausalLM(_small(T.Phi3Config, **kv, pad_token_id=0)), "lm"),
        Case("stablelm", lambda T: T.StableLmForCausalLM(_small(T.StableLmConfig, **kv)), "lm"),
        Case(
            "starcoder2", lambda T: T.Starcoder2ForCausalLM(_small(T.Starcoder2Config, **kv)), "lm"
        ),
        Case("olmo", lambda T: T.OlmoForCausalLM(_small(T.OlmoConfig, **kv, pad_token_id=0)), "lm"),
        Case(
            "olmo2", lambda T: T.Olmo2ForCausalLM(_small(T.Olmo2Config, **kv, pad_token_id=0)), "lm"
        ),
        Case(
            "cohere",
            lambda T: T.CohereForCausalLM(_small(T.CohereConfig, **kv, pad_token_id=0)),
            "lm",
        ),
        Case("granite", lambda T: T.GraniteForCausalLM(_small(T.GraniteConfig, **kv)), "lm"),
        Case("gpt_neox", lambda T: T.GPTNeoXForCausalLM(_small(T.GPTNeoXConfig)), "lm"),
        Case(
            "gpt2",
            lambda T: T.GPT2LMHeadModel(
                T.GPT2Config(vocab_size=V, n_embd=16, n_layer=2, n_head=2, n_positions=32)
            ),
            "lm",
        ),
        Case(
            "gpt_neo",
            lambda T: T.GPTNeoForCausalLM(
                T.GPTNeoConfig(
                    vocab_size=V,
                    hidden_size=16,
                    num_layers=2,
                    num_heads=2,
                    attention_types=[[["global", "local"], 1]],
                    max_position_embeddings=32,
                    window_size=4,
                )  # fmt: skip
            ),
            "lm",
        ),
        Case(
            "gptj",
            lambda T: T.GPTJForCausalLM(
                T.GPTJConfig(vocab_size=V, n_embd=16, n_layer=2, n_head=2, rotary_dim=4)
            ),
            "lm",
        ),
        Case(
            "codegen",
            lambda T: T.CodeGenForCausalLM(
                T.CodeGenConfig(vocab_size=V, n_embd=16, n_layer=2, n_head=2, rotary_dim=4)
            ),
            "lm",
        ),
        Case(
            "opt",
            lambda T: T.OPTForCausalLM(
                T.OPTConfig(
                    vocab_size=V,
                    hidden_size=16,
                    num_hidden_layers=2,
                    num_attention_heads=2,
                    ffn_dim=32,
                    max_position_embeddings=32,
                    word_embed_proj_dim=16,
                )  # fmt: skip
            ),
            "lm",
        ),
        Case(
            "bloom",
            lambda T: T.BloomForCausalLM(
                T.BloomConfig(vocab_size=V, hidden_size=16, n_layer=2, n_head=2)
            ),
            "lm",
        ),
        Case(
            "falcon",
            lambda T: T.FalconForCausalLM(
                T.FalconConfig(
                    vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2
                )
            ),
            "lm",
        ),
        Case(
            "mpt",
            lambda T: T.MptForCausalLM(
                T.MptConfig(vocab_size=V, d_model=16, n_layers=2, n_heads=2, max_seq_len=32)
            ),
            "lm",
        ),
        Case(
            "xglm",
            lambda T: T.XGLMForCausalLM(
                T.XGLMConfig(
                    vocab_size=V,
                    d_model=16,
                    num_layers=2,
                    attention_heads=2,
                    ffn_dim=32,
                    max_position_embeddings=32,
                )  # fmt: skip
            ),
            "lm",
        ),
        Case(
            "mamba",
            lambda T: T.MambaForCausalLM(
                T.MambaConfig(
                    vocab_size=V,
                    hidden_size=16,
                    state_size=4,
                    num_hidden_layers=2,
                    expand=2,
                    conv_kernel=3,
                )  # fmt: skip
            ),
            "labels",
        ),
        # idioms on a decoder
        Case(
            "llama, labels and out.loss",
            lambda T: T.LlamaForCausalLM(_small(T.LlamaConfig, **kv)),
            "labels",
        ),  # noqa: E501
        Case(
            "llama, gradient checkpointing in training",
            lambda T: T.LlamaForCausalLM(_small(T.LlamaConfig, **kv)),
            "labels",
            train=True,
            setup=lambda m: m.gradient_checkpointing_enable(),
        ),
        Case(
            "llama, float16 weights",
            lambda T: T.LlamaForCausalLM(_small(T.LlamaConfig, **kv)).half(),
            "labels",
        ),
        Case(
            "llama, bfloat16 weights",
            lambda T: T.LlamaForCausalLM(_small(T.LlamaConfig, **kv)).to(torch.bfloat16),
            "labels",
        ),
        Case(
            "llama, frozen base (head trained)",
            lambda T: T.LlamaForCausalLM(_small(T.LlamaConfig, **kv)),
            "labels",
            setup=lambda m: [
                p.requires_grad_(False) for n, p in m.named_parameters() if "lm_head" not in n
            ],
        ),
        Case(
            "llama, linear rope scaling",
            lambda T: T.LlamaForCausalLM(
                _small(T.LlamaConfig, **kv, rope_scaling={"rope_type": "linear", "factor": 2.0})
            ),
            "labels",
        ),
        Case(
            "llama, eager attention, hidden states and attentions",
            lambda T: T.LlamaForCausalLM(_small(T.LlamaConfig, **kv, attn_implementation="eager")),
            "everything",
        ),
        Case(
            "qwen2, sliding window",
            lambda T: T.Qwen2ForCausalLM(
                _small(
                    T.Qwen2Config,
                    **kv,
                    use_sliding_window=True,
                    sliding_window=3,
                    max_window_layers=1,
                )  # fmt: skip
            ),
            "labels",
        ),
        Case(
            "gemma2, logit soft-capping",
            lambda T: T.Gemma2ForCausalLM(
                _small(
                    T.Gemma2Config,
                    **kv,
                    head_dim=8,
                    attn_logit_softcapping=5.0,
                    final_logit_softcapping=3.0,
                )  # fmt: skip
            ),
            "labels",
        ),
        Case(
            "gpt2, training mode with dropout 0",
            lambda T: T.GPT2LMHeadModel(
                T.GPT2Config(
                    vocab_size=V,
                    n_embd=16,
                    n_layer=2,
                    n_head=2,
                    n_positions=32,
                    resid_pdrop=0,
                    embd_pdrop=0,
                    attn_pdrop=0,
                )  # fmt: skip
            ),
            "labels",
            train=True,
        ),
        # encoders
        Case("bert", lambda T: T.BertForMaskedLM(_small(T.BertConfig)), "mlm"),
        Case(
            "bert, sequence classification",
            lambda T: T.BertForSequenceClassification(_small(T.BertConfig, num_labels=3)),
            "classes",
        ),
        Case(
            "roberta",
            lambda T: T.RobertaForMaskedLM(_small(T.RobertaConfig, pad_token_id=1)),
            "mlm",
        ),
        Case(
            "xlm_roberta",
            lambda T: T.XLMRobertaForMaskedLM(_small(T.XLMRobertaConfig, pad_token_id=1)),
            "mlm",
        ),
        Case(
            "distilbert",
            lambda T: T.DistilBertForMaskedLM(
                T.DistilBertConfig(
                    vocab_size=V,
                    dim=16,
                    n_layers=2,
                    n_heads=2,
                    hidden_dim=32,
                    max_position_embeddings=32,
                )  # fmt: skip
            ),
            "mlm",
        ),
        Case(
            "albert", lambda T: T.AlbertForMaskedLM(_small(T.AlbertConfig, embedding_size=8)), "mlm"
        ),
        Case(
            "electra",
            lambda T: T.ElectraForMaskedLM(_small(T.ElectraConfig, embedding_size=8)),
            "mlm",
        ),
        Case("deberta", lambda T: T.DebertaForMaskedLM(_small(T.DebertaConfig)), "mlm"),
        Case("deberta_v2", lambda T: T.DebertaV2ForMaskedLM(_small(T.DebertaV2Config)), "mlm"),
        Case("mpnet", lambda T: T.MPNetForMaskedLM(_small(T.MPNetConfig)), "mlm"),
        Case(
            "mobilebert",
            lambda T: T.MobileBertForMaskedLM(
                _small(
                    T.MobileBertConfig,
                    embedding_size=8,
                    intra_bottleneck_size=8,
                    true_hidden_size=8,
                    num_feedforward_networks=1,
                )  # fmt: skip
            ),
            "mlm",
        ),
        Case(
            "funnel",
            lambda T: T.FunnelForMaskedLM(
                T.FunnelConfig(
                    vocab_size=V,
                    d_model=16,
                    n_head=2,
                    d_head=8,
                    d_inner=32,
                    block_sizes=[1, 1],
                    max_position_embeddings=32,
                )  # fmt: skip
            ),
            "mlm",
        ),
        # encoder-decoders
        Case(
            "t5",
            lambda T: T.T5ForConditionalGeneration(
                T.T5Config(vocab_size=V, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2)
            ),
            "s2s",
        ),
        Case(
            "mt5",
            lambda T: T.MT5ForConditionalGeneration(
                T.MT5Config(vocab_size=V, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2)
            ),
            "s2s",
        ),
        Case("bart", lambda T: T.BartForConditionalGeneration(_seq2seq(T.BartConfig)), "s2s"),
        Case("mbart", lambda T: T.MBartForConditionalGeneration(_seq2seq(T.MBartConfig)), "s2s"),
        Case(
            "pegasus", lambda T: T.PegasusForConditionalGeneration(_seq2seq(T.PegasusConfig)), "s2s"
        ),
        Case(
            "marian",
            lambda T: T.MarianMTModel(
                _seq2seq(T.MarianConfig, pad_token_id=0, decoder_start_token_id=0)
            ),
            "s2s",
        ),
        Case(
            "blenderbot",
            lambda T: T.BlenderbotForConditionalGeneration(_seq2seq(T.BlenderbotConfig)),
            "s2s",
        ),
        Case(
            "whisper",
            lambda T: T.WhisperForConditionalGeneration(
                T.WhisperConfig(
                    vocab_size=V,
                    d_model=16,
                    encoder_layers=1,
                    decoder_layers=1,
                    encoder_attention_heads=2,
                    decoder_attention_heads=2,
                    encoder_ffn_dim=32,
                    decoder_ffn_dim=32,
                    num_mel_bins=8,
                    max_source_positions=8,
                    max_target_positions=16,
                    pad_token_id=0,
                    decoder_start_token_id=1,
                )  # fmt: skip
            ),
            "audio_s2s",
        ),
        # vision and audio encoders
        Case(
            "vit",
            lambda T: T.ViTForImageClassification(_patches(T.ViTConfig, num_labels=3)),
            "image",
        ),
        Case(
            "deit",
            lambda T: T.DeiTForImageClassification(_patches(T.DeiTConfig, num_labels=3)),
            "image",
        ),
        Case(
            "beit",
            lambda T: T.BeitForImageClassification(_patches(T.BeitConfig, num_labels=3)),
            "image",
        ),
        Case(
            "dinov2",
            lambda T: T.Dinov2ForImageClassification(_patches(T.Dinov2Config, num_labels=3)),
            "image",
        ),
        Case(
            "swin",
            lambda T: T.SwinForImageClassification(
                T.SwinConfig(
                    image_size=32,
                    patch_size=4,
                    embed_dim=8,
                    depths=[1, 1],
                    num_heads=[1, 2],
                    window_size=4,
                    num_labels=3,
                )  # fmt: skip
            ),
            "image",
        ),
        Case(
            "convnext",
            lambda T: T.ConvNextForImageClassification(
                T.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
            ),
            "image",
        ),
        Case(
            "resnet",
            lambda T: T.ResNetForImageClassification(
                T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
            ),
            "image",
        ),
        Case(
            "mobilevit",
            lambda T: T.MobileViTForImageClassification(
                T.MobileViTConfig(
                    image_size=32,
                    patch_size=2,
                    hidden_sizes=[16, 16, 16],
                    neck_hidden_sizes=[8, 8, 8, 8, 8, 8, 16],
                    num_attention_heads=2,
                    num_labels=3,
                )  # fmt: skip
            ),
            "image",
        ),
        Case(
            "segformer",
            lambda T: T.SegformerForImageClassification(
                T.SegformerConfig(
                    hidden_sizes=[8, 16, 16, 16],
                    num_attention_heads=[1, 1, 2, 2],
                    depths=[1, 1, 1, 1],
                    decoder_hidden_size=16,
                    num_labels=3,
                )  # fmt: skip
            ),
            "image",
        ),
        Case(
            "clip_text",
            lambda T: T.CLIPTextModel(
                T.CLIPTextConfig(
                    vocab_size=V,
                    hidden_size=16,
                    num_hidden_layers=2,
                    num_attention_heads=2,
                    intermediate_size=32,
                    max_position_embeddings=32,
                )  # fmt: skip
            ),
            "text_hidden",
        ),
        Case(
            "clip_vision",
            lambda T: T.CLIPVisionModel(_patches(T.CLIPVisionConfig)),
            "image_hidden",
        ),
        Case(
            "wav2vec2",
            lambda T: T.Wav2Vec2ForCTC(T.Wav2Vec2Config(vocab_size=V, **_AUDIO)),
            "audio_ctc",
        ),
        Case("hubert", lambda T: T.HubertModel(T.HubertConfig(**_AUDIO)), "audio_hidden"),
    ]


_AUDIO = dict(
    hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
    conv_dim=(8, 8), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=4,
    num_conv_pos_embedding_groups=2,
)  # fmt: skip


# --- inputs and losses, by a case's `data` -----------------------------------------


def _token_loss(out: Any, t: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.logits.flatten(0, 1), t.flatten())


def _hidden_loss(out: Any, _: Any) -> torch.Tensor:
    return out.last_hidden_state.pow(2).mean()


def _everything_loss(out: Any, t: torch.Tensor) -> torch.Tensor:
    hidden = sum(h.pow(2).mean() for h in out.hidden_states)
    return _token_loss(out, t) + hidden + sum(a.mean() for a in out.attentions)


def data(kind: str) -> tuple[dict[str, Any], Any, Callable[..., torch.Tensor]]:
    """Inputs as keyword arguments, the target, and the loss over the ModelOutput."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, V, (2, 6), generator=g)
    left = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])  # (padded on the left)
    right = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    pixels = torch.randn(2, 3, 32, 32, generator=g)
    own_loss = lambda out, _: out.loss  # noqa: E731
    if kind == "lm":
        return {"input_ids": ids, "attention_mask": left}, ids, _token_loss
    if kind == "labels":
        labels = ids.masked_fill(left == 0, -100)
        return {"input_ids": ids, "attention_mask": left, "labels": labels}, None, own_loss
    if kind == "everything":
        extra = {"output_hidden_states": True, "output_attentions": True}
        return {"input_ids": ids, "attention_mask": left, **extra}, ids, _everything_loss
    if kind == "mlm":
        return {"input_ids": ids, "attention_mask": right}, ids, _token_loss
    if kind == "classes":
        inputs = {"input_ids": ids, "attention_mask": right, "labels": torch.tensor([0, 2])}
        return inputs, None, own_loss
    if kind == "s2s":
        inputs = {"input_ids": ids, "attention_mask": right, "decoder_input_ids": ids[:, :4]}
        return inputs, ids[:, 1:5], _token_loss
    if kind == "audio_s2s":
        features = torch.randn(2, 8, 16, generator=g)
        return {"input_features": features, "labels": ids[:, :4]}, None, own_loss
    if kind == "image":
        return {"pixel_values": pixels, "labels": torch.tensor([0, 2])}, None, own_loss
    if kind == "image_hidden":
        return {"pixel_values": pixels}, None, _hidden_loss
    if kind == "text_hidden":
        return {"input_ids": ids, "attention_mask": right}, None, _hidden_loss
    audio = torch.randn(2, 400, generator=g)
    if kind == "audio_ctc":
        return {"input_values": audio}, None, lambda out, _: out.logits.logsumexp(-1).mean()
    return {"input_values": audio}, None, _hidden_loss
