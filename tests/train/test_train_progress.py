"""Training shows its progress: step, loss, tokens/s and time left, on a terminal and in a log."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from llmops.train.progress import ProgressReport

RECIPE = """
kind: pretrain
name: tiny-progress
model: {architecture: llama, hidden_size: 32, intermediate_size: 64, num_layers: 2, num_heads: 4,
        num_kv_heads: 2, max_position_embeddings: 64}
data: {train: intent-train, validation: intent-validation, schema: prompt_completion}
tokenizer: {source: train, vocab_size: 300}
optim: {lr: 3.0e-3, warmup_steps: 2, max_steps: 40, batch_size: 4, seed: 0}
max_seq_len: 48
eval_every: 20
"""
LINE = re.compile(
    r"^step (\d+)/40  loss (\d+\.\d{4})  ([\d,]+) tokens/s  (\d+:\d\d:\d\d|-:--:--) left$", re.M
)


def test_train_run_prints_step_loss_throughput_and_time_left(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("data", "synth", "intent", "--name", "intent", "--n", "60", "--seed", "3").code == 0
    assert cli("data", "split", "intent", "--key", "prompt").code == 0
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)

    trained = cli("train", "run", recipe, "--threads", "1")

    assert trained.code == 0, trained.err
    lines = LINE.findall(trained.out)
    steps = [int(step) for step, *_ in lines]
    assert steps[0] == 1 and steps[-1] == 40, trained.out
    assert steps == sorted(steps) and 2 <= len(steps) <= 40 // 2 + 2, "a line every few steps, not each"
    assert all(float(loss) > 0 and int(tps.replace(",", "")) > 0 for _, loss, tps, _ in lines)
    assert lines[0][3] == "-:--:--", "no estimate before a step has been timed"
    assert lines[-1][3] == "0:00:00", "no time is left after the last step"
    assert re.search(r"^step 20/40  validation loss \d+\.\d{4} \(best \d+\.\d{4}\)$", trained.out, re.M)
    assert "registered tiny-progress@1" in trained.out


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _plain() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


def test_plain_lines_come_every_n_steps_or_every_few_seconds() -> None:
    console, buffer = _plain()
    clock = _Clock()
    report = ProgressReport(100, console, every_steps=10, every_s=5.0, clock=clock)
    for step in range(1, 101):
        clock.now += 0.1 if step <= 50 else 6.0  # slow steps after 50: a line each, by time
        report.on_step(step, {"loss": 2.0, "tokens_per_s": 1000.0})
    steps = [int(s) for s in re.findall(r"^step (\d+)/100", buffer.getvalue(), re.M)]
    assert steps[:6] == [1, 11, 21, 31, 41, 51]
    assert steps[6:] == list(range(52, 101))


def test_time_left_is_remaining_steps_at_the_mean_step_time() -> None:
    console, buffer = _plain()
    clock = _Clock()
    report = ProgressReport(10, console, every_steps=1, clock=clock)
    clock.now = 30.0
    report.on_step(1, {"loss": 1.0, "tokens_per_s": 10.0})  # set-up time is no step time
    clock.now = 32.0
    report.on_step(2, {"loss": 1.0, "tokens_per_s": 10.0})  # 2 s a step: 8 x 2 s
    clock.now = 35.0
    report.on_step(3, {"loss": 1.0, "tokens_per_s": 10.0})  # 2.5 s a step: 7 x 2.5 s
    assert re.findall(r"(\S+) left", buffer.getvalue()) == ["-:--:--", "0:00:16", "0:00:18"]


def test_a_resumed_run_estimates_from_its_own_steps() -> None:
    console, buffer = _plain()
    clock = _Clock()
    report = ProgressReport(100, console, every_steps=1, clock=clock)
    for step in (61, 62, 63):
        clock.now += 1.0
        report.on_step(step, {"loss": 1.0, "tokens_per_s": 10.0})
    assert buffer.getvalue().splitlines()[-1].endswith("0:00:37 left")


def test_a_terminal_gets_a_bar_with_loss_and_throughput() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=150)
    with ProgressReport(5, console) as report:
        for step in range(1, 6):
            report.on_step(step, {"loss": 1.2345, "tokens_per_s": 4321.0})
    shown = buffer.getvalue()
    assert "5/5" in shown and "loss 1.2345" in shown and "4,321 tokens/s" in shown
    assert not re.search(r"^step \d", shown, re.M), "no plain lines under the bar"
