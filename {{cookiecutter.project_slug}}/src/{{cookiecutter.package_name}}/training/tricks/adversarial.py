"""Adversarial training (adv.method): FGM, PGD, AWP, applied after the clean backward of each micro-batch.

    loss = loss_of(batch); accelerator.backward(loss)
    if adversary is not None and adversary.active(epoch):
        adversary.attack(lambda: loss_of(batch), accelerator.backward)
    optimizer.step() ...

attack() perturbs the chosen weights in place, recomputes the loss, backpropagates it (ADDING to the
gradients already there, earlier micro-batches' included: nothing is zeroed for good), then restores the
weights bit-exactly from a copy, and the BatchNorm running statistics too. The direction is the gradient
present at the call (under accumulation: of the micro-batches so far). Weights without .grad (frozen)
are not perturbed; if none of the chosen ones has a gradient the attack is skipped (returns nan).

* FGM: w += adv.eps * g/||g|| (per tensor), one extra forward/backward: about 2x the step cost.
* PGD: adv.steps steps of adv.alpha * g/||g||, each projected onto the adv.eps ball around the clean
  weights; only the last step's gradient is kept: (steps+1)x the cost, a stronger attack.
  FGM/PGD default to the word embeddings of text models (`...word_embeddings.weight`, else the
  backbone's get_input_embeddings()) and the stem of image models (the first Conv2d, a ViT's patch
  embedding included). They help fine-tuning text models on small or noisy data, a staple of Kaggle
  NLP solutions; eps 1.0 is tuned for embeddings: scale it to the weight norm for an image stem.
* AWP (adversarial weight perturbation, as in the Feedback Prize solutions): every chosen w moves by
  adv.lr * ||w|| * g/||g||, clamped to w0 +- adv.eps*|w0| elementwise; one extra forward/backward.
  Default: names containing "weight" with >= 2 dims outside normalisation layers (class name contains
  "Norm") and nn.Embedding layers, i.e. the linear/conv matrices. Helps late in training, once the model
  fits the data (adv.start_epoch >= 2, often later); started in epoch 1, or with the large snippet values
  (adv_lr 1, adv_eps 0.01+), it keeps the model from learning.
None of them helps a from-scratch image model much (augmentation does that job): expect only the cost.
"""
from __future__ import annotations

import math
import re
from typing import Callable

import torch
from torch import nn

from ...core.errors import ConfigError
from ...core.schema import Config

DEFAULT_EPS = {"fgm": 1.0, "pgd": 1.0, "awp": 1e-3}


def _unit(g: torch.Tensor) -> torch.Tensor:
    """g / ||g||, or zeros when the norm is 0 or not finite (fp16 overflow); no host sync."""
    norm = torch.linalg.vector_norm(g, dtype=torch.promote_types(g.dtype, torch.float32))
    return torch.where((norm > 0) & torch.isfinite(norm), g / norm, 0.0)


def _is_norm_or_embedding(module: nn.Module) -> bool:
    return isinstance(module, nn.Embedding) or "norm" in type(module).__name__.lower()


def default_params(model: nn.Module, method: str) -> list[str]:
    """The parameter names a method perturbs when adv.param_pattern is empty (see the module docstring)."""
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    if method == "awp":
        return [n for n, p in params.items() if "weight" in n and p.ndim >= 2
                and not _is_norm_or_embedding(modules.get(n.rpartition(".")[0], model))]
    words = [n for n in params if n.endswith("word_embeddings.weight")]
    if words:
        return words
    ids = {id(p): n for n, p in params.items()}
    for m in model.modules():  # HF backbones name their token embedding differently (wte, embed_tokens...)
        get = getattr(m, "get_input_embeddings", None)
        emb = get() if callable(get) else None
        if isinstance(emb, nn.Embedding) and id(emb.weight) in ids:
            return [ids[id(emb.weight)]]
    for name, m in model.named_modules():  # image: the stem (a ViT's patch embedding is a Conv2d too)
        if isinstance(m, nn.Conv2d):
            return [f"{name}.weight" if name else "weight"]
    return [n for n in params if "patch_embed" in n and n.endswith("weight")][:1]


