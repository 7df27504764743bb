"""AdamW with decay on matrices only, and the cosine learning-rate schedule with linear warm-up.

Parameters are grouped in ``named_parameters()`` order, so a freshly built model gets the same
parameter ids as the one that wrote a checkpoint: that is what lets optimizer state load by id.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_cosine_schedule_with_warmup

from llmops.train.recipe import OptimSpec


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Trainable parameters by name, each shared (tied) tensor once, in a stable order."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def build_optimizer(model: torch.nn.Module, spec: OptimSpec) -> torch.optim.AdamW:
    """AdamW; biases, norms and other vectors ([d]) are not decayed, matrices ([out, in]) are."""
    params = trainable_parameters(model)
    decay = [p for p in params.values() if p.ndim >= 2]
    no_decay = [p for p in params.values() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": spec.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps)


def build_scheduler(optimizer: torch.optim.Optimizer, spec: OptimSpec) -> LambdaLR:
    """Linear warm-up over ``warmup_steps`` then half a cosine down to zero at ``max_steps``."""
    warmup = min(spec.warmup_steps, spec.max_steps)
    scheduler: LambdaLR = get_cosine_schedule_with_warmup(optimizer, warmup, spec.max_steps)
    return scheduler
