"""The demo's second half: traffic shifts, monitoring notices, and the maintenance loop answers by itself.

Simulated users move to wording and products the model never saw (`--domain shifted`); their
feedback turns bad; drift is detected and an alert fires; `llmops loop once` curates what production
saw, fine-tunes the champion, gates it and rolls it out through the canary while users keep coming;
the before/after table is read from `llmops loop history --json`. Then a corrupted training set is
fed to a cycle, and the gate rejects it with production untouched.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from typing import Any

import yaml
from demo_common import ENV, EXAMPLE, HOME, llmops, llmops_json, now_iso, rows_of, step
from demo_users import Users

LOOP = EXAMPLE / "loop.yaml"
SHIFT_SECONDS = 75  # longer than the loop's trigger window (60 s), so the window holds only new traffic
PER_SECOND = 4.0


def version_of(ref: str) -> str:
    shown = llmops_json("models", "show", ref)
    assert isinstance(shown, dict)
    return f"{shown['name']}@{shown['version']}"


def the_shift(users: Users) -> list[dict[str, str]]:
    step("8. The traffic shifts: customers of a new product line write differently")
    llmops("data", "synth", "intent", "--name", "traffic-shifted", "--n", "1500", "--seed", "11",
           "--domain", "shifted", quiet=True)  # fmt: skip
    users.phase = "shifted, before"
    shifted = rows_of("traffic-shifted")
    for row in shifted[:3]:
        answer = users.visit(row)
        print(f"  {row['prompt']!r} -> {answer!r}\n      (wanted {row['completion']!r})")
    return shifted


def detected(users: Users, since: str) -> None:
    print(f"  users keep arriving ({PER_SECOND:g}/s) and rating; {SHIFT_SECONDS} s later:", flush=True)
    time.sleep(SHIFT_SECONDS)
    seen = users.tallies["shifted, before"]
    print(f"  users got the reply they wanted {seen.right}/{seen.asked} times ({seen.rated} rated it)")
    step("9. Monitoring notices: drift of the live prompts, an alert, and the feedback dropping")
    production = version_of("demo-intent@production")
    llmops("monitor", "drift", "--version", production, "--since", since, expect=1)
    for _ in range(15):  # the gateway checks drift every 5 s and alerts once it held for 4 s
        if llmops_json("monitor", "alerts", "--status", "firing", "--rule", "prompt-drift"):
            break
        time.sleep(2)
    llmops("monitor", "alerts", "--status", "firing")
    llmops("loop", "status", "--config", str(LOOP))


def the_loop(users: Users) -> dict[str, Any]:
    step("10. The maintenance loop: curate → retrain → gate → canary → promote, while users keep coming")
    args = ["loop", "once", "--config", str(LOOP)]
    print(f"$ llmops {shlex.join(args)}", flush=True)
    started = time.monotonic()
    users.phase = "shifted, during the loop"
    done = subprocess.run([sys.executable, "-m", "llmops", *args], env=ENV, text=True, capture_output=True)
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"the loop's cycle failed (exit {done.returncode})")
    print(f"  (the cycle took {time.monotonic() - started:.0f} s)")
    cycles = llmops_json("loop", "history", "--config", str(LOOP), "--limit", "1")
    assert isinstance(cycles, list) and cycles
    cycle: dict[str, Any] = cycles[0]
    if cycle["state"] != "promoted":
        raise SystemExit(f"the cycle ended {cycle['state']}, not promoted; see `llmops loop history`")
    llmops("rollout", "history", "demo-intent")
    return cycle


def _score(part: dict[str, Any]) -> list[str]:
    interval = f"[{part['low']:+.3f}, {part['high']:+.3f}]" if part.get("low") is not None else "-"
    return [f"{part['champion']:.3f}", f"{part['candidate']:.3f}", f"{part['improvement']:+.3f}", interval,
            str(part["n"])]  # fmt: skip


def summary_table(cycle: dict[str, Any], users: Users) -> None:
    step("11. Before and after (numbers from `llmops loop history --json` and the users' own answers)")
    evaluation = cycle["data"]["evaluation"]
    champion, candidate = cycle["data"]["champion"], cycle["data"]["candidate"]
    head = ["exact match", champion, candidate, "change", "95% interval", "n"]
    rows = [
        ["shifted domain (fresh slice of production traffic)", *_score(evaluation["fresh"])],
        [f"original domain ({evaluation['original']['suite']} suite)", *_score(evaluation["original"])],
    ]
    before, after = users.tallies["shifted, before"], users.tallies["shifted, after"]
    rows.append(["what users saw on shifted traffic", f"{before.share():.3f}", f"{after.share():.3f}",
                 f"{after.share() - before.share():+.3f}", "-", f"{before.asked}/{after.asked}"])  # fmt: skip
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for line in [head, ["-" * w for w in widths], *rows]:
        print("  " + " | ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))
    fresh = evaluation["fresh"]
    verdict = "excludes zero" if fresh["low"] > 0 else "does NOT exclude zero"
    print(f"  the shifted-domain interval {verdict}; the original domain's lower bound is "
          f"{evaluation['original']['low']:+.3f} (the gate allows down to -0.05)")  # fmt: skip


def sabotage() -> None:
    step("12. Sabotage: a corrupted training set reaches the loop; the gate stops it")
    before = version_of("demo-intent@production")
    original = rows_of("intent-clean-train@1")
    replies = sorted({row["completion"] for row in original})
    corrupted = HOME / "intent-clean-train-corrupted.jsonl"
    with corrupted.open("w") as out:  # every reply moved to the next intent's: a botched import
        for row in original:
            wrong = replies[(replies.index(row["completion"]) + 1) % len(replies)]
            out.write(json.dumps({"prompt": row["prompt"], "completion": wrong}) + "\n")
    llmops("data", "ingest", str(corrupted), "--name", "intent-clean-train")
    config = yaml.safe_load(LOOP.read_text())
    config["curation"]["replay"] = {"dataset": "intent-clean-train@2", "share": 0.8}
    for key in ("deployment_spec",):
        config[key] = str(EXAMPLE / config[key])
    config["retrain"]["recipe"] = str(EXAMPLE / config["retrain"]["recipe"])
    config["gate"]["suite"] = str(EXAMPLE / config["gate"]["suite"])
    sabotaged = HOME / "loop-sabotaged.yaml"
    sabotaged.write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"  {sabotaged.name}: loop.yaml with replay from intent-clean-train@2 (the corrupted version)")
    llmops("loop", "once", "--config", str(sabotaged), "--force")
    cycles = llmops_json("loop", "history", "--config", str(LOOP), "--limit", "1")
    assert isinstance(cycles, list)
    after = version_of("demo-intent@production")
    print(f"  cycle {cycles[0]['id'][:12]} ended {cycles[0]['state']}; production was {before}, is {after}"
          f" ({'untouched' if after == before else 'CHANGED'})")  # fmt: skip
    if cycles[0]["state"] not in ("rejected", "rolled_back") or after != before:
        raise SystemExit("the sabotaged candidate was not stopped")


def story(users: Users) -> None:
    since = now_iso()
    shifted = the_shift(users)
    with users.in_background(shifted, per_second=PER_SECOND):  # production traffic does not pause
        detected(users, since)
        cycle = the_loop(users)
    users.phase = "shifted, after"
    users.for_a_while(shifted, seconds=15, per_second=PER_SECOND)
    llmops("models", "show", "demo-intent@production")
    summary_table(cycle, users)
    sabotage()
