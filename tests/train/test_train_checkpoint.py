"""Checkpoints: no pickle, atomic publication, and kill-and-resume bitwise equal to a straight run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import llmops.train.checkpoint as checkpoint_module
from llmops.train import TrainInputs, train
from llmops.train.checkpoint import (
    flatten_optimizer,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    unflatten_optimizer,
)
from llmops.train.recipe import OptimSpec


class Killed(Exception):
    """Stands in for the process dying (SIGKILL, preemption, OOM)."""


class KillAtStep:
    """An observer that 'kills' the run when it reaches a step."""

    def __init__(self, step: int) -> None:
        self.kill_step = step
        self.checkpoints: list[int] = []

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        if step == self.kill_step:
            raise Killed(step)

    def on_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        return None

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.checkpoints.append(step)


def _resume_recipe(make_recipe: Any) -> Any:
    # Dropout on and accumulation over two micro-batches, so random state and data position matter.
    return make_recipe(
        model={"dropout": 0.1},
        data={"schema": "prompt_completion", "validation": "v"},
        optim={"max_steps": 12, "batch_size": 3, "grad_accum": 2, "warmup_steps": 3},
        eval_every=4,
        checkpoint_every=5,
    )


def test_kill_and_resume_is_bitwise_identical(corpus_dir: Path, tmp_path: Path, make_recipe: Any) -> None:
    recipe = _resume_recipe(make_recipe)
    inputs = TrainInputs(train_path=corpus_dir / "pc.jsonl", validation_path=corpus_dir / "pc.jsonl")
    straight = train(recipe, inputs, tmp_path / "straight")

    observer = KillAtStep(8)
    with pytest.raises(Killed):
        train(recipe, inputs, tmp_path / "broken", observer=observer)
    assert observer.checkpoints == [5]
    assert not (tmp_path / "broken" / "model").exists()
    resumed = train(recipe, inputs, tmp_path / "broken", resume=True)

    assert resumed.resumed_from_step == 5
    assert resumed.final_step == straight.final_step == 12
    assert resumed.train_losses == straight.train_losses  # exact, not approximately
    assert resumed.val_losses == straight.val_losses
    assert resumed.tokens_seen == straight.tokens_seen
    a = load_file(str(straight.model_dir / "model.safetensors"))
    b = load_file(str(resumed.model_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_optimizer_state_round_trips_without_pickle() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=OptimSpec(max_steps=1).betas)
    for _ in range(3):
        model(torch.randn(2, 4)).sum().backward()
        optimizer.step()
    tensors, rest = flatten_optimizer(optimizer.state_dict())
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    assert set(tensors) == {f"state.{i}.{k}" for i in (0, 1) for k in ("step", "exp_avg", "exp_avg_sq")}
    restored = unflatten_optimizer(tensors, rest)
    assert restored["param_groups"][0]["betas"] == (0.9, 0.95)
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-2)
    fresh.load_state_dict(restored)
    for key, value in optimizer.state_dict()["state"][0].items():
        assert torch.equal(value, fresh.state_dict()["state"][0][key])


def test_crash_while_publishing_keeps_the_previous_checkpoint(
    corpus_dir: Path, tmp_path: Path, make_recipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish = checkpoint_module._publish
    calls = {"n": 0}

    def crash_on_second(tmp: Path, final: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            assert (tmp / "model.safetensors").exists()  # the new checkpoint was fully written...
            raise OSError("simulated crash before the rename")  # ...but never published
        publish(tmp, final)

    monkeypatch.setattr(checkpoint_module, "_publish", crash_on_second)
    recipe = make_recipe(optim={"max_steps": 6}, checkpoint_every=3)
    inputs = TrainInputs(train_path=corpus_dir / "text.jsonl")
    with pytest.raises(OSError, match="simulated crash"):
        train(recipe, inputs, tmp_path / "run")

    root = tmp_path / "run" / "checkpoints"
    assert [p.name for p in root.iterdir()] == ["step-00000003"]  # no half checkpoint, no temp folder
    loaded = load_checkpoint(latest_checkpoint(root) or root)
    assert loaded.trainer.step == 3 and loaded.model


def test_a_half_written_folder_from_a_killed_process_is_ignored_and_resume_works(
    corpus_dir: Path, tmp_path: Path, make_recipe: Any
) -> None:
    recipe = make_recipe(optim={"max_steps": 6}, checkpoint_every=3)
    inputs = TrainInputs(train_path=corpus_dir / "text.jsonl")
    with pytest.raises(Killed):
        train(recipe, inputs, tmp_path / "run", observer=KillAtStep(5))
    root = tmp_path / "run" / "checkpoints"
    # What SIGKILL in the middle of writing step 6 leaves behind: a temp folder with a torn file.
    torn = root / ".tmp-step-00000006-abc123"
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"\x00" * 10)
    assert latest_checkpoint(root) == root / "step-00000003"

    result = train(recipe, inputs, tmp_path / "run", resume=True)
    assert result.resumed_from_step == 3 and result.final_step == 6
    assert not torn.exists()  # cleaned once a newer checkpoint was published
    assert [p.name for p in list_checkpoints(root)] == ["step-00000003", "step-00000006"]


def test_only_the_newest_checkpoints_are_kept(corpus_dir: Path, tmp_path: Path, make_recipe: Any) -> None:
    recipe = make_recipe(optim={"max_steps": 8}, checkpoint_every=2, keep_checkpoints=2)
    train(recipe, TrainInputs(train_path=corpus_dir / "text.jsonl"), tmp_path / "run")
    names = [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")]
    assert names == ["step-00000006", "step-00000008"]
    files = {p.name for p in (tmp_path / "run" / "checkpoints" / names[-1]).iterdir()}
    assert files == {"model.safetensors", "optimizer.safetensors", "state.json"}
