"""`llmops deploy` with real processes: apply → ready → served through the gateway; a SIGKILLed
replica is restarted and readmitted; a restarted supervisor adopts instead of starting twins;
faults are refused with what failed and nothing left running."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.conftest import CliRunner

from llmops.deploy.local import LocalTarget
from llmops.deploy.processes import ReplicaRecord
from llmops.deploy.target import DeploymentStatus
from llmops.registry.client import Registry
from llmops.store.home import Home

pytestmark = pytest.mark.slow


def _spec_file(tmp_path: Path, **changes: Any) -> Path:
    spec: dict[str, Any] = {
        "name": "support-bot",
        "model": "support-bot@production",
        "resources": {"threads": 1},
        "readiness": {"timeout_s": 90},
        "liveness": {"interval_s": 0.5},
        "restart": {"backoff_initial_s": 0.2},
        "drain": {"grace_s": 5, "deregister_wait_s": 0.6},
        "gateway": {"price": {"free": True}},
        **changes,
    }
    path = tmp_path / "deployment.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _ask(url: str, key: str) -> httpx.Response:
    body = {
        "model": "support-bot",
        "messages": [{"role": "user", "content": "where is my order"}],
        "max_tokens": 3,
    }
    return httpx.post(
        f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def _wait(check: Any, what: str, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _records(home: Home) -> list[ReplicaRecord]:
    run = LocalTarget(home).lifecycle.live("support-bot")
    assert run is not None
    return [ReplicaRecord.model_validate(r) for r in run.data.get("replicas", [])]


def _ready(status: DeploymentStatus) -> list[Any]:
    return [r for r in status.replicas if r.state == "ready"]


def test_apply_kill_adopt_delete(
    deploy_home: Home, gateway: tuple[str, str, str], cli: CliRunner, tmp_path: Path
) -> None:
    url, deployer, consumer = gateway
    spec = _spec_file(tmp_path)
    target = LocalTarget(deploy_home, gateway_url=url, gateway_key=deployer)
    try:
        applied = cli("deploy", "apply", spec, "--gateway", url, "--gateway-key", deployer)
        assert applied.code == 0, applied.err
        (replica,) = _ready(target.status("support-bot"))
        assert replica.model_version == "support-bot@1" and replica.pid
        answer = _wait(
            lambda: (r := _ask(url, consumer)).status_code == 200 and r, "a request through the gateway"
        )
        assert answer.json()["choices"][0]["message"]["content"] is not None
        shown = cli("deploy", "status", "support-bot")
        assert shown.code == 0 and "ready" in shown.out and str(replica.pid) in shown.out

        os.kill(replica.pid, signal.SIGKILL)  # the supervisor restarts it and the gateway readmits it
        back = _wait(
            lambda: [r for r in _ready(target.status("support-bot")) if r.pid != replica.pid], "the restart"
        )
        assert back[0].restarts == 1 and back[0].port == replica.port
        _wait(lambda: _ask(url, consumer).status_code == 200, "readmission")

        supervisor = target.lifecycle.live("support-bot")
        assert supervisor is not None and supervisor.lease_holder
        os.kill(int(supervisor.lease_holder.split(":")[1]), signal.SIGKILL)
        adopted_pid = back[0].pid
        scaled = cli("deploy", "scale", "support-bot", "1", "--gateway", url, "--gateway-key", deployer)
        assert scaled.code == 0, scaled.err
        (still,) = target.status("support-bot").replicas
        assert still.pid == adopted_pid, "the new supervisor adopted the running replica, no twin"
        assert _ask(url, consumer).status_code == 200

        deleted = cli("deploy", "delete", "support-bot", "--gateway", url, "--gateway-key", deployer)
        assert deleted.code == 0, deleted.err
        assert _wait(
            lambda: _ask(url, consumer).status_code == 404, "the deployment to leave the gateway", 10
        )
        assert _wait(lambda: not _replica_processes(deploy_home), "every replica to stop", 15)
    finally:
        _stop_everything(target)


def _replica_processes(home: Home) -> list[int]:
    """Pids of `llmops replica` processes of this home still running (what a test must not leave)."""
    wanted = f"LLMOPS_HOME={home.settings.resolved_home()}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"replica" in command and wanted in environ and state != "Z":
            found.append(int(entry.name))
    return found


def _stop_everything(target: LocalTarget) -> None:
    """Leave nothing running, whatever the test's outcome."""
    run = target.lifecycle.live("support-bot") or target.lifecycle.latest("support-bot")
    if run is None:
        return
    if run.lease_holder:
        with_pid = int(run.lease_holder.split(":")[1])
        with contextlib.suppress(ProcessLookupError):
            os.kill(with_pid, signal.SIGKILL)
    for pid in _replica_processes(target.home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_faults_name_what_failed_and_leave_nothing_running(
    deploy_home: Home, gateway: tuple[str, str, str], cli: CliRunner, tmp_path: Path
) -> None:
    url, deployer, _ = gateway
    unknown = cli("deploy", "apply", _spec_file(tmp_path, model="nope@production"), "--gateway", url,
                  "--gateway-key", deployer)  # fmt: skip
    assert unknown.code == 2 and "nope" in unknown.err
    target = LocalTarget(deploy_home)
    # the supervisor ends its run after it answered the CLI (under load, a moment later): bounded wait
    _wait(lambda: target.lifecycle.live("support-bot") is None, "the failed first apply ended its run", 60)

    away = cli(
        "deploy", "apply", _spec_file(tmp_path), "--gateway", "http://127.0.0.1:9", "--gateway-key", "k"
    )
    assert away.code == 2 and "http://127.0.0.1:9" in away.err and "unreachable" in away.err

    bad = cli("deploy", "apply", _spec_file(tmp_path, replicas={"count": 1, "maxx": 3}))
    assert bad.code == 2 and "field 'replicas.maxx'" in bad.err and "Did you mean: max" in bad.err

    never = _spec_file(tmp_path, readiness={"timeout_s": 3, "path": "/never"})
    failed = cli("deploy", "apply", never, "--gateway", url, "--gateway-key", deployer)
    try:
        assert failed.code == 2 and "never became ready" in failed.err and "/never" in failed.err
        # the supervisor records the failure after it answered the CLI: wait for it, bounded
        _wait(
            lambda: getattr(target.lifecycle.latest("support-bot"), "state", None) == "failed", "failed", 60
        )
        assert _replica_processes(deploy_home) == [], "the replica that never became ready was stopped"

        failed_gates = {
            "passed": False,
            "gates": [{"name": "acc", "passed": False, "reason": "acc 0.1 < 0.5"}],
        }
        Registry.from_home(deploy_home).merge_tags("support-bot@1", {"gates/smoke": failed_gates})
        gated = cli("deploy", "apply", _spec_file(tmp_path), "--gateway", url, "--gateway-key", deployer)
        assert gated.code == 2 and "suite 'smoke' failed: acc 0.1 < 0.5" in gated.err, gated.err
        assert _replica_processes(deploy_home) == []
    finally:
        _stop_everything(target)
