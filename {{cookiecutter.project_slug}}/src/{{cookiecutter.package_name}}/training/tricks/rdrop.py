"""R-Drop (rdrop.alpha > 0): two dropout passes of the same batch, pulled together.

loss = task loss averaged over both passes + alpha * consistency, where consistency is
* binary / multiclass: the symmetric KL 0.5 * (KL(p1||p2) + KL(p2||p1)) of the softmax distributions,
* multilabel: the same symmetric KL of each label's Bernoulli, summed over labels,
summed over classes (labels) and averaged over the batch, so alpha does not grow with the batch size
(typical values 0.1 to 5); for regression it is the MSE between the two passes.
Both passes are ONE forward over the batch concatenated with itself (double()), so every dropout
mask differs between the halves; targets are doubled with the rest of the batch.

Helps fine-tuning models with dropout (text transformers, dropout heads): a regulariser against
over-fitting small data sets. Doubles the forward/backward cost and the activation memory. Useless
without dropout (the two passes are identical, the consistency is 0) and, in train mode,
BatchNorm sees the doubled batch (the same statistics, so harmless).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def double(batch: dict) -> dict:
    """Every tensor (targets included) concatenated with itself along dim 0; other values unchanged."""
    return {k: torch.cat([v, v]) if torch.is_tensor(v) and v.dim() > 0 else v for k, v in batch.items()}


def _bernoulli_sym_kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KL(a||b) + KL(b||a) per element for Bernoulli logits: sum over {1, 0} of (p - q) * (log p - log q)."""
    pa, pb = torch.sigmoid(a), torch.sigmoid(b)
    return (pa - pb) * (F.logsigmoid(a) - F.logsigmoid(b)) + (pb - pa) * (F.logsigmoid(-a) - F.logsigmoid(-b))


def consistency(a: torch.Tensor, b: torch.Tensor, problem: str) -> torch.Tensor:
    """The distance between the two passes' outputs a, b (N, C); see the module docstring."""
    a, b = a.float(), b.float()
    if problem in ("binary", "multiclass") and a.shape[-1] > 1:
        la, lb = F.log_softmax(a, -1), F.log_softmax(b, -1)
        # kl_div(input, target) = KL(target || input); batchmean: summed over classes, / N
        return 0.5 * (F.kl_div(lb, la, reduction="batchmean", log_target=True)
                      + F.kl_div(la, lb, reduction="batchmean", log_target=True))
    if problem in ("binary", "multiclass", "multilabel"):  # a single binary logit is one Bernoulli
        return 0.5 * _bernoulli_sym_kl(a, b).reshape(len(a), -1).sum(-1).mean()
    if problem == "regression":
        return F.mse_loss(a, b)
    raise ValueError(f"R-Drop: unknown problem {problem!r}")


def rdrop_loss(logits: torch.Tensor, target: torch.Tensor, base_loss: Callable[[torch.Tensor, torch.Tensor],
               torch.Tensor], alpha: float, problem: str) -> torch.Tensor:
    """logits (2N, ...) of a doubled batch, target (2N, ...): base_loss over both halves + alpha * consistency."""
    n = logits.shape[0] // 2
    if logits.shape[0] != 2 * n:
        raise ValueError(f"R-Drop expects the logits of a doubled batch (even length), got {logits.shape[0]} rows")
    return base_loss(logits, target) + alpha * consistency(logits[:n], logits[n:], problem)
