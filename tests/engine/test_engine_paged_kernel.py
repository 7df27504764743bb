"""The C++ decode-attention kernel: equal to gathering K/V for SDPA, checked inputs, and a logged
fallback to SDPA when it cannot be built."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from llmops.engine import paged_kernel
from llmops.engine.device import Placement
from llmops.engine.host_memory import zeros_on_huge_pages
from llmops.engine.model_runner import _decode_kernel_for
from llmops.engine.paged_kernel import load_decode_kernel

TOLERANCE = 1e-5


@pytest.fixture
def kernel() -> Any:
    built = load_decode_kernel()
    if built is None:
        pytest.skip("no C++ compiler on this machine: the engine uses SDPA (tested by the fallback tests)")
    return built


@pytest.fixture
def fresh_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    """An empty kernel cache and a loader that has not decided yet; the cached decision comes back after."""
    monkeypatch.setenv(paged_kernel.CACHE_ENV, str(tmp_path / "kernels"))
    load_decode_kernel.cache_clear()
    yield
    load_decode_kernel.cache_clear()


def reference(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    tables: torch.Tensor,
    lens: torch.Tensor,
    block_size: int,
    scale: float,
) -> torch.Tensor:
    """Gather each row's positions and attend with SDPA: ``[B, H, D]``."""
    out = []
    heads, kv_heads = query.shape[1], keys.shape[1]
    for row, length in enumerate(lens.tolist()):
        positions = torch.arange(length)
        slots = tables[row, positions // block_size] * block_size + positions % block_size
        k = keys[slots].transpose(0, 1).repeat_interleave(heads // kv_heads, dim=0)  # [H, L, D]
        v = values[slots].transpose(0, 1).repeat_interleave(heads // kv_heads, dim=0)
        out.append(F.scaled_dot_product_attention(query[row].unsqueeze(1), k, v, scale=scale)[:, 0])
    return torch.stack(out)


@pytest.mark.parametrize(
    ("heads", "kv_heads", "head_dim"), [(8, 8, 32), (8, 2, 16), (4, 1, 64), (4, 2, 128), (3, 1, 24)]
)
@pytest.mark.parametrize("block_size", [8, 16])
def test_kernel_equals_gather_and_sdpa(
    kernel: Any, heads: int, kv_heads: int, head_dim: int, block_size: int
) -> None:
    """Head sizes with a compiled-in loop (32, 64, 128) and without; contexts that end inside a block
    and inside a group of eight rows; grouped-query heads."""
    torch.manual_seed(0)
    num_blocks, rows = 64, 6
    keys = torch.randn(num_blocks * block_size, kv_heads, head_dim)
    values = torch.randn(num_blocks * block_size, kv_heads, head_dim)
    lens = torch.tensor([1, 7, 8, 9, 13, 61])
    tables = torch.randperm(num_blocks)[: rows * 8].view(rows, 8)
    query = torch.randn(rows, heads, head_dim) * 3
    scale = head_dim**-0.5
    got = kernel(query, keys, values, tables, lens, block_size, scale)
    torch.testing.assert_close(
        got, reference(query, keys, values, tables, lens, block_size, scale), rtol=TOLERANCE, atol=TOLERANCE
    )


def test_kernel_softmax_handles_scores_far_apart(kernel: Any) -> None:
    """Scores hundreds apart: the largest takes all the weight, nothing overflows or turns NaN."""
    keys = torch.zeros(16, 1, 4)
    keys[:, 0, 0] = torch.linspace(-400.0, 400.0, 16)
    values = torch.arange(16, dtype=torch.float32).view(16, 1, 1).expand(16, 1, 4).contiguous()
    query = torch.tensor([[[1.0, 0.0, 0.0, 0.0]], [[-1.0, 0.0, 0.0, 0.0]]])
    tables = torch.tensor([[0, 1], [0, 1]])
    out = kernel(query, keys, values, tables, torch.tensor([16, 16]), 8, 1.0)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 0], torch.tensor([[15.0] * 4, [0.0] * 4]), rtol=0, atol=1e-6)


def test_kernel_refuses_block_ids_outside_the_cache(kernel: Any) -> None:
    keys = torch.zeros(32, 2, 8)
    with pytest.raises(RuntimeError, match="block id outside the cache"):
        kernel(torch.zeros(2, 2, 8), keys, keys, torch.tensor([[0], [4]]), torch.tensor([3, 3]), 8, 1.0)
    with pytest.raises(RuntimeError, match="context length outside its block table"):
        kernel(torch.zeros(2, 2, 8), keys, keys, torch.tensor([[0], [1]]), torch.tensor([3, 9]), 8, 1.0)


def test_no_compiler_falls_back_to_sdpa_and_says_so(
    fresh_loader: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CXX", "llmops-no-such-compiler")
    with caplog.at_level(logging.WARNING, logger=paged_kernel.__name__):
        assert load_decode_kernel() is None
    assert "no C++ compiler" in caplog.text


def test_failed_build_falls_back_to_sdpa_and_says_so(
    fresh_loader: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
    with caplog.at_level(logging.WARNING, logger=paged_kernel.__name__):
        assert load_decode_kernel() is None
    assert "did not build" in caplog.text


def test_loading_prunes_builds_unused_for_a_month(
    fresh_loader: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    cache = tmp_path / "kernels"
    cache.mkdir()
    month_ago = time.time() - (paged_kernel.STALE_AFTER_DAYS + 1) * 86_400
    stale, recent = cache / "llmops_paged_0ld.so", cache / "llmops_paged_r3cent.so"
    other = cache / "notes.txt"
    for path in (stale, recent, other):
        path.write_bytes(b"")
    os.utime(stale, (month_ago, month_ago))
    os.utime(other, (month_ago, month_ago))
    # The build itself is not what this tests: it writes a file that then fails to load (logged).
    monkeypatch.setattr(paged_kernel, "_build", lambda target: target.write_bytes(b"not a library"))
    assert load_decode_kernel() is None
    current = cache / f"llmops_paged_{paged_kernel.build_key()}.so"
    assert current.is_file() and recent.is_file() and other.is_file()
    assert not stale.exists()


PREBUILT_SCRIPT = """
import logging, torch
import torch.nn.functional as F
from llmops.engine.paged_kernel import load_decode_kernel
logging.basicConfig(level=logging.INFO)
kernel = load_decode_kernel()
assert kernel is not None, "no kernel"
keys = torch.randn(64, 2, 8)
query = torch.randn(1, 4, 8)
out = kernel(query, keys, keys, torch.tensor([[0, 1, 2, 3]]), torch.tensor([30]), 16, 0.5)
k = keys[:30].transpose(0, 1).repeat_interleave(2, dim=0)
expected = F.scaled_dot_product_attention(query[0].unsqueeze(1), k, k, scale=0.5)[:, 0]
torch.testing.assert_close(out[0], expected, rtol=1e-5, atol=1e-5)
print("attended")
"""


@pytest.mark.slow
def test_without_a_compiler_the_portable_prebuilt_build_is_loaded(tmp_path: Any) -> None:
    """What the CPU image does: a build made ahead of time for the baseline CPU, no g++ at run time."""
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler here to make the prebuilt build")
    if not paged_kernel._runs_portable_build():
        pytest.skip("this CPU lacks the portable build's baseline")
    library = paged_kernel.build_prebuilt(tmp_path / "prebuilt")
    env = {
        **os.environ,
        "CXX": "llmops-no-such-compiler",
        paged_kernel.PREBUILT_ENV: str(library.parent),
        paged_kernel.CACHE_ENV: str(tmp_path / "cache"),
    }
    # A process of its own: this one may have loaded the native build under the same op name.
    run = subprocess.run(
        [sys.executable, "-c", PREBUILT_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "attended" in run.stdout
    assert f"decode kernel loaded from {library}" in run.stderr
    assert not (tmp_path / "cache").exists()  # nothing compiled


def test_portable_build_needs_its_cpu_baseline(
    fresh_loader: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CXX", "llmops-no-such-compiler")
    monkeypatch.setenv(paged_kernel.PREBUILT_ENV, str(tmp_path))
    library = paged_kernel._portable_library(tmp_path)
    if library is None:
        pytest.skip("no portable build is defined for this architecture")
    library.write_bytes(b"not a library")
    march = paged_kernel.PORTABLE_TARGETS[platform.machine()][0]
    monkeypatch.setattr(paged_kernel, "PORTABLE_TARGETS", {platform.machine(): (march, ("no-such-flag",))})
    with caplog.at_level(logging.INFO, logger=paged_kernel.__name__):
        assert load_decode_kernel() is None
    assert "no prebuilt kernel for this CPU" in caplog.text  # never loaded on a CPU without the baseline
    load_decode_kernel.cache_clear()
    monkeypatch.setattr(paged_kernel, "PORTABLE_TARGETS", {platform.machine(): (march, ())})
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=paged_kernel.__name__):
        assert load_decode_kernel() is None
    assert "decode kernel is unavailable" in caplog.text  # with the baseline it is tried (and fails here)


def test_kernel_is_not_used_off_the_cpu() -> None:
    assert _decode_kernel_for(Placement(torch.device("cuda", 0), torch.bfloat16)) is None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_kernel_in_half_precision_equals_sdpa_on_the_same_values(kernel: Any, dtype: torch.dtype) -> None:
    """A 16-bit cache: the kernel computes in float32 and rounds once, as SDPA's float32 math would."""
    torch.manual_seed(1)
    block_size, num_blocks, rows, heads, kv_heads, head_dim = 8, 32, 3, 4, 2, 32
    keys = torch.randn(num_blocks * block_size, kv_heads, head_dim).to(dtype)
    values = torch.randn(num_blocks * block_size, kv_heads, head_dim).to(dtype)
    lens = torch.tensor([5, 17, 40])
    tables = torch.randperm(num_blocks)[: rows * 5].view(rows, 5)
    query = torch.randn(rows, heads, head_dim).to(dtype)
    got = kernel(query, keys, values, tables, lens, block_size, head_dim**-0.5)
    assert got.dtype == dtype
    expected = reference(
        query.float(), keys.float(), values.float(), tables, lens, block_size, head_dim**-0.5
    )
    torch.testing.assert_close(got, expected.to(dtype), rtol=0, atol=1e-2)


def test_build_key_follows_the_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    first = paged_kernel.build_key()
    edited = tmp_path / "edited.cpp"
    edited.write_bytes(paged_kernel.SOURCE.read_bytes() + b"// edit\n")
    monkeypatch.setattr(paged_kernel, "SOURCE", edited)
    assert paged_kernel.build_key() != first


def test_kv_cache_zeros_on_huge_pages_are_plain_zeros() -> None:
    shape = (2, 3 * 1024 * 1024 // 4)  # 3 MiB: one whole 2-MiB page inside, whatever the alignment
    cache = zeros_on_huge_pages(shape, torch.float32, torch.device("cpu"))
    assert cache.shape == shape and cache.dtype == torch.float32
    assert not cache.any()
