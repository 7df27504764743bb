"""The training loop: learning, divergence, early stopping, accumulation, output folders."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from llmops.errors import InvalidInput
from llmops.train import TrainingFailed, TrainInputs, train
from llmops.train.input_format import read_input_format
from llmops.train.loop import Trainer
from llmops.train.modeling import load_model
from llmops.train.tokenizer import load_tokenizer


class Recorder:
    """A TrainingObserver that keeps every event."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, dict[str, float]]] = []
        self.evals: list[tuple[int, dict[str, float]]] = []
        self.checkpoints: list[tuple[int, Path]] = []

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        self.steps.append((step, dict(metrics)))

    def on_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        self.evals.append((step, dict(metrics)))

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.checkpoints.append((step, path))


def test_pretraining_memorises_a_small_set(corpus_dir: Path, tmp_path: Path, make_recipe: Any) -> None:
    recipe = make_recipe(data={"validation": "val"}, eval_every=10, optim={"max_steps": 40})
    inputs = TrainInputs(train_path=corpus_dir / "text.jsonl", validation_path=corpus_dir / "text.jsonl")
    recorder = Recorder()
    result = train(recipe, inputs, tmp_path / "run", observer=recorder)

    assert result.final_step == 40 and len(result.train_losses) == 40
    assert result.final_train_loss < 0.5 * result.initial_train_loss
    assert [s for s, _ in result.val_losses] == [10, 20, 30, 40]
    assert result.val_losses[-1][1] < result.val_losses[0][1]
    assert result.best_val_loss == min(v for _, v in result.val_losses)
    assert result.tokens_per_s > 0 and result.tokens_seen > 0
    assert [s for s, _ in recorder.steps] == list(range(1, 41))
    assert {"loss", "lr", "grad_norm", "tokens_per_s"} <= set(recorder.steps[0][1])
    assert [s for s, _ in recorder.evals] == [10, 20, 30, 40]
    # The warm-up ramps the learning rate, the cosine brings it down.
    lrs = [m["lr"] for _, m in recorder.steps]
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(1e-2) and lrs[-1] < 1e-3

    model_dir = result.model_dir
    assert model_dir == tmp_path / "run" / "model"
    assert (model_dir / "model.safetensors").exists() and (model_dir / "tokenizer.json").exists()
    model, tokenizer = load_model(model_dir), load_tokenizer(model_dir)
    prompt = tokenizer("the red cat sat on the big", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    new_tokens = out[0, prompt["input_ids"].shape[1] :].tolist()
    assert tokenizer.decode(new_tokens, skip_special_tokens=True).strip() == "mat"
    assert tokenizer.eos_token_id in new_tokens  # it learned where a text ends
    recorded = read_input_format(model_dir)  # how evaluation and serving will encode its prompts
    assert recorded is not None and recorded.trained_on == "text" and recorded.chat == "none"


def test_full_finetune_learns_the_chat_format(
    corpus_dir: Path, base_model_dir: Path, tmp_path: Path, make_recipe: Any
) -> None:
    recipe = make_recipe(
        kind="finetune",
        model={"base": "tiny"},
        tokenizer={"source": "base"},
        data={"schema": "chat"},
        optim={"max_steps": 30},
    )
    inputs = TrainInputs(train_path=corpus_dir / "chat.jsonl", base_model_dir=base_model_dir)
    result = train(recipe, inputs, tmp_path / "run")
    assert result.kind == "finetune"
    assert result.final_train_loss < 0.5 * result.initial_train_loss
    base = load_file(str(base_model_dir / "model.safetensors"))
    tuned = load_file(str(result.model_dir / "model.safetensors"))
    assert any(not torch.equal(base[name], tuned[name]) for name in base)
    recorded = read_input_format(result.model_dir)
    assert recorded is not None and recorded.trained_on == "chat" and recorded.chat == "template"


def test_chat_rows_train_with_bf16_autocast(corpus_dir: Path, tmp_path: Path, make_recipe: Any) -> None:
    recipe = make_recipe(data={"schema": "chat"}, optim={"max_steps": 15, "precision": "bf16"}, packing=True)
    result = train(recipe, TrainInputs(train_path=corpus_dir / "chat.jsonl"), tmp_path / "run")
    assert all(torch.isfinite(torch.tensor(result.train_losses)))
    assert result.final_train_loss < result.initial_train_loss


def test_nan_fails_the_run_naming_the_step(
    corpus_dir: Path, tmp_path: Path, make_recipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Trainer._train_step

    def poisoned(self: Trainer, step: int) -> dict[str, float]:
        if step == 4:  # a NaN appears in the weights, as an overflow or a bad kernel would cause
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return original(self, step)

    monkeypatch.setattr(Trainer, "_train_step", poisoned)
    recorder = Recorder()
    with pytest.raises(TrainingFailed, match="at step 4") as caught:
        train(
            make_recipe(),
            TrainInputs(train_path=corpus_dir / "text.jsonl"),
            tmp_path / "run",
            observer=recorder,
        )
    assert caught.value.step == 4
    assert [s for s, _ in recorder.steps] == [1, 2, 3]
    assert not (tmp_path / "run" / "model").exists()  # no final model after a failure


def test_huge_learning_rate_diverges(corpus_dir: Path, tmp_path: Path, make_recipe: Any) -> None:
    recipe = make_recipe(optim={"lr": 1e9, "warmup_steps": 0, "clip_norm": None})
    with pytest.raises(TrainingFailed, match=r"diverged at step \d+") as caught:
        train(recipe, TrainInputs(train_path=corpus_dir / "text.jsonl"), tmp_path / "run")
    assert caught.value.step is not None and caught.value.step >= 2
    assert not (tmp_path / "run" / "model").exists()


def test_early_stopping_after_patience_evaluations(
    corpus_dir: Path, tmp_path: Path, make_recipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = iter([3.0, 2.0, 2.5, 2.6, 1.0])
    monkeypatch.setattr(Trainer, "evaluate", lambda self: next(scripted))
    recipe = make_recipe(data={"validation": "v"}, eval_every=2, early_stopping_patience=2)
    inputs = TrainInputs(train_path=corpus_dir / "text.jsonl", validation_path=corpus_dir / "text.jsonl")
    result = train(recipe, inputs, tmp_path / "run")
    assert result.stopped_early
    assert result.final_step == 8  # evaluations at 2, 4 (best), 6, 8: two without improvement
    assert (result.best_step, result.best_val_loss) == (4, 2.0)
    assert (result.model_dir / "model.safetensors").exists()


def test_accumulation_matches_a_bigger_batch(corpus_dir: Path, tmp_path: Path, make_recipe: Any) -> None:
    """The step's gradient is the token mean of the global batch, however it is split."""
    inputs = TrainInputs(train_path=corpus_dir / "pc.jsonl")
    common = {"schema": "prompt_completion"}
    big = train(make_recipe(data=common, optim={"max_steps": 5}), inputs, tmp_path / "a")
    split = train(
        make_recipe(data=common, optim={"max_steps": 5, "batch_size": 2, "grad_accum": 2}),
        inputs,
        tmp_path / "b",
    )
    a = load_file(str(big.model_dir / "model.safetensors"))
    b = load_file(str(split.model_dir / "model.safetensors"))
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5
    assert big.train_losses == pytest.approx(split.train_losses, abs=1e-5)


def test_refuses_a_used_output_folder_without_resume(
    corpus_dir: Path, tmp_path: Path, make_recipe: Any
) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "something").write_text("x")
    with pytest.raises(InvalidInput) as caught:
        train(make_recipe(), TrainInputs(train_path=corpus_dir / "text.jsonl"), tmp_path / "run")
    assert caught.value.param == "output_dir"


def test_finetune_without_a_base_directory_is_invalid(
    corpus_dir: Path, tmp_path: Path, make_recipe: Any
) -> None:
    recipe = make_recipe(kind="finetune", model={"base": "x"}, tokenizer={"source": "base"})
    with pytest.raises(InvalidInput) as caught:
        train(recipe, TrainInputs(train_path=corpus_dir / "text.jsonl"), tmp_path / "run")
    assert caught.value.param == "base_model_dir"