class Adversary:
    """Base: keeps the chosen parameters; attack() backs up, perturbs (subclass), backpropagates, restores."""
    method = ""

    def __init__(self, model: nn.Module, names: list[str], eps: float, start_epoch: int):
        params = dict(model.named_parameters())
        self.model, self.names, self.eps, self.start_epoch = model, list(names), eps, start_epoch
        self.params = [params[n] for n in self.names]

    def active(self, epoch: int) -> bool:
        """Whether epoch (1-based) gets the attack; skipping it before start_epoch is the caller's job."""
        return epoch >= self.start_epoch

    def __repr__(self) -> str:
        shown = ", ".join(self.names[:3]) + (f", ... ({len(self.names)} tensors)" if len(self.names) > 3 else "")
        return f"{type(self).__name__}(eps={self.eps:g}, start_epoch={self.start_epoch}, params=[{shown}])"

    def attack(self, loss_fn: Callable[[], torch.Tensor], backward: Callable[[torch.Tensor], None]) -> float:
        """After the clean backward: perturb, loss_fn(), backward(loss) (adds to .grad), restore; the adv loss."""
        if all(p.grad is None for p in self.params):
            return math.nan
        buffers = [b for m in self.model.modules()  # the extra forwards must not move BatchNorm statistics
                   if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
                   for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
        stats = [b.clone() for b in buffers]
        with torch.no_grad():
            originals = [p.detach().clone() for p in self.params]
        try:
            loss = self._attack(loss_fn, backward, originals)
        finally:
            with torch.no_grad():
                for p, w0 in zip(self.params, originals):
                    p.copy_(w0)
                for b, saved in zip(buffers, stats):
                    b.copy_(saved)
        return float(loss.detach())

    def _attack(self, loss_fn, backward, originals: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class FGM(Adversary):
    method = "fgm"

    def _attack(self, loss_fn, backward, originals):
        with torch.no_grad():
            for p in self.params:
                if p.grad is not None:
                    p.add_(self.eps * _unit(p.grad))
        loss = loss_fn()
        backward(loss)
        return loss


class PGD(Adversary):
    method = "pgd"

    def __init__(self, model, names, eps, start_epoch, alpha: float, steps: int):
        super().__init__(model, names, eps, start_epoch)
        self.alpha, self.steps = alpha, steps

    def _attack(self, loss_fn, backward, originals):
        everything = [p for p in self.model.parameters() if p.requires_grad or p.grad is not None]
        saved = [None if p.grad is None else p.grad.clone() for p in everything]
        for t in range(self.steps):
            with torch.no_grad():
                for p, w0 in zip(self.params, originals):
                    if p.grad is None:
                        continue
                    p.add_(self.alpha * _unit(p.grad))
                    r = p - w0  # project onto the eps-ball around the clean weights
                    p.copy_(w0 + r * torch.clamp(self.eps / torch.linalg.vector_norm(r), max=1.0))
            if t < self.steps - 1:  # the next direction comes from this step's adversarial gradient alone
                for p in everything:
                    if p.grad is not None:
                        p.grad.zero_()
            else:  # the last pass adds to the clean (and accumulated) gradients
                for p, g in zip(everything, saved):
                    if g is None or p.grad is None:
                        p.grad = g
                    else:
                        p.grad.copy_(g)
            loss = loss_fn()
            backward(loss)
        return loss


class AWP(Adversary):
    method = "awp"

    def __init__(self, model, names, eps, start_epoch, adv_lr: float):
        super().__init__(model, names, eps, start_epoch)
        self.adv_lr = adv_lr

    def _attack(self, loss_fn, backward, originals):
        # foreach kernels over all chosen tensors: the perturbation is memory-bound elementwise work on
        # every weight matrix, so fewer passes and launches matter (about 15% less than a per-tensor loop)
        with torch.no_grad():
            pairs = [(p, w0) for p, w0 in zip(self.params, originals) if p.grad is not None]
            params, w0s, grads = [p for p, _ in pairs], [w for _, w in pairs], [p.grad for p, _ in pairs]
            w_norms = torch._foreach_norm(w0s)
            g_norms = torch._foreach_norm(grads)
            scales = [torch.where((gn > 0) & torch.isfinite(gn), self.adv_lr * wn / gn, 0.0).to(g.dtype)
                      for wn, gn, g in zip(w_norms, g_norms, grads)]
            delta = torch._foreach_mul(grads, scales)  # adv_lr * ||w|| * g / ||g||
            bound = torch._foreach_abs(w0s)
            torch._foreach_mul_(bound, self.eps)
            torch._foreach_minimum_(delta, bound)  # clamp to w0 +- eps * |w0|
            torch._foreach_neg_(bound)
            torch._foreach_maximum_(delta, bound)
            torch._foreach_add_(params, delta)
        loss = loss_fn()
        backward(loss)
        return loss


def build_adversary(cfg: Config, model: nn.Module) -> Adversary | None:
    """The configured attack on model (plain or DDP-wrapped), or None for adv.method=none."""
    a = cfg.adv
    if a.method == "none":
        return None
    positive = {"pgd": ("alpha", a.alpha), "awp": ("lr", a.lr)}.get(a.method)
    if not a.eps >= 0 or (positive is not None and not positive[1] > 0):
        key, value, text = ("eps", a.eps, ">= 0") if not a.eps >= 0 else (*positive, "> 0")
        raise ConfigError(f"config key 'adv.{key}' must be {text} for adv.method={a.method}, got {value}")
    if a.param_pattern:
        try:
            pattern = re.compile(a.param_pattern)
        except re.error as e:
            raise ConfigError(f"config key 'adv.param_pattern' {a.param_pattern!r} is not a regex: {e}") from None
        names = [n for n, _ in model.named_parameters() if pattern.search(n)]
    else:
        names = default_params(model, a.method)
    params = dict(model.named_parameters())
    trainable = [n for n in names if params[n].requires_grad]
    if not trainable:
        what = f"{a.param_pattern!r}" if a.param_pattern else f"empty (the {a.method} default)"
        found = (f"only frozen parameters ({', '.join(names[:3])}; train.freeze_layers?)" if names
                 else "no parameter")
        raise ConfigError(f"config key 'adv.param_pattern' is {what} and selects {found} of "
                          f"{type(model).__name__}; give a regex over trainable model.named_parameters() names")
    eps = a.eps or DEFAULT_EPS[a.method]
    if a.method == "fgm":
        return FGM(model, trainable, eps, a.start_epoch)
    if a.method == "pgd":
        return PGD(model, trainable, eps, a.start_epoch, a.alpha, a.steps)
    return AWP(model, trainable, eps, a.start_epoch, a.lr)
