"""Images written in order, block by block, to a new PNG folder or array-format folder (chosen by
the output's name, ``OUT.shards``): what a simulator writes through."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .folder import DatasetWriter, spec_of
from .shards import SHARD_IMAGES, SUFFIX, ShardWriter


class ImageSink:
    """``add`` blocks of images (with their PNG names and labels lines), then ``finish``. A PNG
    folder gets each image encoded by ``threads`` threads; the array format gets shards of
    ``shard_size`` images as they fill. Either way nothing named ``out`` exists before the end,
    and an exception inside the ``with`` block removes the work folder."""

    def __init__(self, out: str | os.PathLike, count: int, *, threads: int = 4, shard_size: int = SHARD_IMAGES):
        self.out, self.count, self.shard_size = Path(out), count, shard_size
        self.array = self.out.suffix.lower() == SUFFIX
        self.writer = DatasetWriter(out)
        self.pool = None if self.array else ThreadPoolExecutor(max(1, threads))
        self.shards: ShardWriter | None = None
        self.buffer: list[np.ndarray] = []
        self.k = 0

    def add(self, names: Sequence[str], images: np.ndarray, lines: Iterable[bytes] | None = None) -> None:
        if self.array:
            images = np.asarray(images)
            if images.ndim == 3:  # N x H x W: one channel
                images = images[..., None]
            if self.shards is None:
                self.shards = ShardWriter.join(self.writer, spec_of(images[0]), self.count, self.shard_size)
            self.buffer.extend(images)
            while len(self.buffer) >= self.shards.rows(self.k) > 0:
                rows = self.shards.rows(self.k)
                self.shards.write_shard(self.k, np.stack(self.buffer[:rows]))
                del self.buffer[:rows]
                self.k += 1
        else:
            list(self.pool.map(self.writer.write_image, names, images))
        if lines is not None:
            self.writer.add_lines(lines)

    def finish(self) -> Path:
        if self.shards is not None:
            self.shards.write_manifest()
        return self.writer.finish()

    def __enter__(self) -> "ImageSink":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        self.writer.__exit__(exc_type, exc, tb)
