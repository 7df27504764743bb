"""The C++ decode-attention kernel over the paged KV cache: built on first use, cached, optional.

``kernels/paged_decode_attention.cpp`` is compiled with the machine's ``g++`` against the installed
torch into a shared library registered as ``torch.ops.llmops_paged.decode_attention``. The library is
cached under ``$LLMOPS_KERNEL_CACHE`` (default ``~/.cache/llmops/kernels``) by a hash of the source,
the torch version, the compiler flags and this CPU's feature flags (it is built with
``-march=native``), so each machine compiles once (about 20-60 s) and later engine starts only load
it. When there is no compiler, the build fails or the library does not load, ``load_decode_kernel``
returns None once, logs why, and the engine keeps its gather + SDPA path. A build no engine has
started with for ``STALE_AFTER_DAYS`` (an older source, torch or CPU) is removed from the cache.

Where there is no compiler (the container images), a *portable* build made ahead of time is used
instead: ``build_prebuilt`` compiles for a baseline CPU (x86-64-v3: AVX2 and FMA; Armv8-A) into
``$LLMOPS_KERNEL_PREBUILT`` (default ``<prefix>/share/llmops/kernels``), as the CPU image's build
stage does; it loads only on a CPU that has that baseline and with the torch it was built against.
Its OpenMP library resolves, through the build's rpath, to the copy torch ships.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels") / "paged_decode_attention.cpp"
CACHE_ENV = "LLMOPS_KERNEL_CACHE"
PREBUILT_ENV = "LLMOPS_KERNEL_PREBUILT"
BUILD_TIMEOUT_S = 600
STALE_AFTER_DAYS = 30
LIBRARY_GLOB = "llmops_paged_*.so"
# -fno-math-errno and -fno-trapping-math let the softmax's floor and float-to-int conversions vectorise.
FLAGS = (
    "-O3",
    "-march=native",
    "-fopenmp",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-w",
)
# machine -> (the baseline -march of a portable build, the CPU flags it needs)
PORTABLE_TARGETS = {
    "x86_64": ("x86-64-v3", ("avx2", "fma", "bmi2", "f16c", "movbe")),
    "aarch64": ("armv8-a", ()),
}


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmops" / "kernels"


def _cpu_flags() -> str:
    """This CPU's feature flags (x86 ``flags`` / ARM ``Features``), which ``-march=native`` depends on."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def build_key(flags: tuple[str, ...] = FLAGS) -> str:
    """Hash of what a build depends on; a ``-march=native`` build also depends on this CPU's flags."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    cpu = _cpu_flags() if "-march=native" in flags else ""
    for part in (torch.__version__, sys.version, platform.machine(), cpu, *flags):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def _portable_flags() -> tuple[str, ...] | None:
    """FLAGS for this architecture's baseline CPU instead of this one; None where there is none."""
    target = PORTABLE_TARGETS.get(platform.machine())
    if target is None:
        return None
    return tuple(f"-march={target[0]}" if flag == "-march=native" else flag for flag in FLAGS)


def prebuilt_dir() -> Path:
    configured = os.environ.get(PREBUILT_ENV)
    return Path(configured).expanduser() if configured else Path(sys.prefix) / "share" / "llmops" / "kernels"


def _portable_library(directory: Path) -> Path | None:
    flags = _portable_flags()
    return None if flags is None else directory / f"llmops_paged_portable_{build_key(flags)}.so"


def build_prebuilt(directory: Path | None = None) -> Path:
    """Compile the portable build into ``directory`` (default ``prebuilt_dir()``); return its path."""
    flags = _portable_flags()
    target = _portable_library(directory or prebuilt_dir())
    if flags is None or target is None:
        raise RuntimeError(f"no portable build is defined for {platform.machine()}")
    _build(target, flags)
    return target


def _runs_portable_build() -> bool:
    """Whether this CPU has the features the portable build was compiled for."""
    target = PORTABLE_TARGETS.get(platform.machine())
    return target is not None and set(target[1]) <= set(_cpu_flags().split())


def _compile_command(source: Path, output: Path, flags: tuple[str, ...] = FLAGS) -> list[str]:
    from torch.utils.cpp_extension import include_paths, library_paths

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    command = [os.environ.get("CXX", "g++"), *flags, f"-D_GLIBCXX_USE_CXX11_ABI={abi}"]
    command += [f"-I{path}" for path in include_paths()]
    command += [str(source), "-o", str(output)]
    for path in library_paths():
        command += [f"-L{path}", f"-Wl,-rpath,{path}"]
    return [*command, "-lc10", "-ltorch_cpu", "-ltorch"]


def _build(target: Path, flags: tuple[str, ...] = FLAGS) -> None:
    """Compile into a temporary file, then rename: concurrent builders never see half a library."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        partial = Path(scratch) / target.name
        subprocess.run(
            _compile_command(SOURCE, partial, flags),
            check=True,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
        os.replace(partial, target)


@functools.cache
def load_decode_kernel() -> Any | None:
    """``torch.ops.llmops_paged.decode_attention``, building it first if needed; None if unavailable."""
    compiler = os.environ.get("CXX", "g++")
    target = cache_dir() / f"llmops_paged_{build_key()}.so"
    if not target.is_file() and shutil.which(compiler) is None:
        return _load_prebuilt(compiler)
    try:
        if not target.is_file():
            logger.info("paged attention: building the decode kernel into %s (once per machine)", target)
            _build(target)
        prune_stale_builds(target)
    except subprocess.CalledProcessError as exc:
        logger.warning("paged attention: the decode kernel did not build; using SDPA\n%s", exc.stderr[-2000:])
        return None
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("paged attention: the decode kernel is unavailable (%s); using SDPA", exc)
        return None
    return _load(target)


def _load_prebuilt(compiler: str) -> Any | None:
    """The portable build shipped with this environment, when there is one this CPU runs."""
    library = _portable_library(prebuilt_dir())
    if library is not None and library.is_file() and _runs_portable_build():
        return _load(library)
    logger.warning(
        "paged attention: no C++ compiler (%s) and no prebuilt kernel for this CPU and torch in %s; "
        "decode attention gathers K/V + SDPA",
        compiler,
        prebuilt_dir(),
    )
    return None


def _load(library: Path) -> Any | None:
    try:
        torch.ops.load_library(str(library))
        kernel = torch.ops.llmops_paged.decode_attention
    except (OSError, RuntimeError, AttributeError) as exc:
        logger.warning("paged attention: the decode kernel is unavailable (%s); using SDPA", exc)
        return None
    logger.info("paged attention: decode kernel loaded from %s", library)
    return kernel


def prune_stale_builds(current: Path, max_age_days: float = STALE_AFTER_DAYS) -> list[Path]:
    """Mark ``current`` as used now and delete the other builds in its folder unused for ``max_age_days``.

    A build's modification time is its last use. A process that still has an older build loaded keeps
    its mapping; only the file goes. Returns what was removed; a read-only cache is left as it is.
    """
    removed: list[Path] = []
    try:
        os.utime(current)
        horizon = current.stat().st_mtime - max_age_days * 86_400
        for build in current.parent.glob(LIBRARY_GLOB):
            if build != current and build.stat().st_mtime < horizon:
                build.unlink()
                removed.append(build)
    except OSError as exc:
        logger.debug("paged attention: kernel cache not pruned (%s)", exc)
    if removed:
        logger.info("paged attention: removed %d unused kernel builds from %s", len(removed), current.parent)
    return removed
