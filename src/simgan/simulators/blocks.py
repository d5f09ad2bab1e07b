"""Rendering a simulator's images in blocks, in order, on threads (numpy releases the GIL in its
loops): the scheduling and process settings the eye and hand simulators share."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import SimganError

DOMAINS = ("synthetic", "target")  # what every simulator renders: labelled synthetic, or target-like


def thread_count(workers: int | None) -> int:
    """Rendering threads: ``workers``, or the cores (at most 8)."""
    return max(1, int(workers) if workers else min(os.cpu_count() or 1, 8))


def check_int(value, name: str, lo: int, hi: int | None = None) -> int:
    """``value`` as an int when it is a whole number from ``lo`` to ``hi``; a one-line error naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (hi is not None and value > hi):
        rng = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        raise SimganError(f"{name} must be an integer {rng}, got {value!r}")
    return int(value)


def block_streams(seed: int, domain_code: int, block: int) -> tuple[np.random.Generator, np.random.Generator]:
    """A block's two random streams, scenes and (target domain) their appearance: a function of the
    seed, the domain and the block alone, so any block renders the same wherever it is rendered."""
    scene, look = np.random.SeedSequence([seed, domain_code, block]).spawn(2)
    return np.random.default_rng(scene), np.random.default_rng(look)


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
