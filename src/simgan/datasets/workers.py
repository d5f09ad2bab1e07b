"""File workers: decoding and encoding image files in parallel while the refiner runs, for
refining whole datasets (:mod:`simgan.pipelines.refine`).

PNG work is Python-heavy: Pillow holds the GIL for most of a small image's decoding and encoding,
so threads do not add up. On a GPU, which refines tens of thousands of eye images a second, the
files are the bottleneck; there :class:`FileWorkers` runs the file work in worker *processes*.
On a CPU the refiner's own convolutions need every core, so the file work runs in the refining
thread itself, in turn with the model (background threads would take the model's cores;
docs/results/speed.md has the figures).
"""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import SimganError
from .folder import ImageSpec, decode_image, encode_png, spec_of


def decode_many(paths: Sequence[Path], spec: ImageSpec) -> np.ndarray:
    """Decode ``paths`` into one ``N×H×W×C`` array; a file of another shape or depth than ``spec``
    raises :class:`SimganError` naming it."""
    out = np.empty((len(paths), spec.height, spec.width, spec.channels),
                   np.uint16 if spec.bit_depth == 16 else np.uint8)
    for i, path in enumerate(paths):
        image = decode_image(path)
        if spec_of(image) != spec:
            raise SimganError(f"{path} is {spec_of(image).describe()} but the run refines {spec.describe()} images")
        out[i] = image
    return out


def encode_many(paths: Sequence[Path], images: np.ndarray) -> None:
    for path, image in zip(paths, images):
        encode_png(path, image)


class _Joined:
    """The result of several chunk futures, as one."""

    def __init__(self, futures: list[Future], join):
        self.futures, self.join = futures, join

    def result(self):
        return self.join([f.result() for f in self.futures])


def default_workers(device_type: str) -> int:
    """Worker processes for file work: none on a CPU (the model needs the cores), all cores but one
    (the one feeding the GPU) on a GPU machine, at most 32."""
    if device_type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(32, cores - 1))


class _InThisThread:
    """An executor that runs each task at once in the calling thread and returns its finished
    future. An interrupt (Ctrl-C) is raised where it happens, not kept in the future."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - handed to whoever asks for the result, like a pool
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


class FileWorkers:
    """``decode(paths)`` and ``encode(paths, images)`` return futures; with ``workers`` > 0 the work
    is split over that many processes, else it is done at once in the calling thread."""

    def __init__(self, workers: int, spec: ImageSpec):
        self.spec = spec
        self.workers = workers
        if workers > 0:
            # spawn, not fork: the parent may hold CUDA state and torch's thread pools
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            self.chunks = 2 * workers  # smaller pieces balance the load across the workers
        else:
            self.pool = _InThisThread()
            self.chunks = 1

    def _split(self, n: int) -> list[slice]:
        size = max(1, math.ceil(n / self.chunks))
        return [slice(s, min(n, s + size)) for s in range(0, n, size)]

    def decode(self, paths: Sequence[Path]):
        futures = [self.pool.submit(decode_many, paths[s], self.spec) for s in self._split(len(paths))]
        return _Joined(futures, lambda parts: parts[0] if len(parts) == 1 else np.concatenate(parts))

    def encode(self, paths: Sequence[Path], images: np.ndarray):
        futures = [self.pool.submit(encode_many, paths[s], images[s]) for s in self._split(len(paths))]
        return _Joined(futures, lambda parts: None)

    def __enter__(self) -> "FileWorkers":
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
