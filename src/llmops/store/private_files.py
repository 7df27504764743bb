"""Owner-only folders and files: what the home and everything in it is made of, whatever the umask.

The home holds API-key hashes, the request log, feedback and model weights; another local user must
not read any of it. Folders this package creates are 0700, files 0600, and immutable artifacts 0400
(owner read-only). ``umask`` alone does not do it (022 is a common default and gives 0755 and 0644),
so each creation states its mode: ``private_dir`` for folders, ``private_file`` for a file created
empty (the SQLite database, whose ``-wal`` and ``-shm`` files SQLite then creates with its mode),
``open_private`` for a file written in place. Processes that write many files through other
libraries (the CLI, gateway workers) also run under ``OWNER_ONLY_UMASK``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

DIR_MODE = 0o700
FILE_MODE = 0o600
READ_ONLY_MODE = 0o400
OWNER_ONLY_UMASK = 0o077


def private_dir(path: Path, *, tighten: bool = False) -> Path:
    """``path`` as a folder; every folder this call creates (missing parents included) is 0700.
    ``tighten`` also makes an existing ``path`` 0700 (folders above it are left as they are)."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # another process made it first
            continue
        os.chmod(folder, DIR_MODE)  # mkdir's mode passes through the umask
    if tighten and not missing:
        os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path, *, tighten: bool = False) -> Path:
    """Create ``path`` empty and 0600 if it does not exist (its folder must); ``tighten`` also makes
    an existing file 0600."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        if tighten:
            os.chmod(path, FILE_MODE)
        return path
    os.chmod(path, FILE_MODE)
    return path


def open_private(path: Path, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` for writing, the file created 0600 when it is new."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    return os.fdopen(fd, mode, **kwargs)


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a temporary file renamed into place), 0600."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open_private(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, path)
    return path
