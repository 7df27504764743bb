"""What every part of the demo shares: the demo's home, and running `llmops` commands as a user would."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".llmops" / "demo"
EXAMPLE = ROOT / "examples" / "support-desk"
ENV = {**os.environ, "LLMOPS_HOME": str(HOME), "LLMOPS_ACTOR": "demo", "OMP_NUM_THREADS": "1"}


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def llmops(*args: str, expect: int | tuple[int, ...] = 0, quiet: bool = False) -> str:
    """Run `llmops ARGS`, printed first; stop the demo unless it exits with ``expect``."""
    print(f"$ llmops {shlex.join(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "llmops", *args], env=ENV, text=True, capture_output=True)
    if not quiet:
        sys.stdout.write(done.stdout)
    if done.returncode not in (expect if isinstance(expect, tuple) else (expect,)):
        sys.stdout.write(done.stdout if quiet else "")
        sys.stderr.write(done.stderr)
        raise SystemExit(f"demo step failed (exit {done.returncode}): llmops {shlex.join(args)}")
    return done.stdout


def llmops_json(*args: str) -> object:
    return json.loads(llmops(*args, "--json", quiet=True))


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
    created = llmops_json("keys", "create", "--name", name, "--role", role)
    assert isinstance(created, dict)
    print(f"  {role} key {created['key'][:14]}... (shown once, stored only as an HMAC)")
    return str(created["key"])


def rows_of(dataset: str, count: int | None = None) -> list[dict[str, str]]:
    path = HOME / f"{dataset.replace('@', '-')}.jsonl"
    llmops("data", "export", dataset, "-o", str(path), quiet=True)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return rows if count is None else rows[:count]


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
