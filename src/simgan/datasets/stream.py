"""Random access to a (possibly huge) interchange folder without holding its records in memory.

Refining streams a dataset: only the byte offsets of the ``labels.jsonl`` lines are kept
(8 bytes per image), so memory stays flat whatever the dataset size. The whole file is checked
in one pass first (JSON objects, a ``"file"`` inside the folder that exists, no duplicates), so
bad input is reported before any work is done.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..errors import SimganError
from .folder import IMAGE_EXTENSIONS, LABELS_FILE, Record, _safe_relpath, decode_image


class FolderIndex:
    """The records of an interchange folder, read on demand by position."""

    def __init__(self, root: str | os.PathLike, *, what: str = "dataset"):
        self.root = Path(root)
        if not self.root.exists():
            raise SimganError(f"{what} folder not found: {self.root}")
        if not self.root.is_dir():
            raise SimganError(f"{what} must be a folder of images, got a file: {self.root}")
        self.labels_path = self.root / LABELS_FILE
        self.labelled = self.labels_path.exists()
        if self.labelled:
            self.offsets = self._index_labels()
            self.files = None
        else:
            # An unlabelled folder has no file to index: its sorted listing is the record list.
            self.files = sorted(
                p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(self.root).parts))
            self.offsets = None
        if len(self) == 0:
            raise SimganError(f"{what} folder {self.root} holds no images")

    def _index_labels(self) -> np.ndarray:
        offsets: list[int] = []
        hashes: list[int] = []
        pos = 0
        with open(self.labels_path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                start, pos = pos, pos + len(raw)
                line = raw.rstrip(b"\r\n")
                if not line.strip():
                    continue
                where = f"{self.labels_path}:{lineno}"
                try:
                    obj = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise SimganError(f"{where}: line is not valid JSON") from None
                if not isinstance(obj, dict) or "file" not in obj:
                    raise SimganError(f"{where}: each line must be a JSON object with a \"file\" key")
                rel = _safe_relpath(self.root, obj["file"], where)
                if not (self.root / rel).is_file():
                    raise SimganError(f"{where}: names a missing file {rel!r}")
                offsets.append(start)
                hashes.append(int.from_bytes(hashlib.blake2b(rel.encode(), digest_size=8).digest(), "little"))
        arr = np.asarray(offsets + [pos], dtype=np.int64)
        h = np.asarray(hashes, dtype=np.uint64)
        order = np.argsort(h, kind="stable")
        dup = np.nonzero(h[order][1:] == h[order][:-1])[0]
        if dup.size:
            i, j = sorted((int(order[dup[0]]), int(order[dup[0] + 1])))
            rec = self.records(j, j + 1)[0]
            raise SimganError(f"{self.labels_path}: file {rec.file!r} is listed twice (records {i + 1} and {j + 1})")
        return arr

    def __len__(self) -> int:
        return len(self.files) if self.files is not None else len(self.offsets) - 1

    def records(self, start: int, stop: int) -> list[Record]:
        """Records ``start..stop-1`` (their ``labels.jsonl`` lines verbatim)."""
        stop = min(stop, len(self))
        if self.files is not None:
            return [Record(f) for f in self.files[start:stop]]
        out = []
        with open(self.labels_path, "rb") as fh:
            fh.seek(int(self.offsets[start]))
            data = fh.read(int(self.offsets[stop] - self.offsets[start]))
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
