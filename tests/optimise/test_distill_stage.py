"""The `distill` pipeline stage: a teacher trained by a `train` stage, distilled into a student that
registers with lineage to it; a recipe of another kind is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llmops.registry import Registry
from llmops.store.home import open_home

TEACHER = """
kind: pretrain
name: teacher
model: {architecture: llama, hidden_size: 64, intermediate_size: 128, num_layers: 2, num_heads: 4,
        num_kv_heads: 2, max_position_embeddings: 128}
data: {train: placeholder, schema: prompt_completion}
tokenizer: {source: train, vocab_size: 400}
optim: {lr: 3.0e-3, warmup_steps: 5, max_steps: 30, batch_size: 16, seed: 0}
max_seq_len: 96
"""
STUDENT = """
kind: distill
name: student
model: {architecture: llama, hidden_size: 32, intermediate_size: 64, num_layers: 1, num_heads: 2,
        num_kv_heads: 1, max_position_embeddings: 128}
data: {train: placeholder, schema: prompt_completion}
distill: {teacher: placeholder@1, temperature: 2.0, alpha: 0.7, teacher_data: {max_tokens: 8}}
optim: {lr: 5.0e-3, warmup_steps: 2, max_steps: 15, batch_size: 16, seed: 0}
max_seq_len: 96
"""


def _pipeline(student_recipe: str) -> dict[str, Any]:
    split = "${stages.split.outputs.%s}"
    return {
        "name": "shrink",
        "stages": {
            "synth": {
                "kind": "data.synth",
                "params": {"task": "intent", "name": "intent", "n": 200, "seed": 3},
            },
            "split": {
                "kind": "data.split",
                "params": {"input": "${stages.synth.outputs.dataset}", "key": "prompt"},
            },
            "teacher": {
                "kind": "train",
                "params": {"recipe": "teacher.yaml", "train": split % "train", "threads": 1},
            },
            "student": {
                "kind": "distill",
                "params": {
                    "recipe": student_recipe,
                    "train": split % "train",
                    "validation": split % "validation",
                    "teacher": "${stages.teacher.outputs.model}",
                    "threads": 1,
                },
            },
        },
    }


def test_distill_stage_registers_a_student_of_the_teacher_stage(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "teacher.yaml").write_text(TEACHER)
    (tmp_path / "student.yaml").write_text(STUDENT)
    pipeline = tmp_path / "llmops.yaml"

    pipeline.write_text(yaml.safe_dump(_pipeline("teacher.yaml")))
    wrong = cli("pipeline", "run", pipeline)
    assert wrong.code != 0 and "needs a `kind: distill` recipe, got kind 'pretrain'" in wrong.out + wrong.err
    assert "student" not in {m.name for m in Registry.from_home(open_home()).list_models()}

    pipeline.write_text(yaml.safe_dump(_pipeline("student.yaml")))
    done = cli("pipeline", "run", pipeline)
    assert done.code == 0, done.out + done.err
    registry = Registry.from_home(open_home())
    student, teacher = registry.get("student@1"), registry.get("teacher@1")
    assert student.tags["teacher"] == "teacher@1" and student.tags["kind"] == "distill"
    assert student.tags["pipeline"] == "shrink" and student.tags["stage"] == "student"
    assert student.metrics["total_params"] < teacher.metrics["total_params"]
    # the teacher answered the training prompts through the engine; the student learnt from them
    roles = {d.role: d.dataset for d in student.datasets}
    assert roles["train"] == "intent-train-teacher-answers" and roles["teacher_prompts"] == "intent-train"
