"""Distillation: the loss, the recipe rules, and a student registered with lineage to its teacher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from llmops.data.versions import DatasetStore
from llmops.errors import InvalidInput
from llmops.registry import Registry
from llmops.store.home import open_home
from llmops.train.batching import IGNORE_INDEX
from llmops.train.distill import distillation_loss_sum
from llmops.train.recipe import DistillSpec, parse_recipe

TEACHER = """
kind: pretrain
name: teacher
model: {architecture: llama, hidden_size: 64, intermediate_size: 128, num_layers: 2, num_heads: 4,
        num_kv_heads: 2, max_position_embeddings: 128}
data: {train: intent-train, validation: intent-validation, schema: prompt_completion}
tokenizer: {source: train, vocab_size: 400}
optim: {lr: 3.0e-3, warmup_steps: 5, max_steps: 40, batch_size: 16, seed: 0}
max_seq_len: 96
"""
STUDENT = """
kind: distill
name: student
model: {architecture: llama, hidden_size: 32, intermediate_size: 64, num_layers: 1, num_heads: 2,
        num_kv_heads: 1, max_position_embeddings: 128}
data: {train: intent-train, validation: intent-validation, schema: prompt_completion}
distill:
  teacher: teacher@1
  temperature: 2.0
  alpha: 0.7
  teacher_data: {max_tokens: 8}
optim: {lr: 5.0e-3, warmup_steps: 2, max_steps: 20, batch_size: 16, seed: 0}
max_seq_len: 96
"""


def test_loss_is_the_weighted_sum_of_soft_and_hard_terms() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    labels = torch.randint(0, 7, (2, 5))
    labels[0, :3] = IGNORE_INDEX  # a prompt: no loss there
    targets = labels[:, 1:].reshape(-1)
    keep = targets != IGNORE_INDEX
    s, t = student[:, :-1].reshape(-1, 7)[keep], teacher[:, :-1].reshape(-1, 7)[keep]
    hard = F.cross_entropy(s, targets[keep], reduction="sum")
    p_t = torch.softmax(t / 3, -1)
    kl = (p_t * (torch.log_softmax(t / 3, -1) - torch.log_softmax(s / 3, -1))).sum()
    got = distillation_loss_sum(student, teacher, labels, DistillSpec(teacher="t", temperature=3, alpha=0.25))
    assert torch.allclose(got, 0.25 * 9 * kl + 0.75 * hard, atol=1e-5)
    same = distillation_loss_sum(student, student, labels, DistillSpec(teacher="t", alpha=1.0))
    assert abs(float(same)) < 1e-5  # a student equal to its teacher has nothing to learn


def _raw(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "kind": "distill",
        "model": {"architecture": "llama", "hidden_size": 32, "num_heads": 2, "num_kv_heads": 1},
        "data": {"train": "d", "schema": "prompt_completion"},
        "distill": {"teacher": "teacher@1"},
        "optim": {"max_steps": 1},
    }
    raw.update(changes)
    return raw


def test_recipe_rules_name_the_field() -> None:
    recipe = parse_recipe(_raw())
    assert recipe.tokenizer.source == "teacher" and recipe.distill is not None
    assert (recipe.distill.temperature, recipe.distill.alpha) == (2.0, 0.5)
    cases = {
        "distill": _raw(distill=None),
        "tokenizer.source": _raw(tokenizer={"source": "train"}),
        "distill.teacher_data": _raw(
            data={"train": "d", "schema": "text"}, distill={"teacher": "t@1", "teacher_data": {}}
        ),
    }
    for field, raw in cases.items():
        raw = {k: v for k, v in raw.items() if v is not None}
        with pytest.raises(InvalidInput, match=f"field '{field}'"):
            parse_recipe(raw)
    with pytest.raises(InvalidInput, match=r"field 'tokenizer\.source'"):
        parse_recipe({**_raw(kind="pretrain"), "distill": None, "tokenizer": {"source": "teacher"}})


def _data(cli: Any) -> None:
    assert cli("data", "synth", "intent", "--name", "intent", "--n", "240", "--seed", "3").code == 0
    assert cli("data", "split", "intent", "--key", "prompt").code == 0


@pytest.mark.slow
def test_a_distilled_student_registers_with_lineage_to_its_teacher(cli: Any, tmp_path: Path) -> None:
    _data(cli)
    (tmp_path / "teacher.yaml").write_text(TEACHER)
    assert cli("train", "run", tmp_path / "teacher.yaml", "--threads", "1").code == 0
    (tmp_path / "student.yaml").write_text(STUDENT)
    distilled = cli("train", "run", tmp_path / "student.yaml", "--threads", "1")
    assert distilled.code == 0, distilled.err
    assert "registered student@1" in distilled.out

    home = open_home()
    registry = Registry.from_home(home)
    student, teacher = registry.get("student@1"), registry.get("teacher@1")
    assert student.tags["teacher"] == "teacher@1" and student.tags["kind"] == "distill"
    assert student.tags["distill"] == {"temperature": 2.0, "alpha": 0.7}
    assert "teacher@1" in (student.description or "")
    assert student.metrics["total_params"] * 4 <= teacher.metrics["total_params"]
    assert student.metrics["final_train_loss"] < student.metrics["initial_train_loss"]
    roles = {d.role: d.dataset for d in student.datasets}
    assert roles == {
        "train": "intent-train-teacher-answers",
        "validation": "intent-validation",
        "teacher_prompts": "intent-train",
    }
    answers = DatasetStore.from_home(home).get("intent-train-teacher-answers")
    assert answers.source == "model:teacher@1" and answers.parents == ("intent-train@1",)
    assert answers.transform == {"name": "teacher_answers", "teacher": "teacher@1", "max_tokens": 8}
    train_rows = DatasetStore.from_home(home).rows("intent-train")
    answer_rows = DatasetStore.from_home(home).rows(answers)
    assert answers.stats is not None and answers.stats["prompts"] == len(train_rows)
    assert len(answer_rows) == len(train_rows) - answers.stats["empty_answers_left_out"] > 0
    assert {r["prompt"] for r in answer_rows} <= {r["prompt"] for r in train_rows}
    # The student shares the teacher's tokenizer, so it can draft for it (speculative decoding).
    from transformers import AutoTokenizer

    student_dir, teacher_dir = registry.local_path("student@1"), registry.local_path("teacher@1")
    assert AutoTokenizer.from_pretrained(student_dir).get_vocab() == (
        AutoTokenizer.from_pretrained(teacher_dir).get_vocab()
    )

    # A student on another tokenizer is refused before anything is generated or registered.
    from transformers import AutoModelForCausalLM

    other = tmp_path / "other-tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    tokenizer.add_tokens(["<|extra|>"])
    tokenizer.save_pretrained(other)
    AutoModelForCausalLM.from_pretrained(teacher_dir).save_pretrained(other)
    registry.register(other, "other")
    mismatched = STUDENT.replace("name: student", "name: student-b").replace(
        "optim:", "tokenizer: {source: ref, ref: other@1}\noptim:"
    )
    (tmp_path / "mismatch.yaml").write_text(mismatched)
    refused = cli("train", "run", tmp_path / "mismatch.yaml", "--threads", "1")
    assert refused.code != 0 and "tokenizer" in refused.err and "teacher" in refused.err
    assert [m.name for m in registry.list_models()] == ["other", "student", "teacher"]
    assert len(DatasetStore.from_home(home).list_versions("intent-train-teacher-answers")) == 1
