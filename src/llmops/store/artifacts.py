"""Content-addressed artifact store for files and whole directories.

A file's digest is the sha256 of its bytes. A directory's digest is the sha256 of its manifest: the
canonical JSON list of relative paths, sizes and file digests. Layout under the root:

    blobs/ab/<digest>          file contents, read-only (0400: owner only, like every folder, 0700)
    trees/ab/<digest>.json     a directory's manifest
    trees/ab/<digest>/         the directory, materialised from blobs (hard links)

Every on-disk path is derived from a validated digest, never from user input. Writes are atomic
(temp file, fsync, rename); stored artifacts are immutable; ``path()`` and ``read_bytes()`` verify
the digest before handing anything out, so a flipped byte is never served.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from llmops.errors import IntegrityError, InvalidInput, NotFound
from llmops.store.private_files import FILE_MODE, READ_ONLY_MODE, open_private, private_dir

DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20
ArtifactKind = Literal["file", "tree"]


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    files: tuple[ManifestEntry, ...]

    def to_bytes(self) -> bytes:
        body = {"files": [{"path": e.path, "sha256": e.sha256, "size": e.size} for e in self.files]}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        body = json.loads(data)
        return cls(tuple(ManifestEntry(f["path"], f["sha256"], int(f["size"])) for f in body["files"]))

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.files)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_digest(digest: str) -> str:
    """Validate a digest string (64 lowercase hex characters) before it becomes part of a path."""
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise InvalidInput(f"not a sha256 digest: {digest!r} (expected 64 hex characters)", param="digest")
    return digest


class ArtifactStore:
    """Put bytes, files or directories; get them back by digest, verified."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        for sub in ("blobs", "trees", "tmp"):
            private_dir(self.root / sub)

    # ---- paths (from digests only) ----
    def _blob(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / "blobs" / digest[:2] / digest

    def _manifest_path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / "trees" / digest[:2] / f"{digest}.json"

    def _tree_dir(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / "trees" / digest[:2] / digest

    # ---- writes ----
    def _atomic_write(self, target: Path, data: bytes) -> None:
        if target.exists():
            return  # content-addressed: same digest, same bytes
        private_dir(target.parent)
        tmp = self.root / "tmp" / uuid.uuid4().hex
        with open_private(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, READ_ONLY_MODE)
        os.replace(tmp, target)

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._atomic_write(self._blob(digest), data)
        return digest

    def put_file(self, path: Path) -> str:
        path = Path(path)
        if not path.is_file():
            raise InvalidInput(f"not a file: {path}", param="path")
        tmp = self.root / "tmp" / uuid.uuid4().hex
        digest = hashlib.sha256()
        with path.open("rb") as src, open_private(tmp, "wb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        hexdigest = digest.hexdigest()
        target = self._blob(hexdigest)
        if target.exists():
            tmp.unlink()
        else:
            private_dir(target.parent)
            os.chmod(tmp, READ_ONLY_MODE)
            os.replace(tmp, target)
        return hexdigest

    def put_dir(self, path: Path) -> str:
        """Store every file under ``path``; returns the digest of the directory's manifest."""
        path = Path(path)
        if not path.is_dir():
            raise InvalidInput(f"not a directory: {path}", param="path")
        entries = []
        for file in sorted(p for p in path.rglob("*") if not p.is_dir()):
            if file.is_symlink():
                raise InvalidInput(f"symbolic links are not stored: {file}; copy the file in", param="path")
            rel = file.relative_to(path).as_posix()
            entries.append(ManifestEntry(rel, self.put_file(file), file.stat().st_size))
        manifest = Manifest(tuple(entries)).to_bytes()
        digest = hashlib.sha256(manifest).hexdigest()
        self._atomic_write(self._manifest_path(digest), manifest)
        return digest

    def put(self, path: Path) -> str:
        return self.put_dir(path) if Path(path).is_dir() else self.put_file(path)

    # ---- reads ----
    def kind(self, digest: str) -> ArtifactKind:
        if self._manifest_path(digest).exists():
            return "tree"
        if self._blob(digest).exists():
            return "file"
        raise NotFound(f"no artifact with digest {digest}", param="digest")

    def exists(self, digest: str) -> bool:
        return self._manifest_path(digest).exists() or self._blob(digest).exists()

    def manifest(self, digest: str) -> Manifest:
        data = self._read_verified(self._manifest_path(digest), digest)
        return Manifest.from_bytes(data)

    def read_bytes(self, digest: str) -> bytes:
        """The contents of a file artifact, verified against its digest."""
        return self._read_verified(self._blob(digest), digest)

    def _read_verified(self, path: Path, digest: str) -> bytes:
        if not path.exists():
            raise NotFound(f"no artifact with digest {digest}", param="digest")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"artifact {digest} is corrupted: its contents no longer match its digest")
        return data

    def verify(self, digest: str) -> None:
        """Re-hash an artifact (and, for a directory, every file and its materialised copy)."""
        if self.kind(digest) == "file":
            self._verify_blob(digest)
            return
        manifest = self.manifest(digest)
        for entry in manifest.files:
            self._verify_blob(entry.sha256)
        tree = self._tree_dir(digest)
        if tree.exists():
            self._verify_tree_dir(tree, manifest, digest)

    def _verify_blob(self, digest: str) -> None:
        blob = self._blob(digest)
        if not blob.exists():
            raise IntegrityError(f"artifact blob {digest} is missing from the store")
        if sha256_file(blob) != digest:
            raise IntegrityError(f"artifact {digest} is corrupted: its contents no longer match its digest")

    def _verify_tree_dir(self, tree: Path, manifest: Manifest, digest: str) -> None:
        present = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if not p.is_dir()}
        expected = {e.path for e in manifest.files}
        if present != expected:
            raise IntegrityError(f"artifact {digest}: files were added or removed in its directory")
        for entry in manifest.files:
            if sha256_file(tree / entry.path) != entry.sha256:
                raise IntegrityError(f"artifact {digest}: {entry.path} no longer matches its digest")

    def path(self, digest: str) -> Path:
        """A verified on-disk path: the blob of a file, or the materialised directory of a tree."""
        self.verify(digest)
        if self.kind(digest) == "file":
            return self._blob(digest)
        tree = self._tree_dir(digest)
        if not tree.exists():
            self._materialise(digest, self.manifest(digest), tree)
        return tree

    def purge(self, digest: str) -> None:
        """Delete a file artifact's bytes for good: the one exception to immutability, for erasure
        of personal data. Directories share blobs with others, so only file artifacts are purged."""
        blob = self._blob(digest)
        if self._manifest_path(digest).exists():
            raise InvalidInput("only file artifacts can be purged", param="digest")
        if blob.exists():
            os.chmod(blob, FILE_MODE)
            blob.unlink()

    def _materialise(self, digest: str, manifest: Manifest, tree: Path) -> None:
        staging = self.root / "tmp" / f"tree-{uuid.uuid4().hex}"
        for entry in manifest.files:
            rel = PurePosixPath(entry.path)
            if rel.is_absolute() or ".." in rel.parts:
                raise IntegrityError(f"artifact {digest}: manifest path {entry.path!r} escapes the tree")
            target = staging / rel
            private_dir(target.parent)
            try:
                os.link(self._blob(entry.sha256), target)
            except OSError:
                shutil.copyfile(self._blob(entry.sha256), target)
                os.chmod(target, READ_ONLY_MODE)
        try:
            os.replace(staging, tree)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process materialised it first
            if not tree.exists():
                raise
