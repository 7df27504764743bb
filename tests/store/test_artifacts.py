from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from llmops.errors import IntegrityError, InvalidInput, NotFound
from llmops.store.artifacts import ArtifactStore


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 10)
    return root


def test_file_digest_is_sha256_and_idempotent(artifacts: ArtifactStore, tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_bytes(b"hello")
    digest = artifacts.put_file(f)
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert artifacts.put_file(f) == digest
    assert artifacts.put_bytes(b"hello") == digest
    assert artifacts.read_bytes(digest) == b"hello"
    assert artifacts.kind(digest) == "file"
    assert not any((artifacts.root / "tmp").iterdir()), "temp files must not be left behind"


def test_directory_digest_depends_on_paths_and_contents(artifacts: ArtifactStore, tmp_path: Path) -> None:
    d1 = artifacts.put_dir(_tree(tmp_path / "one"))
    d2 = artifacts.put_dir(_tree(tmp_path / "two"))
    assert d1 == d2, "same relative paths and contents give the same digest"
    (tmp_path / "two" / "a.txt").rename(tmp_path / "two" / "renamed.txt")
    assert artifacts.put_dir(tmp_path / "two") != d1
    manifest = artifacts.manifest(d1)
    assert [e.path for e in manifest.files] == ["a.txt", "sub/b.bin"]
    out = artifacts.path(d1)
    assert (out / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 10


def test_stored_files_are_read_only(artifacts: ArtifactStore, tmp_path: Path) -> None:
    digest = artifacts.put_dir(_tree(tmp_path / "one"))
    path = artifacts.path(digest) / "a.txt"
    assert not os.stat(path).st_mode & 0o222


def test_flipped_byte_in_file_is_never_served(artifacts: ArtifactStore) -> None:
    digest = artifacts.put_bytes(b"model weights")
    blob = artifacts.root / "blobs" / digest[:2] / digest
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[3] ^= 0x01
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="corrupted"):
        artifacts.read_bytes(digest)
    with pytest.raises(IntegrityError):
        artifacts.path(digest)


def test_flipped_byte_in_directory_is_detected(artifacts: ArtifactStore, tmp_path: Path) -> None:
    digest = artifacts.put_dir(_tree(tmp_path / "one"))
    target = artifacts.path(digest) / "sub" / "b.bin"
    os.chmod(target, 0o644)
    with target.open("r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(IntegrityError):
        artifacts.path(digest)
    with pytest.raises(IntegrityError):
        artifacts.verify(digest)


def test_added_file_in_materialised_directory_is_detected(artifacts: ArtifactStore, tmp_path: Path) -> None:
    digest = artifacts.put_dir(_tree(tmp_path / "one"))
    out = artifacts.path(digest)
    os.chmod(out, 0o755)
    (out / "planted.py").write_text("import os")
    with pytest.raises(IntegrityError, match="added or removed"):
        artifacts.path(digest)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "abc", "A" * 64, "", "0" * 63 + "/"])
def test_paths_come_only_from_valid_digests(artifacts: ArtifactStore, bad: str) -> None:
    with pytest.raises(InvalidInput):
        artifacts.path(bad)


def test_unknown_digest_is_not_found(artifacts: ArtifactStore) -> None:
    with pytest.raises(NotFound):
        artifacts.path("0" * 64)


def test_symlinks_are_refused(artifacts: ArtifactStore, tmp_path: Path) -> None:
    root = _tree(tmp_path / "one")
    (root / "link").symlink_to("/etc/hostname")
    with pytest.raises(InvalidInput, match="symbolic"):
        artifacts.put_dir(root)
