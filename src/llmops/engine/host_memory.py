"""Large host tensors backed by transparent huge pages where Linux offers them.

The paged KV cache is hundreds of MB read in scattered 16-KB blocks every decode step; on 4-KB
pages nearly every block costs TLB misses. ``madvise(MADV_HUGEPAGE)`` before the first touch lets
the kernel back it with 2-MB pages when transparent huge pages are in ``madvise`` or ``always``
mode; elsewhere (other systems, THP off) the tensor is the same, on ordinary pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys

import torch

logger = logging.getLogger(__name__)

MADV_HUGEPAGE = 14
HUGE_PAGE = 2 * 1024 * 1024


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def advise_huge_pages(tensor: torch.Tensor) -> bool:
    """Ask for huge pages over the 2-MB-aligned part of ``tensor``'s storage; True if accepted."""
    libc = _libc()
    if libc is None or tensor.device.type != "cpu":
        return False
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    aligned = -(-start // HUGE_PAGE) * HUGE_PAGE
    length = (end - aligned) // HUGE_PAGE * HUGE_PAGE
    if length <= 0:
        return False
    result = libc.madvise(ctypes.c_void_p(aligned), ctypes.c_size_t(length), ctypes.c_int(MADV_HUGEPAGE))
    if result != 0:
        logger.debug("madvise(MADV_HUGEPAGE) refused: errno %d", ctypes.get_errno())
    return result == 0


def zeros_on_huge_pages(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.zeros``, on huge pages when this is a Linux host tensor (advised before the zeroing
    touches its pages)."""
    if device.type != "cpu":
        return torch.zeros(shape, dtype=dtype, device=device)
    tensor = torch.empty(shape, dtype=dtype, device=device)
    advise_huge_pages(tensor)
    return tensor.zero_()
