from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmops.errors import InvalidInput, NotFound
from llmops.registry import Registry
from llmops.store import audit
from llmops.store.home import Home


def test_register_versions_and_idempotence(home: Home, tiny_model_dir: Path, tmp_path: Path) -> None:
    registry = Registry.from_home(home)
    v1 = registry.register(tiny_model_dir, "m", description="first")
    assert (v1.version, v1.format) == (1, "hf-causal-lm")
    assert registry.register(tiny_model_dir, "m").version == 1, "same digest returns the existing version"
    other = shutil.copytree(tiny_model_dir, tmp_path / "other")
    (other / "generation_config.json").write_text("{}")
    assert registry.register(other, "m").version == 2
    assert registry.get("m").version == 2
    assert registry.get("m@1").digest == v1.digest
    with home.store.read() as session:
        actions = [e.action for e in audit.iter_events(session)]
    assert actions == ["model.register", "model.register"]


def test_local_path_is_verified(home: Home, tiny_model_dir: Path) -> None:
    registry = Registry.from_home(home)
    registry.register(tiny_model_dir, "m")
    path = registry.local_path("m@1")
    assert (path / "config.json").exists() and (path / "model.safetensors").exists()


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".pkl", ".ckpt"])
def test_pickle_weights_are_refused_and_nothing_registered(
    sqlite_home: Home, tiny_model_dir: Path, tmp_path: Path, suffix: str
) -> None:
    bad = shutil.copytree(tiny_model_dir, tmp_path / "bad")
    (bad / f"pytorch_model{suffix}").write_bytes(b"\x80\x04planted")
    registry = Registry.from_home(sqlite_home)
    with pytest.raises(InvalidInput, match="safetensors"):
        registry.register(bad, "m")
    assert registry.list_models() == []


def test_bad_paths_are_refused(sqlite_home: Home, tmp_path: Path) -> None:
    registry = Registry.from_home(sqlite_home)
    with pytest.raises(InvalidInput, match="does not exist"):
        registry.register(tmp_path / "missing", "m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match=r"config\.json"):
        registry.register(tmp_path / "empty", "m")
    assert registry.list_models() == []


def test_aliases_and_not_found_suggestions(home: Home, tiny_model_dir: Path) -> None:
    registry = Registry.from_home(home)
    registry.register(tiny_model_dir, "support-bot")
    move = registry.set_alias("support-bot", "production", 1, reason="launch")
    assert (move.before, move.after) == (None, 1)
    assert registry.get("support-bot@production").version == 1
    assert registry.get("support-bot@production").aliases == ("production",)
    with pytest.raises(NotFound, match="support-bot"):
        registry.get("suport-bot@production")
    with pytest.raises(NotFound, match="production"):
        registry.get("support-bot@prodution")
    with pytest.raises(NotFound, match=r"versions: \[1\]"):
        registry.get("support-bot@7")
    with pytest.raises(NotFound):
        registry.set_alias("support-bot", "staging", 9)
    with pytest.raises(InvalidInput):
        registry.get("bad name!")


MOVER = """
import sys
from llmops.registry import Registry
from llmops.settings import Settings
from llmops.store.home import open_home
home = open_home(Settings(home=sys.argv[1], database_url=sys.argv[2]), migrate=False)
registry = Registry.from_home(home)
for i in range(int(sys.argv[4])):
    registry.set_alias("m", "production", 1 + (i + int(sys.argv[3])) % 2, reason=f"mover {sys.argv[3]} #{i}")
"""


@pytest.mark.slow
def test_concurrent_alias_moves_are_serialised_and_all_audited(
    home: Home, tiny_model_dir: Path, tmp_path: Path
) -> None:
    registry = Registry.from_home(home)
    registry.register(tiny_model_dir, "m")
    other = shutil.copytree(tiny_model_dir, tmp_path / "v2")
    (other / "generation_config.json").write_text("{}")
    registry.register(other, "m")
    url = home.store.url
    moves = 15
    procs = [
        subprocess.Popen([sys.executable, "-c", MOVER, str(tmp_path / "h"), url, str(k), str(moves)])
        for k in range(2)
    ]
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
    with home.store.read() as session:
        events = [e for e in audit.iter_events(session) if e.action == "model.alias.set"]
        report = audit.verify(session)
    assert report.ok, report.problems
    assert len(events) == 2 * moves, "every move is audited, none lost"
    # Serialised: each move's `before` is exactly the previous move's `after`.
    for prev, cur in itertools.pairwise(events):
        assert cur.before == prev.after
    assert registry.get("m@production").version == events[-1].after["version"]  # type: ignore[index]


def test_malformed_safetensors_is_refused_with_small_memory(
    sqlite_home: Home, tiny_model_dir: Path, tmp_path: Path
) -> None:
    bad = shutil.copytree(tiny_model_dir, tmp_path / "bad")
    weights = bad / "model.safetensors"
    weights.chmod(0o644)
    data = bytearray(weights.read_bytes())
    data[:8] = (2**60).to_bytes(8, "little")  # a header length no file can have
    weights.write_bytes(bytes(data))
    with pytest.raises(InvalidInput, match="header"):
        Registry.from_home(sqlite_home).register(bad, "m")
    assert Registry.from_home(sqlite_home).list_models() == []


def test_pickle_payload_is_refused_and_never_runs(
    sqlite_home: Home, tiny_model_dir: Path, tmp_path: Path
) -> None:
    import pickle

    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (str(marker),))  # type: ignore[return-value]

    bad = shutil.copytree(tiny_model_dir, tmp_path / "bad")
    (bad / "extra.safetensors").write_bytes(pickle.dumps(Payload()))  # a pickle wearing a safe name
    with pytest.raises(InvalidInput):
        Registry.from_home(sqlite_home).register(bad, "m")
    assert not marker.exists()


def test_remote_code_needs_the_allow_list(sqlite_home: Home, tiny_model_dir: Path, tmp_path: Path) -> None:
    import json

    from llmops.errors import Forbidden

    remote = shutil.copytree(tiny_model_dir, tmp_path / "remote")
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (remote / "config.json").write_text(json.dumps(config))
    (remote / "modeling_evil.py").write_text("import os\nos.system('touch /tmp/evil')\n")
    with pytest.raises(Forbidden, match="remote"):
        Registry.from_home(sqlite_home).register(remote, "evil")
    allowed = Registry(sqlite_home.store, sqlite_home.artifacts, "tester", frozenset({"evil"}))
    assert allowed.register(remote, "evil").version == 1
