"""Rendering a simulator's images in blocks, in order, on threads (numpy releases the GIL in its
loops): the scheduling and process settings the eye and hand simulators share."""

from __future__ import annotations

import ctypes
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Callable, Iterator, Sequence

DOMAINS = ("synthetic", "target")  # what every simulator renders: labelled synthetic, or target-like
_malloc_tuned = False


def thread_count(workers: int | None) -> int:
    """Rendering threads: ``workers``, or the cores (at most 8)."""
    return max(1, int(workers) if workers else min(os.cpu_count() or 1, 8))


def tune_malloc() -> None:
    """Keep glibc from handing freed memory back to the OS after every batch.

    Rasterising a batch allocates and frees a few hundred numpy temporaries of 0.1-1 MB. With
    glibc's defaults these are mmap-ed or trimmed off the heap's top when freed, so every batch
    page-faults all of them back in: rasterising took ~1.7x more CPU time (measured). Raising the
    mmap and trim thresholds (process-wide) keeps up to 256 MB of freed heap in the process
    instead; results do not change. Other platforms and allocators are left alone.
    """
    global _malloc_tuned
    if _malloc_tuned or not sys.platform.startswith("linux"):
        return
    _malloc_tuned = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    mallopt(M_MMAP_THRESHOLD, 32 << 20)
    mallopt(M_TRIM_THRESHOLD, 256 << 20)
    mallopt(M_TOP_PAD, 16 << 20)



def in_order(render: Callable, spans: Sequence[tuple], workers: int) -> Iterator[tuple]:
    """Yield ``(span, render(*span))`` for every span, in order, with up to ``2 * workers`` blocks
    rendering ahead on ``workers`` threads (one thread: rendered here, one after another)."""
    if workers == 1 or len(spans) == 1:
        for span in spans:
            yield span, render(*span)
        return
    with ThreadPoolExecutor(workers) as pool:
        it = iter(spans)
        pending = [(span, pool.submit(render, *span)) for span in islice(it, 2 * workers)]
        while pending:
            span, fut = pending.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(render, *nxt)))
            yield span, fut.result()
