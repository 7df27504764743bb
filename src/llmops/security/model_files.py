"""Model-file safety: refuse pickles, validate safetensors headers, gate remote code, verify manifests.

Loading a pickle runs whatever its ``__reduce__`` says, so pickle-based weights are refused by name
(``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.ckpt``...) and by content (a pickle protocol opcode
``\\x80`` at byte 0, or a zip archive holding a ``.pkl``: torch's checkpoint format), and nothing in
this module ever unpickles. ``trust_remote_code`` (Python shipped inside a model directory, named by
``auto_map``) is refused unless the model is on an allow-list. ``check_manifest`` verifies a
directory against the store's content manifest, so a file swapped after registration is caught.
"""

from __future__ import annotations

import zipfile
from collections.abc import Collection, Mapping
from pathlib import Path, PurePosixPath

from llmops.errors import Forbidden, IntegrityError, InvalidInput
from llmops.security.safetensors_header import MAX_HEADER_BYTES, SafetensorsHeader, read_safetensors_header
from llmops.store.artifacts import Manifest, sha256_file

PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".dill"})
PICKLE_PROTO = 0x80  # PROTO opcode: the first byte of every pickle of protocol 2 or later
ZIP_MAGIC = b"PK\x03\x04"


def sniff_pickle(path: Path) -> str | None:
    """Why ``path``'s content is a pickle (or a zip of pickles), or None. Reads a few bytes only."""
    with Path(path).open("rb") as handle:
        head = handle.read(4)
    if len(head) >= 2 and head[0] == PICKLE_PROTO and 2 <= head[1] <= 5:
        return f"it starts with pickle protocol {head[1]} opcodes"
    if head == ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as archive:  # reads the central directory, extracts nothing
                pickled = [name for name in archive.namelist() if name.endswith((".pkl", ".pickle"))]
        except zipfile.BadZipFile:
            return None
        if pickled:
            return f"it is a zip archive holding pickles ({', '.join(sorted(pickled)[:3])})"
    return None


def _refuse_pickle(path: Path, reason: str) -> InvalidInput:
    return InvalidInput(
        f"refusing {path.name}: {reason}; pickle-based weights can run code when loaded. Convert them to "
        "safetensors in a trusted environment (save_pretrained(dir, safe_serialization=True))",
        param="path",
    )


def check_weight_file(path: Path, *, max_header_bytes: int = MAX_HEADER_BYTES) -> SafetensorsHeader | None:
    """Refuse pickle files by name or content; validate safetensors headers (returned).

    A ``.safetensors`` file is judged by its header first: a small header's length can begin with
    the byte ``0x80`` without the file being a pickle. Other files are only sniffed.
    """
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise _refuse_pickle(path, f"the {path.suffix} suffix is a pickle format")
    if path.suffix.lower() == ".safetensors":
        try:
            return read_safetensors_header(path, max_header_bytes=max_header_bytes)
        except InvalidInput:
            reason = sniff_pickle(path)
            if reason:
                raise _refuse_pickle(path, f"named .safetensors but {reason}") from None
            raise
    reason = sniff_pickle(path)
    if reason:
        raise _refuse_pickle(path, reason)
    return None


def check_model_dir(directory: Path) -> list[SafetensorsHeader]:
    """Check every file under ``directory``; return the validated safetensors headers.

    Symbolic links that leave the directory are refused (a registered model must be self-contained).
    """
    root = Path(directory).resolve()
    if not root.is_dir():
        raise InvalidInput(f"model path is not a directory: {directory}", param="path")
    headers: list[SafetensorsHeader] = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            raise InvalidInput(f"{path.relative_to(root)} links outside the model directory", param="path")
        if path.is_file():
            header = check_weight_file(path)
            if header is not None:
                headers.append(header)
    if not headers:
        raise InvalidInput(f"{directory} holds no *.safetensors weights", param="path")
    return headers


def check_trust_remote_code(
    config: Mapping[str, object], allow: Collection[str], ident: str, *, requested: bool = False
) -> bool:
    """Whether remote code may run for model ``ident`` (a name or a digest); raise ``Forbidden`` if not.

    Remote code is needed when the config has ``auto_map`` (classes implemented by Python files in the
    model directory) or the caller asks for it. It is allowed only for an ``ident`` on ``allow``, which
    an administrator fills after reading the code. Returns False when no remote code is involved.
    """
    auto_map = config.get("auto_map")
    if not auto_map and not requested:
        return False
    if ident in allow:
        return True
    why = (
        f"its config maps classes to code in the model directory (auto_map: {auto_map})"
        if auto_map
        else ("trust_remote_code was requested")
    )
    raise Forbidden(
        f"refusing to run code shipped with model {ident!r}: {why}. Review that code, then add the model's "
        "name or digest to the remote-code allow-list",
        param="trust_remote_code",
    )


def _safe_relative(path: str) -> bool:
    pure = PurePosixPath(path)
    return bool(path) and "\\" not in path and not pure.is_absolute() and ".." not in pure.parts


def check_manifest(directory: Path, manifest: Manifest) -> None:
    """``directory`` holds exactly the manifest's files with their sizes and sha256 digests.

    Raises ``IntegrityError`` naming missing, unexpected or altered files (tampering after
    registration), ``InvalidInput`` for a manifest path that would escape the directory.
    """
    root = Path(directory)
    for entry in manifest.files:
        if not _safe_relative(entry.path):
            raise InvalidInput(f"manifest path {entry.path!r} escapes the directory", param="manifest")
    expected = {entry.path: entry for entry in manifest.files}
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    missing, unexpected = sorted(set(expected) - present), sorted(present - set(expected))
    if missing or unexpected:
        raise IntegrityError(
            f"{root.name} does not match its manifest: missing {missing}, unexpected {unexpected}"
        )
    altered = [
        name
        for name, entry in sorted(expected.items())
        if (root / name).stat().st_size != entry.size or sha256_file(root / name) != entry.sha256
    ]
    if altered:
        raise IntegrityError(f"{root.name}: files changed since the manifest was written: {altered}")
