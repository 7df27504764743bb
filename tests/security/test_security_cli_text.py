"""User-controlled text in the operator's CLI is shown as written: never read as rich markup (a prompt
holding ``[/bold]`` used to crash ``llmops requests search``; ``[red]...[/red]`` vanished), and an
encrypted payload reads ``[encrypted]`` instead of a blank cell. Also: expired keys list as expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from tests.conftest import CliRunner

from llmops.data.versions import DatasetStore
from llmops.registry import Registry
from llmops.security.keys import KeySpec, KeyStore
from llmops.security.payload_crypto import HIDDEN, PayloadCipher
from llmops.store.home import Home, open_home
from llmops.store.schema import GatewayRequest, RequestFeedback
from llmops.tracking import Tracker

CLOSER = "[/bold]"  # unbalanced: rich raises MarkupError when it reads it as markup
STYLED = "[red]alert[/red]"  # balanced: rich would swallow the tags and show 'alert'
HOSTILE = f"{CLOSER} {STYLED}"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _request(request_id: str, prompt: str | None, completion: str | None, minutes: int) -> GatewayRequest:
    return GatewayRequest(
        id=request_id, ts=T0 + timedelta(minutes=minutes), key_id="key_a", user=HOSTILE, endpoint="chat",
        deployment="support-bot", model_version="support-bot@1", arm="stable", replica="r1",
        shadow_of=None, stream=False, prompt=prompt, completion=completion, prompt_tokens=3,
        completion_tokens=4, ttft_ms=20.0, latency_ms=220.0, status=200, cost_usd=0.0,
        cache_hit=False, error=f"flagged {HOSTILE}",
    )  # fmt: skip


def _log_requests(home: Home) -> None:
    sealed = PayloadCipher([Fernet.generate_key()])  # a key this CLI does not have
    with home.store.transaction() as session:
        session.add(_request("req-hostile", f"please {HOSTILE} now", f"answer {HOSTILE}", 0))
        session.add(_request("req-sealed", sealed.encrypt("secret prompt"), sealed.encrypt("secret"), 1))
        session.add(
            RequestFeedback(
                id="fb_1", request_id="req-hostile", model_version="support-bot@1", key_id="key_a",
                score=None, thumbs="down", comment=f"bad {HOSTILE}", corrected_output=f"fixed {HOSTILE}",
                created_at=T0,
            )
        )  # fmt: skip


def test_requests_search_and_show_print_hostile_text_literally(cli: CliRunner) -> None:
    _log_requests(open_home())

    found = cli("requests", "search")
    assert found.code == 0, found.err
    assert f"please {HOSTILE} now" in found.out
    # the row encrypted with a key this process lacks is marked, not left blank
    sealed_line = next(line for line in found.out.splitlines() if "req-sealed" in line)
    assert HIDDEN in sealed_line

    shown = cli("requests", "show", "req-hostile")
    assert shown.code == 0, shown.err
    for text in (f"answer {HOSTILE}", f"bad {HOSTILE}", f"fixed {HOSTILE}", f"flagged {HOSTILE}"):
        assert text in shown.out, text
    assert HOSTILE in shown.out.split("user", 1)[1]  # the table row of the request's `user`

    sealed = cli("requests", "show", "req-sealed")
    assert sealed.code == 0 and f"prompt: {HIDDEN}" in sealed.out


def test_registry_data_and_runs_print_hostile_text_literally(cli: CliRunner, tiny_model_dir: Path) -> None:
    home = open_home()
    DatasetStore.from_home(home).commit("support", [{"text": "hi"}], "text", transform={"name": HOSTILE})
    with Tracker.from_home(home).start_run("pretrain", HOSTILE, params={"note": HOSTILE}) as run:
        run.log_metric("loss", 1.0, step=1)
    registry = Registry.from_home(home)
    version = registry.register(tiny_model_dir, "tiny", description=HOSTILE, source_run_id=run.id)
    registry.set_alias("tiny", "production", version.version, HOSTILE)

    checks: list[tuple[tuple[str, ...], str]] = [
        (("models", "show", "tiny@production"), HOSTILE),
        (("models", "list"), "production"),
        (("data", "list"), HOSTILE),
        (("data", "show", "support"), HOSTILE),
        (("runs", "list"), HOSTILE),
        (("runs", "show", run.id), HOSTILE),
        (("audit", "list"), HOSTILE),
    ]
    for args, expected in checks:
        result = cli(*args)
        assert result.code == 0, (args, result.err)
        assert expected in result.out, (args, result.out)


def test_keys_list_prints_hostile_names_and_marks_expired_keys(cli: CliRunner) -> None:
    keys = KeyStore.from_home(open_home())
    now = datetime.now(UTC)
    live = keys.create(KeySpec(name=HOSTILE, expires_at=now + timedelta(days=1))).record
    expired = keys.create(KeySpec(name="old-app", expires_at=now - timedelta(minutes=1))).record
    revoked = keys.create(KeySpec(name="gone")).record
    keys.revoke(revoked.id)

    listed = cli("keys", "list")
    assert listed.code == 0, listed.err
    states: dict[str, Any] = {
        record.id: next(line for line in listed.out.splitlines() if record.id in line).split()[-2]
        for record in (live, expired, revoked)
    }
    assert states == {live.id: "active", expired.id: "expired", revoked.id: "revoked"}
    assert HOSTILE in listed.out

    active = cli("keys", "list", "--active")
    assert live.id in active.out and expired.id not in active.out and revoked.id not in active.out
