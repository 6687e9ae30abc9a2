"""The text model: any transformers AutoModel backbone (encoders: BERT, RoBERTa, DeBERTa-v2/v3...; decoders:
Llama, Qwen2, Gemma, Mistral...), a pooling of its hidden states and a linear head, plus the tricks that live
in the model. Every one is off by default.

model.pooling (auto = last_token for decoder-only models, mean for encoders):
  mean            masked mean of the last hidden state: the safe default of encoders.
  cls             the first token ([CLS]); only meaningful for models pretrained with a [CLS] objective.
  max             masked max over tokens: picks up a single decisive word; noisier than mean.
  attention       a learned score per token, softmax over the real tokens, weighted sum. Helps long inputs
                  where a few tokens matter; one more thing to overfit on small data.
  last_token      the last real token (by the attention mask, so left and right padding both work): what a
                  causal decoder has summarised the whole text into. Useless for bidirectional encoders.
  weighted_layers learned softmax weights over the last model.pool_layers hidden layers, then the masked
                  mean: lower layers carry more syntax, the top more task-specific features (Feedback Prize
                  style); costs the memory of keeping every layer's output.
model.msd (multi-sample dropout): see multi_sample_dropout. model.reinit_layers: see reinit_top_layers.
lora.*: see lora.py. train.grad_checkpointing: see enable_grad_checkpointing.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.errors import ConfigError

POOLINGS = ("mean", "cls", "max", "attention", "last_token", "weighted_layers")
# model_type of decoder-only (causal) families: no [CLS] token, the last token sees the whole text.
DECODER_TYPES = ("llama", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "mistral", "mixtral", "gemma", "gemma2",
                 "gemma3", "gemma3_text", "phi", "phi3", "gpt2", "gpt_neox", "gptj", "falcon", "olmo", "olmo2",
                 "opt", "bloom", "starcoder2", "cohere", "stablelm", "granite", "smollm3")


def is_decoder(config) -> bool:
    """A decoder-only (causal) backbone: flagged by its config or of a known decoder family."""
    return bool(getattr(config, "is_decoder", False)) or config.model_type in DECODER_TYPES


def resolve_pooling(pooling: str, config) -> str:
    """model.pooling=auto: last_token for decoder-only models, mean for encoders."""
    if pooling != "auto":
        return pooling
    return "last_token" if is_decoder(config) else "mean"


class Pooling(nn.Module):
    """(hidden states, attention mask) -> one vector per row; `kind` is one of POOLINGS (module docstring).
    Its parameters (attention's scorer, weighted_layers' weights) train in full, as the head does."""

    def __init__(self, kind: str, hidden_size: int, n_layers: int = 1):
        super().__init__()
        self.kind, self.n_layers = kind, n_layers
        if kind == "attention":
            self.score = nn.Linear(hidden_size, 1)
        if kind == "weighted_layers":
            self.layer_weights = nn.Parameter(torch.zeros(n_layers))  # uniform at start

    @property
    def needs_all_layers(self) -> bool:
        return self.kind == "weighted_layers"

    def forward(self, hidden: torch.Tensor | tuple, mask: torch.Tensor) -> torch.Tensor:
        real = mask.bool().unsqueeze(-1)                       # (N, L, 1)
        if self.kind == "weighted_layers":
            layers = torch.stack(hidden[-self.n_layers:])       # (n, N, L, H)
            w = torch.softmax(self.layer_weights, 0).to(layers.dtype)
            hidden = (w.view(-1, 1, 1, 1) * layers).sum(0)
        if self.kind == "cls":
            return hidden[:, 0]
        if self.kind == "last_token":  # the highest position whose mask is 1: right or left padding alike
            positions = torch.arange(mask.shape[1], device=mask.device)
            last = (mask.long() * positions).argmax(1)
            return hidden[torch.arange(len(hidden), device=hidden.device), last]
        if self.kind == "max":
            return hidden.masked_fill(~real, torch.finfo(hidden.dtype).min).max(1).values
        if self.kind == "attention":
            scores = self.score(hidden.to(self.score.weight.dtype)).squeeze(-1)
            scores = scores.masked_fill(~real.squeeze(-1), torch.finfo(scores.dtype).min)
            w = torch.softmax(scores, 1).unsqueeze(-1).to(hidden.dtype)
            return (hidden.masked_fill(~real, 0) * w).sum(1)
        # mean (and weighted_layers' mix); masked_fill, not a product: a padded position may hold NaN
        total = hidden.masked_fill(~real, 0).sum(1)
        return total / real.sum(1).clamp(min=1).to(hidden.dtype)


def multi_sample_dropout(features: torch.Tensor, dropout: nn.Module, head: nn.Module, k: int) -> torch.Tensor:
    """model.msd=K: in training, K dropout masks on the same pooled features, one head pass each, logits
    averaged; in eval (dropout is off) a single pass. Helps: small text data with a large head lr, where one
    mask per step makes the loss noisy (Google QUEST / Jigsaw style); the backbone runs once, so it costs
    K cheap head passes only. Hurts: nothing much, but it does nothing without dropout (model.drop_rate=0)."""
    if k <= 1 or not dropout.training:
        return head(dropout(features))
    return torch.stack([head(dropout(features)) for _ in range(k)]).mean(0)


def layer_list(backbone: nn.Module) -> nn.ModuleList | None:
    """The backbone's stack of transformer blocks: the ModuleList as long as config.num_hidden_layers."""
    n = getattr(backbone.config, "num_hidden_layers", None)
    for module in backbone.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    return None


