"""The llmops demo: the whole loop on embedded defaults (SQLite, local files, in-process engine).

Every step runs a real `llmops` command against a fresh home in `.llmops/demo`, printed before it
runs, so what you see is what a user would type. Stages that are not built yet are named at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".llmops" / "demo"
PIPELINE = ROOT / "examples" / "support-desk" / "llmops.yaml"
ENV = {**os.environ, "LLMOPS_HOME": str(HOME), "LLMOPS_ACTOR": "demo"}

NOT_YET = ["the maintenance loop (drift or quality triggers retraining, canary, promote or roll back)"]


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def llmops(*args: str, expect: int = 0, quiet: bool = False) -> str:
    print(f"$ llmops {shlex.join(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "llmops", *args], env=ENV, text=True, capture_output=True)
    if not quiet:
        sys.stdout.write(done.stdout)
    if done.returncode != expect:
        sys.stdout.write(done.stdout if quiet else "")
        sys.stderr.write(done.stderr)
        raise SystemExit(f"demo step failed (exit {done.returncode}): llmops {shlex.join(args)}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited with code {process.returncode}; see {HOME}/*.log")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"{url} did not become ready in {seconds:.0f}s")


@contextlib.contextmanager
def background(name: str, *args: str, ready: str) -> Iterator[None]:
    """Run `llmops ARGS` in the background until the block ends; its output goes to HOME/NAME.log."""
    print(f"$ llmops {shlex.join(args)} &", flush=True)
    log = (HOME / f"{name}.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "llmops", *args], env=ENV, stdout=log, stderr=log)
    try:
        wait_ready(ready, process)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def new_key(name: str, role: str) -> str:
    created = json.loads(llmops("keys", "create", "--name", name, "--role", role, "--json", quiet=True))
    print(f"  {role} key {created['key'][:14]}... (shown once, stored only as an HMAC)")
    return str(created["key"])


def rows_of(dataset: str, count: int) -> list[dict[str, str]]:
    path = HOME / f"{dataset}.jsonl"
    llmops("data", "export", dataset, "-o", str(path), quiet=True)
    return [json.loads(line) for line in path.read_text().splitlines()[:count]]


def ask(base_url: str, key: str, prompts: list[str], *, show: int = 0) -> None:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=key)
    for i, prompt in enumerate(prompts):
        answer = client.completions.create(model="demo-intent", prompt=prompt, max_tokens=24, temperature=0)
        if i < show:
            print(f"  {prompt!r} -> {answer.choices[0].text!r} ({answer.usage.total_tokens} tokens)")


def show_metrics(url: str, key: str, prefixes: tuple[str, ...]) -> None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(prefixes):
            print(f"  {line}")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def drift_check(version: str, since: str) -> None:
    code = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmops",
            "monitor",
            "drift",
            "--version",
            version,
            "--reference",
            "intent-clean-train@1",
            "--since",
            since,
        ],
        env=ENV,
        text=True,
        capture_output=True,
    )
    print(f"$ llmops monitor drift --version {version} --reference intent-clean-train@1 --since {since}")
    sys.stdout.write(code.stdout)
    verdict = {0: "no drift", 1: "drifted"}.get(code.returncode, "error")
    print(f"  exit {code.returncode} ({verdict})")


def traffic_and_monitoring(gateway: str, consumer: str, developer: str) -> None:
    import openai

    default_from = now_iso()
    time.sleep(1)
    ask(f"{gateway}/v1", consumer, [r["prompt"] for r in rows_of("intent-clean-test", 80)], show=4)
    try:
        openai.OpenAI(base_url=f"{gateway}/v1", api_key="sk-llmops-not-a-key").models.list()
    except openai.AuthenticationError as exc:
        print(f"  a wrong key gets {exc.status_code}: {exc.message}")
    version = json.loads(llmops("models", "show", "demo-intent@production", "--json", quiet=True))
    ref = f"demo-intent@{version['version']}"
    time.sleep(1)  # the request log is written in batches
    drift_check(ref, default_from)
    shifted_from = now_iso()
    time.sleep(1)
    ask(f"{gateway}/v1", consumer, [r["prompt"] for r in rows_of("intent-shifted", 80)], show=2)
    time.sleep(1)  # the request log is written in batches
    drift_check(ref, shifted_from)
    print("  live gateway metrics:")
    show_metrics(
        f"{gateway}/metrics",
        developer,
        ("llmops_gateway_requests_total", "llmops_gateway_latency_seconds_count"),
    )
    llmops("requests", "search", "--limit", "3")


def serve_through_gateway() -> None:
    """The gateway starts empty; `llmops deploy apply` starts the replica, waits until it is ready and
    registers it with the gateway, which picks the deployment up from the store."""
    gateway_port = free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    gateway_config = HOME / "gateway.yaml"
    gateway_config.write_text(
        f"port: {gateway_port}\nallow_loopback_upstreams: true\nadmin_sync_s: 1\ndeployments: []\n"
    )
    deployment = HOME / "deployment.yaml"
    deployment.write_text(
        "name: demo-intent\n"
        "model: demo-intent@production\n"
        "replicas: {count: 1, min: 1, max: 2}\n"
        "resources: {threads: 1}\n"
        "drain: {grace_s: 10, deregister_wait_s: 1}\n"
        "gateway:\n  price: {free: true}\n"
    )
    consumer = new_key("demo-app", "consumer")
    developer = new_key("demo-ops", "developer")
    deployer = new_key("demo-deployer", "deployer")
    with background("gateway", "serve", "--config", str(gateway_config), ready=f"{gateway_url}/readyz"):
        access = ("--gateway", gateway_url, "--gateway-key", deployer)
        llmops("deploy", "apply", str(deployment), *access)
        try:
            traffic_and_monitoring(gateway_url, consumer, developer)
            llmops("deploy", "status", "demo-intent")
        finally:
            llmops("deploy", "delete", "demo-intent", *access)
    llmops("keys", "list")


def score_line(report: str, metric: str) -> str:
    return next((line for line in report.splitlines() if f"`{metric}`" in line), "(missing)")


def main() -> None:
    shutil.rmtree(HOME, ignore_errors=True)
    step("1. Create the embedded home (SQLite + artifact store) and migrate it")
    llmops("init")

    step("2-4. The support-desk pipeline: data, training, evaluation, gate and registration from one file")
    pipeline = str(PIPELINE)
    reports = str(HOME / "reports")
    llmops("pipeline", "dag", pipeline)
    llmops("pipeline", "run", pipeline, "--stage", "register", "--reports", reports)
    print("  run again, nothing changed: every stage is skipped, and says why")
    llmops("pipeline", "run", pipeline, "--stage", "register", "--reports", reports)
    # the pipeline moves `staging`; a first release has nothing serving to roll out from, so it is set
    # by hand (later versions reach production through the rollout controller)
    llmops("models", "alias", "set", "demo-intent", "production", "1", "--reason", "first release")
    gate = (HOME / "reports" / "pipeline.md").read_text()  # with every gate summary
    print("held-out exact match: " + score_line(gate, "exact_match"))
    llmops("data", "show", "intent-clean-train")

    step("5. Registry: the version, its lineage and its model card")
    llmops("models", "show", "demo-intent@production")
    llmops("models", "lineage", "demo-intent@production")
    llmops("models", "card", "demo-intent@production")

    step("6. Serve the production version, call it through the gateway with keys, watch metrics and drift")
    serve_through_gateway()

    step("7. The audit log records every change and verifies its hash chain")
    llmops("audit", "verify")

    step("Not built yet (coming in later stages)")
    for item in NOT_YET:
        print(f"  - {item}")


if __name__ == "__main__":
    main()
