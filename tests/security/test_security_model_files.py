"""Model-file safety: planted pickles, malformed safetensors headers, remote code, manifests."""

from __future__ import annotations

import json
import pathlib
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from llmops.errors import Forbidden, IntegrityError, InvalidInput
from llmops.security.model_files import (
    check_manifest,
    check_model_dir,
    check_trust_remote_code,
    check_weight_file,
    sniff_pickle,
)
from llmops.security.safetensors_header import read_safetensors_header
from llmops.store.artifacts import Manifest, ManifestEntry, sha256_file


class Planted:
    """Unpickling this creates ``marker``: the proof that loading ran attacker code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any unpickling in this process during the test fails the test."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the code under test unpickled something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)


def write_safetensors(path: Path, header: dict[str, Any], data: bytes, *, length: int | None = None) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def f32(name: str, shape: list[int], start: int) -> dict[str, Any]:
    size = 4 * int(np.prod(shape))
    return {name: {"dtype": "F32", "shape": shape, "data_offsets": [start, start + size]}}


def test_the_planted_payload_is_live_in_a_separate_process(tmp_path: Path) -> None:
    """Sanity check of the fixture: unpickled (in a child process) it does create its marker."""
    marker = tmp_path / "LIVE_MARKER"
    payload = tmp_path / "live.pkl"
    payload.write_bytes(pickle.dumps(Planted(marker), protocol=4))
    code = "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())"
    subprocess.run([sys.executable, "-c", code, str(payload)], check=True, cwd=Path(__file__).parent)
    assert marker.exists()


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.safetensors", "weights.data", "model.PT"])
def test_planted_pickle_is_refused_and_never_runs(tmp_path: Path, no_unpickling: None, name: str) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(Planted(marker), protocol=4))
    with pytest.raises(InvalidInput, match="pickle") as caught:
        check_weight_file(path)
    assert name in caught.value.message
    assert not marker.exists()


def test_torch_zip_checkpoints_are_sniffed(tmp_path: Path, no_unpickling: None) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / "checkpoint"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(Planted(marker), protocol=2))
    assert sniff_pickle(path) == "it is a zip archive holding pickles (archive/data.pkl)"
    with pytest.raises(InvalidInput, match="zip archive holding pickles"):
        check_weight_file(path)
    assert not marker.exists()


def test_model_dir_with_one_planted_file_is_refused(tmp_path: Path, no_unpickling: None) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    save_file({"w": np.zeros((2, 3), dtype=np.float32)}, str(model / "model.safetensors"))
    (model / "config.json").write_text("{}")
    assert [h.tensors[0].name for h in check_model_dir(model)] == ["w"]
    (model / "sub" / "extra").write_bytes(pickle.dumps(Planted(tmp_path / "MARKER")))
    with pytest.raises(InvalidInput, match="extra"):
        check_model_dir(model)
    assert not (tmp_path / "MARKER").exists()


def test_symlinks_out_of_the_model_dir_are_refused(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(model / "model.safetensors"))
    (tmp_path / "outside.json").write_text("{}")
    (model / "config.json").symlink_to(tmp_path / "outside.json")
    with pytest.raises(InvalidInput, match="links outside"):
        check_model_dir(model)


def test_real_safetensors_files_validate(tmp_path: Path) -> None:
    tensors: dict[str, np.ndarray] = {
        "a": np.ones((4, 4), dtype=np.float16),
        "b": np.arange(6, dtype=np.int64),
        "empty": np.zeros((0, 3)),
    }
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path), metadata={"format": "np"})
    header = read_safetensors_header(path)
    assert {t.name: (t.dtype, t.shape) for t in header.tensors} == {
        "a": ("F16", (4, 4)),
        "b": ("I64", (6,)),
        "empty": ("F64", (0, 3)),
    }
    assert header.metadata == {"format": "np"}
    assert header.data_size == 4 * 4 * 2 + 6 * 8


def test_absurd_header_length_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "huge.safetensors", f32("w", [1], 0), b"\0" * 4, length=2**60)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match="header length 1152921504606846976 exceeds"):
            check_weight_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_header_length_past_the_end_of_the_file(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "short.safetensors", f32("w", [1], 0), b"\0" * 4, length=10_000)
    with pytest.raises(InvalidInput, match="runs past the end"):
        read_safetensors_header(path)


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        (f32("w", [4], 0), b"\0" * 8, "ends at byte 16, beyond the 8-byte data section"),
        ({**f32("a", [2], 0), **f32("b", [2], 4)}, b"\0" * 12, "'a' and 'b' overlap"),
        (
            {**f32("a", [1], 0), **f32("b", [1], 8)},
            b"\0" * 12,
            "bytes 4-8 of the data section belong to no tensor",
        ),
        (f32("w", [1], 0), b"\0" * 12, "8 trailing bytes"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4, "needs 8 bytes"),
        ({"w": {"dtype": "PICKLE", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "unknown dtype"),
        ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "non-negative"),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 4, "begin <= end"),
        ({"w": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, "exactly the keys"),
        ({"__metadata__": {"n": 1}, **f32("w", [1], 0)}, b"\0" * 4, "strings to strings"),
    ],
)
def test_malformed_headers_are_refused_with_the_reason(
    tmp_path: Path, header: dict[str, Any], data: bytes, message: str
) -> None:
    path = write_safetensors(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(InvalidInput, match="not a valid safetensors file") as caught:
        check_weight_file(path)
    assert message in caught.value.message


def test_duplicate_keys_and_non_json_headers(tmp_path: Path) -> None:
    raw = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": {"dtype": "F32"}}'
    path = tmp_path / "dup.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4)
    with pytest.raises(InvalidInput, match="duplicate key 'w'"):
        read_safetensors_header(path)
    path.write_bytes(struct.pack("<Q", 4) + b"{\xff\xfe}" + b"\0" * 4)
    with pytest.raises(InvalidInput, match="not valid UTF-8 JSON"):
        read_safetensors_header(path)
    path.write_bytes(b"\x01\x02")
    with pytest.raises(InvalidInput, match="shorter than the 8-byte header length"):
        read_safetensors_header(path)


def test_header_length_starting_with_0x80_is_not_mistaken_for_a_pickle(tmp_path: Path) -> None:
    raw = json.dumps(f32("w", [1], 0)).encode().ljust(0x280, b" ")  # length bytes 80 02 00 ...
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4)
    assert path.read_bytes()[:2] == b"\x80\x02"
    header = check_weight_file(path)
    assert header is not None and header.tensors[0].name == "w"


def test_remote_code_needs_the_allow_list() -> None:
    auto = {"model_type": "custom", "auto_map": {"AutoModelForCausalLM": "modeling_custom.CustomLM"}}
    with pytest.raises(Forbidden, match="auto_map") as caught:
        check_trust_remote_code(auto, set(), "acme/custom-lm")
    assert caught.value.status_code == 403 and "allow-list" in caught.value.message
    assert check_trust_remote_code(auto, {"acme/custom-lm"}, "acme/custom-lm") is True
    assert check_trust_remote_code({"model_type": "llama"}, set(), "llama") is False
    with pytest.raises(Forbidden, match="was requested"):
        check_trust_remote_code({"model_type": "llama"}, {"other"}, "llama", requested=True)
    digest = "a" * 64
    assert check_trust_remote_code(auto, frozenset({digest}), digest) is True


def make_manifest(root: Path) -> Manifest:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return Manifest(
        tuple(ManifestEntry(p.relative_to(root).as_posix(), sha256_file(p), p.stat().st_size) for p in files)
    )


def test_manifest_check_catches_tampering(tmp_path: Path) -> None:
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text('{"a": 1}')
    (root / "weights.safetensors").write_bytes(b"x" * 100)
    manifest = make_manifest(root)
    check_manifest(root, manifest)
    (root / "weights.safetensors").write_bytes(b"y" * 100)  # same size, different bytes
    with pytest.raises(IntegrityError, match="changed since the manifest"):
        check_manifest(root, manifest)
    (root / "weights.safetensors").write_bytes(b"x" * 100)
    (root / "modeling_evil.py").write_text("import os")
    with pytest.raises(IntegrityError, match=r"unexpected \['modeling_evil.py'\]"):
        check_manifest(root, manifest)
    (root / "modeling_evil.py").unlink()
    (root / "config.json").unlink()
    with pytest.raises(IntegrityError, match=r"missing \['config.json'\]"):
        check_manifest(root, manifest)
    escaping = Manifest((ManifestEntry("../etc/passwd", "0" * 64, 1),))
    with pytest.raises(InvalidInput, match="escapes"):
        check_manifest(root, escaping)
