"""The process's memory: keeping freed blocks for reuse, and the peak resident size. No torch here,
so the numpy-only simulators use it too."""

from __future__ import annotations

import functools

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


def _mallopt(*settings: tuple[int, int]) -> bool:
    """glibc's ``mallopt`` for each ``(parameter, value)``; False where the C library is not
    glibc or a setting did not take."""
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return all(bool(libc.mallopt(param, value)) for param, value in settings)
    except (OSError, AttributeError):
        return False


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed blocks of up to 64 MiB for reuse instead of returning
    them to the kernel. Each forward pass on a CPU allocates and frees activation tensors of a few
    MiB; by default glibc hands such blocks back (unmapping them, or trimming the heap's top), so
    the next pass takes a page fault for every 4 KiB page it writes, and the kernel zeroes each
    page first (docs/results/speed.md has what that cost). Both thresholds are set: the trim
    threshold alone would also turn off glibc's adaptive mmap threshold. The process keeps its
    peak working set instead of shrinking between passes. The simulators' numpy temporaries
    (a few hundred of 0.1-1 MB per batch) gain the same way. Only where the C library is glibc;
    returns whether the setting took."""
    return _mallopt((_M_MMAP_THRESHOLD, 64 << 20), (_M_TRIM_THRESHOLD, 256 << 20))


@functools.lru_cache(maxsize=None)
def one_arena() -> bool:
    """Keep every thread's allocations in glibc's main arena. By default each thread that
    allocates (torch's and oneDNN's worker threads) gets an arena of its own, and with freed blocks
    kept (:func:`keep_freed_memory`) each arena holds on to its own working set, so refine's peak
    grew with the number of batches run although nothing it held did; in one arena it stays flat
    with the set's size (docs/results/speed.md). Must run before the process starts its worker
    threads; returns whether the setting took."""
    return _mallopt((_M_ARENA_MAX, 1))


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: the high-water mark of the process's own
    address space. ``getrusage``'s ``ru_maxrss`` is not used there because Linux carries the
    parent's resident size across fork and exec into it, so a small child of a large parent
    reports the parent's size.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    import resource
    import sys
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB elsewhere
