"""LoRA (lora.enabled) through peft: low-rank adapters on the attention projections of a frozen backbone.

Helps: large backbones (1B+ decoders, DeBERTa-v3-large) on one GPU: only the adapters, the pooling and the
head get gradients and optimiser states, so memory is the frozen weights (bf16) plus activations; the
checkpoints hold the adapters and the head only (megabytes instead of gigabytes). Hurts: small encoders
that fit anyway, where a full fine-tune usually scores higher; a rank too small for the task (lora.r).

The frozen base weights are saved once per run in outputs/<exp>/backbone/ (with the tokenizer and config),
so make predict, TTA, pseudo, full fits, resume and make package rebuild the base from the run folder and
load the adapters into it. lora.merge=true merges the adapters into the base weights for inference
(merge_and_unload: one matrix per layer again, slightly faster, same predictions up to rounding).
"""
from __future__ import annotations

from torch import nn

from ..core.errors import ConfigError
from ..core.schema import LoraConfig

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
# lora.target_modules=[]: the attention projections of the backbone's family (module names inside the model).
TARGETS = {
    **{t: ATTENTION for t in ("llama", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "mistral", "mixtral", "gemma",
                              "gemma2", "gemma3", "gemma3_text", "olmo", "olmo2", "granite", "smollm3", "cohere",
                              "starcoder2", "stablelm")},
    **{t: ["query", "key", "value"] for t in ("bert", "roberta", "xlm-roberta", "electra", "camembert",
                                              "megatron-bert")},
    "deberta-v2": ["query_proj", "key_proj", "value_proj"],
    "deberta": ["in_proj"],
    "distilbert": ["q_lin", "k_lin", "v_lin"],
    "modernbert": ["Wqkv", "Wo"],
}


def target_modules(lora: LoraConfig, model_type: str) -> list[str]:
    if lora.target_modules:
        return list(lora.target_modules)
    if model_type not in TARGETS:
        raise ConfigError(f"config key 'lora.target_modules': no default for a {model_type} backbone; list the "
                          f"names of its attention projections, e.g. lora.target_modules=[q_proj,v_proj]")
    return TARGETS[model_type]


def add_adapters(backbone: nn.Module, lora: LoraConfig) -> nn.Module:
    """The backbone wrapped by peft: every weight frozen but the new adapters (lora_A / lora_B)."""
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    targets = target_modules(lora, backbone.config.model_type)
    config = PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                            bias="none")
    try:
        return get_peft_model(backbone, config)
    except ValueError as e:  # none of the target modules exists in this model
        raise ConfigError(f"config key 'lora.target_modules' {targets}: {e}") from None


def merge_adapters(backbone: nn.Module) -> nn.Module:
    """lora.merge: the adapters folded into the base weights; a plain transformers model again."""
    return backbone.merge_and_unload()
