"""Knowledge distillation: a student learns a teacher's softened next-token distributions.

The training loss of one batch, summed over its target tokens (the loop divides by their count)::

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, labels)

(Hinton et al., 2015, "Distilling the Knowledge in a Neural Network"; the T^2 keeps the soft term's
gradients on the scale of the hard term's as T changes). Only target tokens count, as in every other
recipe, so a prompt_completion student learns the teacher's answers, not its prompts. Validation
stays the plain cross-entropy on the labels, comparable with any other run on the same data.

Teacher and student must share one tokenizer (the same token ids mean the same text); anything else
is refused before training.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from llmops.errors import InvalidInput
from llmops.train.batching import IGNORE_INDEX, Batch
from llmops.train.loop import Trainer
from llmops.train.recipe import DistillSpec


def check_same_tokenizer(student: PreTrainedTokenizerBase, teacher: PreTrainedTokenizerBase) -> None:
    """Refuse a student tokenizer whose vocabulary differs from the teacher's in any token or id."""
    if student.get_vocab() != teacher.get_vocab():
        raise InvalidInput(
            f"the student's tokenizer ({len(student)} tokens) differs from the teacher's ({len(teacher)} "
            "tokens): distillation compares distributions over the same token ids; use "
            "tokenizer.source: teacher",
            param="tokenizer.source",
        )


def check_same_vocabulary(student_vocab: int, teacher_vocab: int) -> None:
    if student_vocab != teacher_vocab:
        raise InvalidInput(
            f"the student model has {student_vocab} output tokens, the teacher {teacher_vocab}: a student "
            "from a base must have the teacher's vocabulary",
            param="model.base",
        )


def distillation_loss_sum(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    spec: DistillSpec,
) -> torch.Tensor:
    """The summed loss over target tokens; logits ``[B, T, V]``, labels ``[B, T]`` (unshifted)."""
    vocab = student_logits.shape[-1]
    targets = labels[:, 1:].reshape(-1)
    keep = targets != IGNORE_INDEX
    student = student_logits[:, :-1].float().reshape(-1, vocab)[keep]  # [N, V]
    teacher = teacher_logits[:, :-1].float().reshape(-1, vocab)[keep]
    hard = F.cross_entropy(student, targets[keep], reduction="sum")
    t = spec.temperature
    soft = F.kl_div(
        F.log_softmax(student / t, dim=-1),
        F.log_softmax(teacher / t, dim=-1),
        log_target=True,
        reduction="sum",
    ) * (t * t)
    return spec.alpha * soft + (1 - spec.alpha) * hard


class DistillTrainer(Trainer):
    """The training loop with the distillation loss; the teacher is frozen on the same device."""

    def __init__(self, *args: Any, teacher: torch.nn.Module, spec: DistillSpec, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.device).eval()
        for param in self.teacher.parameters():
            param.requires_grad_(False)
        self.spec = spec

    def _train_loss_sum(self, module: torch.nn.Module, batch: Batch) -> torch.Tensor:
        precision = torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.optim.precision == "bf16"
        )
        with torch.no_grad(), precision:
            teacher_logits = self.teacher(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
            ).logits
        with precision:
            student_logits = module(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
            ).logits
        return distillation_loss_sum(student_logits, teacher_logits, batch.labels, self.spec)
