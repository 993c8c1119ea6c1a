"""Keep freed memory in the process for reuse instead of handing it back to the kernel.

glibc's malloc serves large blocks (from 128 KiB, its threshold adapting up to 32 MiB) with
fresh mmap()s and unmaps them on free, so a training step that allocates its activations anew
each time pays a page fault per 4 KiB page touched: about 4,000 a step for `dcgan` at batch 64
on the CPU, 10 ms of kernel time in a 170-190 ms step. PyTorch's CPU tuning guide answers this
with jemalloc or tcmalloc; glibc's own settings do the same without a new dependency: blocks up
to 32 MiB come from the heap and freed memory stays there (bench/train_throughput.py measures it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 1024 * 1024 * 1024  # free memory kept at the top of the heap before trimming

_done = False


def reuse_freed_memory() -> bool:
    """Set glibc's malloc to reuse freed blocks (Linux with glibc only; elsewhere a no-op).

    Process-wide and idempotent; returns whether the settings took effect. The price is that the
    process keeps its peak memory until it exits, which suits one command doing one job.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok
