"""The OpenMP runtime a serving process runs torch on: Intel's (``libiomp5``) when it is installed.

torch's CPU wheels are built against GNU OpenMP (``libgomp``). Intel's runtime implements the same
``GOMP_*`` entry points, and preloading it makes torch's and MKL's parallel regions (and the paged
decode kernel's) run on it: this is what torch's own CPU launcher does
(``python -m torch.backends.xeon.run_cpu --enable-iomp``) and what vLLM's CPU server does. On the
benchmark model its fork/join costs less per GEMM of a small decode step: the replica served
1.3-1.4x the tokens/s with it (``docs/benchmarks.md``).

A runtime is chosen when the process starts, so ``llmops replica`` re-executes itself once with
``LD_PRELOAD`` set, before it loads any weights (same PID, same arguments). ``LLMOPS_OPENMP=gnu``
keeps torch's own runtime; ``KMP_BLOCKTIME`` defaults to 1 ms (idle threads stop spinning soon, as
torch's launcher sets it) unless the environment sets it. The ``intel-openmp`` wheel (x86-64 Linux,
in the ``serve`` extra) puts the library in ``<prefix>/lib``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from llmops.errors import InvalidInput

logger = logging.getLogger(__name__)

SWITCH_ENV = "LLMOPS_OPENMP"  # "intel" (the default, when installed) or "gnu"
LIBRARY = "libiomp5.so"
RUNTIMES = ("intel", "gnu")


def intel_library(prefixes: Sequence[str] | None = None) -> Path | None:
    """``libiomp5.so`` of this environment (``sys.prefix/lib``, then the base prefix), or None."""
    for prefix in prefixes if prefixes is not None else (sys.prefix, sys.base_prefix):
        candidate = Path(prefix) / "lib" / LIBRARY
        if candidate.is_file():
            return candidate
    return None


def preload_environment(environ: Mapping[str, str], library: Path | None) -> dict[str, str] | None:
    """The environment to re-execute with so ``library`` is preloaded, or None when nothing changes:
    no library, the switch says ``gnu``, or it is preloaded already."""
    choice = environ.get(SWITCH_ENV, "intel").strip().lower() or "intel"
    if choice not in RUNTIMES:
        raise InvalidInput(
            f"{SWITCH_ENV} must be one of {', '.join(RUNTIMES)} (got {choice!r}); unset it for the default",
            param=SWITCH_ENV,
        )
    if choice == "gnu" or library is None:
        return None
    preloaded = [entry for entry in environ.get("LD_PRELOAD", "").replace(" ", ":").split(":") if entry]
    if any(Path(entry).name == LIBRARY for entry in preloaded):
        return None
    return {
        **environ,
        "LD_PRELOAD": ":".join([str(library), *preloaded]),
        "KMP_BLOCKTIME": environ.get("KMP_BLOCKTIME", "1"),
    }


def loaded_runtime(maps: Path = Path("/proc/self/maps")) -> str:
    """Which OpenMP runtime this process has mapped: ``intel``, ``gnu`` or ``unknown``."""
    try:
        text = maps.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "unknown"
    if LIBRARY in text:
        return "intel"
    return "gnu" if "libgomp" in text else "unknown"


def started_as_cli(argv: Sequence[str]) -> bool:
    """Whether this process is the ``llmops`` command (its console script or ``python -m llmops``),
    not a host that called the command in-process (a test runner), which must never be replaced."""
    if not argv:
        return False
    entry = Path(argv[0])
    return entry.name == "llmops" or (entry.name == "__main__.py" and entry.parent.name == "llmops")


def reexec_with_preferred_runtime(argv: Sequence[str]) -> None:
    """Replace this process with ``python -m llmops ARGV[1:]`` on Intel's OpenMP when that applies;
    return without doing anything otherwise (not Linux, not started as the command, no library,
    already preloaded, ``gnu``)."""
    if not sys.platform.startswith("linux") or not started_as_cli(argv):
        return
    environment = preload_environment(os.environ, intel_library())
    if environment is None:
        return
    logger.info("OpenMP: restarting on Intel's runtime (%s)", environment["LD_PRELOAD"].split(":")[0])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "llmops", *argv[1:]], environment)
