"""`llmops replica` on Intel's OpenMP runtime: chosen at start-up by re-executing once, switchable,
and answering exactly as on torch's GNU runtime."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import httpx
import pytest
from tests.engine.engine_factories import save_chat_model
from tests.reliability.harness import start_model_replica

from llmops.engine.openmp_runtime import (
    LIBRARY,
    SWITCH_ENV,
    intel_library,
    loaded_runtime,
    preload_environment,
    started_as_cli,
)
from llmops.errors import InvalidInput

ON_X86_LINUX = sys.platform.startswith("linux") and platform.machine() == "x86_64"


def test_the_environment_preloads_the_library_once_and_keeps_what_was_there(tmp_path: Path) -> None:
    library = tmp_path / "lib" / LIBRARY
    env = preload_environment({"LD_PRELOAD": "/opt/other.so", "PATH": "/bin"}, library)
    assert env is not None
    assert env["LD_PRELOAD"] == f"{library}:/opt/other.so" and env["PATH"] == "/bin"
    assert env["KMP_BLOCKTIME"] == "1"
    assert preload_environment({**env}, library) is None  # already preloaded: no second restart
    kept = preload_environment({"KMP_BLOCKTIME": "200"}, library)
    assert kept is not None and kept["KMP_BLOCKTIME"] == "200"


def test_gnu_or_no_library_changes_nothing_and_a_bad_choice_names_the_variable(tmp_path: Path) -> None:
    library = tmp_path / LIBRARY
    assert preload_environment({SWITCH_ENV: "gnu"}, library) is None
    assert preload_environment({}, None) is None
    with pytest.raises(InvalidInput) as refused:
        preload_environment({SWITCH_ENV: "llvm"}, library)
    assert refused.value.param == SWITCH_ENV and "intel, gnu" in str(refused.value)


def test_only_the_command_itself_is_ever_replaced() -> None:
    assert started_as_cli(["/venv/bin/llmops", "replica"])
    assert started_as_cli(["/src/llmops/__main__.py", "replica"])
    assert not started_as_cli(["/venv/bin/pytest", "tests"])
    assert not started_as_cli([])


def test_the_loaded_runtime_is_read_from_the_process_maps(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(f"7f00 r-xp /venv/lib/{LIBRARY}\n7f01 r-xp /usr/lib/libgomp.so.1\n")
    assert loaded_runtime(maps) == "intel"
    maps.write_text("7f01 r-xp /venv/torch/lib/libgomp.so.1\n")
    assert loaded_runtime(maps) == "gnu"
    assert loaded_runtime(tmp_path / "absent") == "unknown"


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The engine tests' tiny Llama with its tokenizer: what ``llmops replica`` serves for real."""
    return save_chat_model(tmp_path_factory.mktemp("openmp-model"))


def _mapped(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def _greedy(url: str) -> dict[str, object]:
    body = {
        "model": "support-bot",
        "prompt": "hello world",
        "max_tokens": 12,
        "temperature": 0,
        "logprobs": 1,
    }
    answer = httpx.post(url + "/v1/completions", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    choice = answer.json()["choices"][0]
    return {"text": choice["text"], "tokens": choice["logprobs"]["tokens"]}


@pytest.mark.slow
@pytest.mark.skipif(not ON_X86_LINUX, reason="the intel-openmp wheel exists for x86-64 Linux only")
def test_a_replica_runs_on_intel_openmp_and_answers_as_on_gnu(
    chat_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert intel_library() is not None, "the serve extra installs intel-openmp on x86-64 Linux"
    intel = start_model_replica(chat_model_dir, "intel")
    try:
        assert LIBRARY in _mapped(intel.pid)  # the same PID, re-executed with the library preloaded
        on_intel = _greedy(intel.url)
    finally:
        intel.stop()
    monkeypatch.setitem(os.environ, SWITCH_ENV, "gnu")
    gnu = start_model_replica(chat_model_dir, "gnu")
    try:
        assert LIBRARY not in _mapped(gnu.pid) and "libgomp" in _mapped(gnu.pid)
        assert _greedy(gnu.url) == on_intel
    finally:
        gnu.stop()
