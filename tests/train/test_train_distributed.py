"""Two processes under torchrun (gloo, CPU) train the same model as one process."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from llmops.errors import InvalidInput
from llmops.train import TrainingFailed, TrainInputs, train
from llmops.train.distributed import torchrun_command

# Gradients are summed across processes in a different order than within one process, so results
# agree to float rounding, not bitwise. The measured max difference here is ~5e-7.
WEIGHT_TOLERANCE = 1e-5


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.checkpoint_paths: list[Path] = []

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        self.events.append(("step", step))

    def on_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        self.events.append(("eval", step))

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.events.append(("checkpoint", step))
        self.checkpoint_paths.append(path)


def test_torchrun_command_runs_the_worker_module() -> None:
    command = torchrun_command(2, Path("j"), Path("r"), Path("e"))
    assert command[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert "--nproc_per_node=2" in command and "llmops.train.worker" in command


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(
    corpus_dir: Path, tmp_path: Path, make_recipe: Any
) -> None:
    # batch_size is global: one process runs 4 sequences per micro-batch, two run 2 each.
    recipe = make_recipe(
        data={"schema": "prompt_completion", "validation": "v"},
        optim={"max_steps": 6, "batch_size": 4, "grad_accum": 2},
        eval_every=3,
        checkpoint_every=3,
    )
    inputs = TrainInputs(train_path=corpus_dir / "pc.jsonl", validation_path=corpus_dir / "pc.jsonl")
    one = train(recipe, inputs, tmp_path / "one", num_threads=1)
    recorder = Recorder()
    two = train(recipe, inputs, tmp_path / "two", nproc=2, num_threads=1, observer=recorder)

    assert (one.world_size, two.world_size) == (1, 2)
    assert two.final_step == 6 and two.model_dir == tmp_path / "two" / "model"
    a = load_file(str(one.model_dir / "model.safetensors"))
    b = load_file(str(two.model_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[name] - b[name]).abs().max()) for name in a)
    assert worst < WEIGHT_TOLERANCE
    assert two.train_losses == pytest.approx(one.train_losses, abs=1e-5)
    assert [s for s, _ in two.val_losses] == [3, 6]
    assert two.tokens_seen == one.tokens_seen
    # Rank 0's observer events reach the caller's observer in this process, in order.
    expected = [("step", s) for s in (1, 2, 3)] + [("eval", 3), ("checkpoint", 3)]
    expected += [("step", s) for s in (4, 5, 6)] + [("eval", 6), ("checkpoint", 6)]
    assert recorder.events == expected
    assert all(path.is_dir() for path in recorder.checkpoint_paths)


def test_batch_not_divisible_by_processes_fails_before_launch(
    corpus_dir: Path, tmp_path: Path, make_recipe: Any
) -> None:
    recipe = make_recipe(optim={"batch_size": 3})
    with pytest.raises(InvalidInput) as caught:
        train(recipe, TrainInputs(train_path=corpus_dir / "text.jsonl"), tmp_path / "run", nproc=2)
    assert caught.value.param == "optim.batch_size"


@pytest.mark.slow
def test_a_worker_failure_comes_back_as_training_failed(
    corpus_dir: Path, tmp_path: Path, make_recipe: Any
) -> None:
    recipe = make_recipe(optim={"lr": 1e9, "warmup_steps": 0, "clip_norm": None})
    with pytest.raises(TrainingFailed, match=r"diverged at step \d+") as caught:
        train(
            recipe,
            TrainInputs(train_path=corpus_dir / "text.jsonl"),
            tmp_path / "run",
            nproc=2,
            num_threads=1,
        )
    assert caught.value.step is not None
    assert not (tmp_path / "run" / "model").exists()
