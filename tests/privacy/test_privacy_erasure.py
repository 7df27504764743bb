"""Erasure end to end: a user's requests flow into a dataset and a LoRA fine-tune; after
`llmops privacy erase`, nothing of theirs is left in the database or any artifact."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select

from llmops.data.operations import from_request_log
from llmops.data.versions import DatasetStore
from llmops.registry import Registry
from llmops.store import audit
from llmops.store.home import Home
from llmops.store.schema import GatewayRequest, RequestFeedback

MARKERS = ("zebra-quartz-7731", "velvet-comet-9924")
BASE = """
kind: pretrain
name: base
model: {architecture: llama, hidden_size: 32, intermediate_size: 64, num_layers: 1, num_heads: 2,
        num_kv_heads: 1, max_position_embeddings: 128}
data: {train: intent, schema: prompt_completion}
tokenizer: {source: train, vocab_size: 300}
optim: {lr: 3.0e-3, warmup_steps: 1, max_steps: 3, batch_size: 8, seed: 0}
max_seq_len: 64
"""
LORA = """
kind: lora
name: tuned
model: {base: base@1}
data: {train: support-log, schema: prompt_completion}
tokenizer: {source: base}
lora: {r: 2, alpha: 4, target_modules: [q_proj]}
optim: {lr: 1.0e-2, warmup_steps: 1, max_steps: 3, batch_size: 4, seed: 0}
max_seq_len: 64
"""


def _log(home: Home, user: str, prompt: str, completion: str) -> str:
    request_id = uuid.uuid4().hex
    with home.store.transaction() as session:
        session.add(
            GatewayRequest(
                id=request_id,
                ts=datetime.now(UTC),
                key_id="key_x",
                user=user,
                endpoint="chat",
                deployment="bot",
                model_version="base@1",
                stream=False,
                prompt=prompt,
                completion=completion,
                prompt_tokens=5,
                completion_tokens=5,
                latency_ms=3.0,
                status=200,
                cost_usd=0.0,
                cache_hit=False,
            )
        )
    return request_id


def _everything_written(home: Home) -> str:
    """Every row of every table as text, plus every artifact file's bytes."""
    parts = []
    with home.store.engine.connect() as conn:
        metadata = MetaData()
        metadata.reflect(conn)
        for table in metadata.sorted_tables:
            parts += [repr(tuple(row)) for row in conn.execute(table.select())]
    for file in home.artifacts.root.rglob("*"):
        if file.is_file():
            parts.append(file.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(parts)


@pytest.mark.slow
def test_erase_removes_a_subject_everywhere(home: Home, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("data", "synth", "intent", "--name", "intent", "--n", "60").code == 0
    (tmp_path / "base.yaml").write_text(BASE)
    assert cli("train", "run", tmp_path / "base.yaml", "--threads", "1").code == 0
    alice = [_log(home, "alice", f"My code is {m}, where is my order?", "On its way.") for m in MARKERS]
    for i in range(6):
        _log(home, "bob", f"Question {i} about shipping", "Soon.")
    with home.store.transaction() as session:
        session.add(
            RequestFeedback(
                id=uuid.uuid4().hex,
                request_id=alice[0],
                model_version="base@1",
                score=1.0,
                comment=f"thanks {MARKERS[0]}",
                created_at=datetime.now(UTC),
            )
        )
    log_set = from_request_log(DatasetStore.from_home(home), "support-log")
    assert log_set.num_rows == 8
    (tmp_path / "lora.yaml").write_text(LORA)
    assert cli("train", "run", tmp_path / "lora.yaml", "--threads", "1").code == 0
    assert all(m in _everything_written(home) for m in MARKERS)

    report = cli("privacy", "report", "--subject", "alice")
    assert report.code == 0 and "requests: 2" in report.out and "support-log@1: 2 rows" in report.out
    assert "tuned@1" in report.out

    erased = cli("privacy", "erase", "--subject", "alice", "--reason", "ticket 42")
    assert erased.code == 0, erased.err
    assert "support-log@1 replaced by support-log@2" in erased.out

    written = _everything_written(home)
    assert not any(m in written for m in MARKERS), "no trace of the subject's data remains"
    datasets = DatasetStore.from_home(home)
    assert datasets.get("support-log@2").num_rows == 6
    assert datasets.get("support-log@1").stats["erased"] is True  # type: ignore[index]
    tags = Registry.from_home(home).get("tuned@1").tags
    assert tags["privacy/affected"]["datasets"] == ["support-log@1"]
    with home.store.read() as session:
        assert session.execute(select(GatewayRequest).where(GatewayRequest.user == "alice")).first() is None
        assert audit.verify(session).ok
        events = [e for e in audit.iter_events(session) if e.action == "privacy.erase"]
    assert len(events) == 1 and "alice" not in repr(events[0])
    assert cli("privacy", "erase", "--subject", "alice").code == 2, "nothing left to erase"


def test_datasets_from_the_log_read_encrypted_payloads(
    sqlite_home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    from llmops.security.payload_crypto import PayloadCipher
    from llmops.settings import reset_settings

    monkeypatch.setenv("LLMOPS_PAYLOAD_KEYS", Fernet.generate_key().decode())
    reset_settings()
    cipher = PayloadCipher.from_settings()
    assert cipher is not None
    with sqlite_home.store.transaction() as session:
        session.add(
            GatewayRequest(
                id=uuid.uuid4().hex,
                ts=datetime.now(UTC),
                key_id="k",
                user="carol",
                endpoint="chat",
                deployment="bot",
                model_version="m@1",
                stream=False,
                prompt=cipher.encrypt("secret question"),
                completion=cipher.encrypt("secret answer"),
                prompt_tokens=2,
                completion_tokens=2,
                latency_ms=1.0,
                status=200,
                cost_usd=0.0,
                cache_hit=False,
            )
        )
    built = from_request_log(DatasetStore.from_home(sqlite_home), "from-log")
    rows = DatasetStore.from_home(sqlite_home).rows(built)
    assert rows[0]["prompt"] == "secret question" and rows[0]["completion"] == "secret answer"
