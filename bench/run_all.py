"""Every benchmark of llmops in one run, and one markdown report (``make bench``).

    .venv/bin/python bench/run_all.py [--quick] [--only NAME ...] [--skip NAME ...] [--output PATH]

Sections run one after another, each in its own process (so no section's threads or memory
meet another's), with the machine's load average read before and after each: a section measured
on a busy machine says so in the report. A section that fails is recorded with its exit status and
the end of its output, and the run goes on. Peers (vLLM CPU, LiteLLM's proxy) are installed by
their sections into ``bench/.envs/`` (``bench/peers.py``) the first time. ``--quick`` runs every
section at smoke-test sizes (minutes, not an hour); its numbers are not for the record.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "bench" / "out" / "report.md"
TAIL_CHARS = 20_000


@dataclass(frozen=True)
class Section:
    """One benchmark: a script under ``bench/`` with its full and quick arguments."""

    name: str
    title: str
    script: str
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()
    timeout_s: float = 3 * 3600

    def command(self, quick: bool) -> list[str]:
        return [sys.executable, str(ROOT / self.script), *(self.quick_args if quick else self.args)]


SECTIONS = (
    Section(
        "engine",
        "Engine in-process against transformers",
        "bench/engine/run.py",
        quick_args=(
            "--requests",
            "8",
            "--new-tokens",
            "16",
            "--repeats",
            "1",
            "--poisson-requests",
            "8",
            "--prefix-requests",
            "4",
            "--skip-sequential",
        ),
    ),
    Section(
        "engine-kernel",
        "Decode attention over the paged cache: the C++ kernel against gather + SDPA",
        "bench/engine/decode_kernel.py",
        quick_args=("--threads", "1", "--contexts", "64"),
    ),
    Section(
        "engine-vllm",
        "Engine against vLLM CPU (peer installed in bench/.envs)",
        "bench/engine/vllm_column.py",
        quick_args=("--requests", "8", "--new-tokens", "16", "--repeats", "1", "--poisson-requests", "8"),
    ),
    Section(
        "gateway",
        "Gateway against direct calls and LiteLLM (peer installed in bench/.envs)",
        "bench/gateway/run.py",
        args=("--with-litellm",),
        quick_args=("--requests", "200", "--rows", "10000"),
    ),
    Section(
        "gateway-metrics",
        "What metrics and tracing cost the gateway",
        "bench/gateway/tracing_overhead.py",
        quick_args=("--requests", "200", "--rounds", "1"),
    ),
    Section(
        "train",
        "Training loop against bare PyTorch; LoRA against full",
        "bench/train/run.py",
        args=("--output", "bench/out/train.md"),
        quick_args=("--quick",),
    ),
    Section(
        "evals",
        "Batched evaluation against one at a time",
        "bench/evals/run.py",
        quick_args=("--examples", "16", "--max-tokens", "8"),
    ),
    Section(
        "distill",
        "Distillation: student against teacher",
        "bench/optimise/distill.py",
        args=("--demo-teacher", "--threads", "1"),  # a teacher costly enough for drafting to pay
        quick_args=("--rows", "200", "--steps", "20", "--student-steps", "20"),
    ),
    Section(
        "speculative",
        "Speculative decoding with the distilled student",
        "bench/optimise/speculative.py",
        args=("--threads", "1", "--k", "4", "--prompts", "60"),
        quick_args=("--prompts", "8"),
    ),
    Section(
        "encoder",
        "Encoder classifier against the decoder on the intent task",
        "bench/optimise/encoder.py",
        quick_args=("--rows", "200", "--steps", "20", "--passes", "1"),
    ),
    Section(
        "quantize",
        "Quantisation: int8 and int4 against fp32",
        "bench/optimise/quantize.py",
        quick_args=(
            *("--rows", "200", "--steps", "20"),
            *("--layers", "2", "--requests", "2", "--concurrency", "8"),
        ),
    ),
    Section(
        "ui",
        "Dashboard pages on 100,000 request rows",
        "bench/ui/run.py",
        quick_args=("--rows", "10000", "--loads", "3"),
    ),
)


@dataclass(frozen=True)
class Outcome:
    section: Section
    returncode: int
    seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    output: str


Runner = Callable[[Section, bool], tuple[int, str]]


def run_process(section: Section, quick: bool) -> tuple[int, str]:
    """Run ``section`` in its own process from the repository root; (exit status, its output)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT)]))}
    try:
        done = subprocess.run(
            section.command(quick),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=section.timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or "") if isinstance(exc.stdout, str) else ""
        return 124, output + f"\n(timed out after {section.timeout_s:.0f} s)"
    return done.returncode, done.stdout + (f"\n--- stderr ---\n{done.stderr}" if done.returncode else "")


def select(names: Sequence[str] | None, skip: Sequence[str] | None) -> list[Section]:
    """The sections to run, in their order; ValueError naming an unknown section."""
    known = {section.name for section in SECTIONS}
    unknown = sorted((set(names or ()) | set(skip or ())) - known)
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    chosen = [section for section in SECTIONS if not names or section.name in names]
    return [section for section in chosen if section.name not in (skip or ())]


def run(sections: Sequence[Section], quick: bool, runner: Runner = run_process) -> list[Outcome]:
    outcomes = []
    for section in sections:
        print(f"== {section.name}: {section.title}", file=sys.stderr, flush=True)
        before, started = os.getloadavg(), time.monotonic()
        returncode, output = runner(section, quick)
        outcomes.append(
            Outcome(section, returncode, time.monotonic() - started, before, os.getloadavg(), output)
        )
        print(f"   exit {returncode} after {outcomes[-1].seconds:.0f} s", file=sys.stderr, flush=True)
    return outcomes


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in values)


def report(outcomes: Sequence[Outcome], quick: bool) -> str:
    """The markdown report: a summary table, then each section's output."""
    lines = [
        f"# llmops benchmarks{' (quick: smoke sizes, not for the record)' if quick else ''}",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}. Load average is 1 / 5 / 15 minutes.",
        "",
        "| section | exit | seconds | load before | load after |",
        "|---|---:|---:|---|---|",
    ]
    for outcome in outcomes:
        lines.append(
            f"| {outcome.section.name} | {outcome.returncode} | {outcome.seconds:.0f} | "
            f"{_load(outcome.load_before)} | {_load(outcome.load_after)} |"
        )
    for outcome in outcomes:
        command = " ".join(["python", outcome.section.script, *outcome.section.command(quick)[2:]]).strip()
        lines += ["", f"## {outcome.section.title}", "", f"`{command}`", ""]
        if outcome.returncode != 0:
            lines.append(f"**Failed with exit status {outcome.returncode}.**")
            lines.append("")
        lines += ["```", outcome.output[-TAIL_CHARS:].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None, runner: Runner = run_process) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes for every section")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these sections")
    parser.add_argument("--skip", nargs="+", metavar="NAME", help="leave these sections out")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown report to write")
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    args = parser.parse_args(argv)
    if args.list:
        for section in SECTIONS:
            print(f"{section.name:16} {section.title}")
        return 0
    try:
        sections = select(args.only, args.skip)
    except ValueError as exc:
        parser.error(str(exc))
    outcomes = run(sections, args.quick, runner)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report(outcomes, args.quick))
    print(f"report: {args.output}")
    return 0 if all(outcome.returncode == 0 for outcome in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
