"""Random access to a (possibly huge) interchange folder without holding its records in memory.

Refining streams a dataset: only the byte offsets of the ``labels.jsonl`` lines are kept
(8 bytes per image), so memory stays flat whatever the dataset size. The whole file is checked
in one pass first (JSON objects, a ``"file"`` inside the folder that exists, no duplicates), so
bad input is reported before any work is done.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from pathlib import Path

import numpy as np

from ..errors import SimganError
from .folder import InterchangeFolder, Record, decode_image, iter_labels


class FolderIndex(InterchangeFolder):
    """The records of an interchange folder, read on demand by position (the folder's checks:
    :class:`~simgan.datasets.folder.InterchangeFolder`)."""

    offsets: np.ndarray | None = None  # byte offset of each labels.jsonl record, and the file's size
    files: list[str] | None = None  # an unlabelled folder's sorted listing: its record list

    def _index_files(self, files: list[str]) -> None:
        self.files = files

    def _index_labels(self) -> None:
        offsets = array("q")  # 8 bytes per record, not a Python int object
        hashes = array("Q")
        for start, _, rel, _ in iter_labels(self.root, self.labels_path):
            offsets.append(start)
            hashes.append(int.from_bytes(hashlib.blake2b(rel.encode(), digest_size=8).digest(), "little"))
        offsets.append(self.labels_path.stat().st_size)
        arr = np.frombuffer(offsets, dtype=np.int64).copy()
        h = np.frombuffer(hashes, dtype=np.uint64)
        order = np.argsort(h, kind="stable")
        for d in np.nonzero(h[order][1:] == h[order][:-1])[0]:
            i, j = sorted((int(order[d]), int(order[d + 1])))
            a, b = self._records_at(arr, i), self._records_at(arr, j)
            if a.file == b.file:  # not a 64-bit hash collision
                raise SimganError(f"{self.labels_path}: file {b.file!r} is listed twice (records {i + 1} and {j + 1})")
        self.offsets = arr

    def __len__(self) -> int:
        return len(self.files) if self.files is not None else len(self.offsets) - 1

    def _records_at(self, offsets: np.ndarray, i: int) -> Record:
        return self._read_span(offsets, i, i + 1)[0]

    def records(self, start: int, stop: int) -> list[Record]:
        """Records ``start..stop-1`` (their ``labels.jsonl`` lines verbatim)."""
        stop = min(stop, len(self))
        if self.files is not None:
            return [Record(f) for f in self.files[start:stop]]
        return self._read_span(self.offsets, start, stop)

    def _read_span(self, offsets: np.ndarray, start: int, stop: int) -> list[Record]:
        out = []
        with open(self.labels_path, "rb") as fh:
            fh.seek(int(offsets[start]))
            data = fh.read(int(offsets[stop] - offsets[start]))
        for raw in data.split(b"\n"):
            line = raw.rstrip(b"\r")
            if not line.strip():
                continue
            out.append(Record(Path(json.loads(line)["file"]).as_posix(), bytes(line)))
        return out

    def iter_label_lines(self, chunk: int = 4096):
        """Every record's ``labels.jsonl`` line, in order, without holding them all."""
        for start in range(0, len(self), chunk):
            for rec in self.records(start, start + chunk):
                yield rec.line

    def read(self, rec: Record) -> np.ndarray:
        return decode_image(self.root / rec.file)