def reinit_top_layers(backbone: nn.Module, n: int) -> int:
    """model.reinit_layers=N: re-initialise the top N blocks of a pretrained backbone with the model's own
    _init_weights. Helps: small data on a large pretrained encoder, whose top layers are specialised to the
    pretraining task (Zhang et al. 2021, "Revisiting few-sample BERT fine-tuning"). Hurts: decoders and large
    data (the top layers carry knowledge the head would use); more than 1-3 layers throws pretraining away."""
    if n <= 0:
        return 0
    layers = layer_list(backbone)
    init = getattr(backbone, "_init_weights", None)
    if layers is None or init is None:
        raise ConfigError(f"config key 'model.reinit_layers': cannot find the layers of this "
                          f"{backbone.config.model_type} backbone to re-initialise; set model.reinit_layers=0")
    if n > len(layers):
        raise ConfigError(f"config key 'model.reinit_layers' is {n}; the backbone has {len(layers)} layers")
    with torch.no_grad():
        for layer in layers[len(layers) - n:]:
            for t in [*layer.parameters(), *layer.buffers()]:
                t._is_hf_initialized = False  # loaded weights are flagged; transformers' init skips flagged ones
            layer.apply(init)
    return n


def enable_grad_checkpointing(backbone: nn.Module, lora: bool) -> None:
    """train.grad_checkpointing: the backbone recomputes each block's activations in the backward pass instead
    of keeping them (use_reentrant=False). Helps: a model or max_len that does not fit otherwise (activation
    memory drops to about one block's); the gradients are the same. Hurts: ~30% slower per step."""
    if not getattr(backbone, "supports_gradient_checkpointing", False):
        raise ConfigError(f"config key 'train.grad_checkpointing': this {backbone.config.model_type} backbone "
                          f"does not support gradient checkpointing; set train.grad_checkpointing=false")
    backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if lora:  # frozen embeddings: their output must require grad for the checkpointed blocks to backpropagate
        backbone.enable_input_require_grads()


class TextModel(nn.Module):
    """backbone -> Pooling -> dropout (model.msd masks) -> head. The pooling's parameters are named head_pool
    so that optim.head_lr and train.freeze_* treat them as the new head."""

    def __init__(self, backbone: nn.Module, n_outputs: int, pooling: str, drop_rate: float, msd: int = 0,
                 pool_layers: int = 4):
        super().__init__()
        self.backbone = backbone
        config = backbone.config
        self.pooling = resolve_pooling(pooling, config)
        self.decoder = is_decoder(config)
        self.head_pool = Pooling(self.pooling, config.hidden_size, min(pool_layers, config.num_hidden_layers + 1))
        self.dropout = nn.Dropout(drop_rate)
        self.msd = msd
        self.head = nn.Linear(config.hidden_size, n_outputs)

    def forward(self, batch: dict) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        mask = batch["attention_mask"]
        if self.decoder:  # positions count real tokens only: a left-padded text gets the positions it has alone
            inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
            inputs.pop("token_type_ids", None)
        all_layers = self.head_pool.needs_all_layers
        out = self.backbone(**inputs, output_hidden_states=all_layers)
        pooled = self.head_pool(out.hidden_states if all_layers else out.last_hidden_state, mask)
        return multi_sample_dropout(pooled.to(self.head.weight.dtype), self.dropout, self.head, self.msd)
