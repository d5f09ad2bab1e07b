"""The array format: a dataset as ``.npy`` shards and a ``labels.jsonl``, for sets of millions.

A folder of PNG files costs a codec call per image and a file per image; at the paper's scale
(1.2M eyes) that, not the network, limits refining (docs/results/speed.md). The array format holds
the same dataset as a few large arrays::

    DIR.shards/
      shards.json            {"format": "simgan-shards", "version": 1, "count": N, "shard_size": S,
                              "height": H, "width": W, "channels": C, "dtype": "uint8"}
      images-000000.npy      S x H x W x C, uint8 or uint16 (the last shard holds the rest)
      images-000001.npy
      labels.jsonl           optional: line i is image i's labels

``labels.jsonl`` lines are carried byte for byte, as in the PNG folder; their ``"file"`` key, when
there is one, names the image in the PNG folder the set came from (``simgan convert`` writes it
back there). Plain numpy reads the format: ``np.load(path, mmap_mode="r")`` per shard, image ``i``
in shard ``i // S`` at row ``i % S`` (docs/array_format.md).

Why ``.npy`` shards: each is written whole under a temporary name and renamed, so a killed writer
leaves complete shards only and resumes at shard granularity; several processes write disjoint
shards with no shared file; reads at row offsets keep memory flat whatever the set's size. (One
HDF5 file can do none of the first two without MPI; simgan still reads HDF5 and writes it with
``simgan convert``.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import SimganError
from .folder import LABELS_FILE, Dataset, DatasetWriter, ImageSpec

SUFFIX = ".shards"
MANIFEST = "shards.json"
FORMAT = "simgan-shards"
VERSION = 1
LABEL_STRIDE = 1024  # labels.jsonl lines between two indexed line starts
SHARD_IMAGES = 4096  # images per shard by default: 8 MB of 55x35 eyes, 400 MB of 224x224x16-bit depth at most


def shard_name(k: int) -> str:
    return f"images-{k:06d}.npy"


def is_shards(path: str | os.PathLike) -> bool:
    """A folder holding ``shards.json``, or a path named ``*.shards`` (an output to create)."""
    p = Path(path)
    return (p / MANIFEST).is_file() or p.suffix.lower() == SUFFIX


def _fail(path: Path, what: str) -> SimganError:
    return SimganError(f"{path}: {what}")


class ShardImages(Dataset):
    """Reads an array-format folder. Opening checks every shard's header and reads no pixels; a
    read fetches only the rows it returns, with plain reads at their offsets in a file opened for
    that read. Nothing is memory-mapped: the pages read stay in the page cache, not in the
    process's resident memory, so refining 1.2M images takes the memory of refining 10k, and
    reader threads share no open file."""

    def __init__(self, path: str | os.PathLike, *, what: str = "dataset"):
        self.root = Path(path)
        mpath = self.root / MANIFEST
        if not mpath.is_file():
            raise SimganError(f"{what} {self.root} is not an array-format folder (no {MANIFEST})")
        try:
            m = json.loads(mpath.read_text())
            self.count, self.shard_size = int(m["count"]), int(m["shard_size"])
            h, w, c, dtype = int(m["height"]), int(m["width"]), int(m["channels"]), np.dtype(m["dtype"])
            ok = m.get("format") == FORMAT and m.get("version") == VERSION
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _fail(mpath, f"not a valid {MANIFEST} ({exc})") from None
        if not ok or dtype not in (np.uint8, np.uint16) or min(self.count, self.shard_size, h, w) < 1 or c not in (1, 3):
            raise _fail(mpath, f"not a {FORMAT} version {VERSION} manifest of uint8/uint16 images with 1 or 3 channels")
        self._spec = ImageSpec(h, w, c, 8 if dtype == np.uint8 else 16)
        self.dtype = dtype
        self.row_bytes = h * w * c * dtype.itemsize
        self.n_shards = (self.count + self.shard_size - 1) // self.shard_size
        # every header checked now, so bad input is found before any work; each shard's data offset kept
        self._data_at = np.array([self._check_shard(k) for k in range(self.n_shards)], np.int64)
        self.labels_path = self.root / LABELS_FILE
        self.labelled = self.labels_path.is_file()
        self._offsets = self._index_labels() if self.labelled else None

    def _check_shard(self, k: int) -> int:
        """Shard ``k``'s ``.npy`` header against the manifest; returns where its pixels start."""
        path = self.root / shard_name(k)
        rows = min(self.shard_size, self.count - k * self.shard_size)
        want = (rows, self._spec.height, self._spec.width, self._spec.channels)
        fmt = np.lib.format
        try:
            with open(path, "rb") as fh:
                version = fmt.read_magic(fh)
                read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise ValueError(f".npy format version {version} (simgan writes 1.0)")
                shape, fortran, dtype = read_header(fh)
                start, size = fh.tell(), os.fstat(fh.fileno()).st_size
        except FileNotFoundError:
            raise _fail(path, f"missing: the manifest lists {self.n_shards} shards") from None
        except (OSError, ValueError) as exc:
            raise _fail(path, f"not a readable .npy array ({exc}); the shard is truncated or corrupt") from None
        if tuple(shape) != want or dtype != self.dtype or fortran:
            order = " in Fortran order" if fortran else ""
            raise _fail(path, f"holds {dtype} {tuple(shape)}{order}, the manifest says {self.dtype} {want}")
        if size < start + rows * self.row_bytes:
            raise _fail(path, f"not a readable .npy array ({size} bytes for {rows} images); the shard is truncated "
                              "or corrupt")
        return start

    def _read_rows(self, runs: Iterable[tuple[int, int, int, int]], out: np.ndarray) -> None:
        """Fill ``out[j:j + n]`` with rows ``r..r + n - 1`` of shard ``k`` for each ``(k, r, n, j)``,
        one read per run, one open per shard."""
        if not len(out):
            return
        flat = out.reshape(len(out), -1).view(np.uint8)
        fh, open_k = None, -1
        try:
            for k, r, n, j in runs:
                if k != open_k:
                    if fh is not None:
                        fh.close()
                    fh, open_k = open(self.root / shard_name(k), "rb", buffering=0), k
                fh.seek(int(self._data_at[k]) + r * self.row_bytes)
                view, got = memoryview(flat[j:j + n]).cast("B"), 0
                while got < len(view):
                    m = fh.readinto(view[got:])
                    if not m:
                        raise _fail(self.root / shard_name(k), "ended early: the shard was truncated after it was "
                                                               "opened")
                    got += m
        finally:
            if fh is not None:
                fh.close()

    def _index_labels(self) -> np.ndarray:
        """Where lines 0, S, 2S, ... of ``labels.jsonl`` start (S = ``LABEL_STRIDE``), in one pass
        that also counts the lines: memory a thousandth of one offset per image."""
        marks = np.zeros(self.count // LABEL_STRIDE + 1, np.int64)
        lines = pos = 0  # newlines seen, bytes read
        last = b"\n"
        with open(self.labels_path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                ends = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10)
                starts = lines + 1 + np.arange(len(ends))  # the line that starts after each newline
                keep = (starts % LABEL_STRIDE == 0) & (starts // LABEL_STRIDE < len(marks))
                marks[starts[keep] // LABEL_STRIDE] = pos + ends[keep] + 1
                lines, pos, last = lines + len(ends), pos + len(chunk), chunk[-1:]
        lines += last != b"\n"  # a last line without its newline counts
        if lines != self.count:
            raise _fail(self.labels_path, f"has {lines} lines for {self.count} images")
        return marks

    def __len__(self) -> int:
        return self.count

    @property
    def spec(self) -> ImageSpec:
        return self._spec

    def read(self, i: int) -> np.ndarray:
        return self.read_many([i])[0]

    def read_many(self, indices: Sequence[int], *, threads: int = 4, check: bool = True) -> np.ndarray:
        idx = np.asarray(indices, np.int64)
        out = np.empty((len(idx), *self.shape_hwc), self.dtype)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.count):
            raise IndexError(f"image index out of range for {self.count} images")
        runs, j = [], 0
        while j < len(idx):  # runs of consecutive images inside one shard: one read each
            k, r = divmod(int(idx[j]), self.shard_size)
            n = 1
            while (j + n < len(idx) and idx[j + n] == idx[j] + n and r + n < self.shard_size):
                n += 1
            runs.append((k, r, n, j))
            j += n
        self._read_rows(runs, out)
        return out

    @property
    def shape_hwc(self) -> tuple[int, int, int]:
        return self._spec.height, self._spec.width, self._spec.channels

    def label_line(self, i: int) -> bytes:
        return self.label_lines(i, i + 1)[0]

    def label_lines(self, start: int, stop: int) -> list[bytes]:
        """Lines ``start..stop-1`` of ``labels.jsonl`` (without their line ends): read from the
        nearest indexed line before ``start``."""
        stop = min(stop, self.count)
        if not 0 <= start < stop:
            if 0 <= start <= stop:
                return []
            raise IndexError(f"label line {start} out of range for {self.count} images")
        with open(self.labels_path, "rb") as fh:
            fh.seek(int(self._offsets[start // LABEL_STRIDE]))
            for _ in range(start % LABEL_STRIDE):
                fh.readline()
            return [fh.readline().rstrip(b"\r\n") for _ in range(stop - start)]

    def labels(self, i: int) -> dict:
        if not self.labelled:
            return {}
        rec = json.loads(self.label_line(i))
        if not isinstance(rec, dict):
            raise _fail(self.labels_path, f"line {i + 1} is not a JSON object")
        return rec

    def iter_label_lines(self):
        with open(self.labels_path, "rb") as fh:
            for line in fh:
                yield line.rstrip(b"\r\n")

    def describe(self, i: int) -> str:
        return f"{self.root} image {i}"


class ShardWriter:
    """Writes an array-format folder as :class:`~simgan.datasets.folder.DatasetWriter` writes a PNG
    folder: into ``OUT.partial`` (simgan's, locked), published by one rename. Each shard is written
    under a temporary name and renamed, so after a kill the shards present are whole: with
    ``resume=True`` a rerun keeps them (:meth:`done`) and writes the rest."""

    def __init__(self, out: str | os.PathLike | None, spec: ImageSpec, count: int, shard_size: int = SHARD_IMAGES, *,
                 resume: bool = False, echo=None, owner: bool = True, writer: DatasetWriter | None = None):
        if shard_size < 1:
            raise SimganError(f"shard size must be >= 1, got {shard_size}")
        self.spec, self.count, self.shard_size = spec, count, shard_size
        self.writer = writer if writer is not None else DatasetWriter(out, resume=resume, echo=echo, owner=owner)
        self.partial = self.writer.partial
        self.n_shards = (count + shard_size - 1) // shard_size

    @classmethod
    def join(cls, writer: DatasetWriter, spec: ImageSpec, count: int, shard_size: int) -> "ShardWriter":
        """Shards written into the ``OUT.partial`` of an open :class:`DatasetWriter` (``simgan
        refine``, which owns the folder, its resume manifest and its publishing)."""
        return cls(None, spec, count, shard_size, writer=writer)

    @property
    def created(self) -> bool:
        return self.writer.created

    def rows(self, k: int) -> int:
        return min(self.shard_size, self.count - k * self.shard_size)

    def done(self, k: int) -> bool:
        """Shard ``k`` is written (whole: it appears only by a rename)."""
        return (self.partial / shard_name(k)).is_file()

    def write_shard(self, k: int, images: np.ndarray) -> None:
        want = (self.rows(k), self.spec.height, self.spec.width, self.spec.channels)
        if images.shape != want or images.dtype != self.spec.dtype:
            raise SimganError(f"shard {k} must hold {self.spec.dtype} {want}, got {images.dtype} {images.shape}")
        final = self.partial / shard_name(k)
        tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(images), allow_pickle=False)
        os.replace(tmp, final)

    def write_text(self, name: str, data: bytes) -> None:
        self.writer.write_text(name, data)

    def finish(self, lines: Iterable[bytes] | None = None) -> Path:
        """Write the manifest and ``labels.jsonl`` (``lines``; ``None``: an unlabelled set) and
        publish ``OUT``."""
        self.write_manifest()
        return self.writer.finish(lines)

    def write_manifest(self) -> None:
        """``shards.json``, once every shard is there (and no temporary file of a killed writer)."""
        missing = [k for k in range(self.n_shards) if not self.done(k)]
        if missing:
            raise SimganError(f"{self.partial}: shard {missing[0]} was never written")
        for tmp in self.partial.glob(".images-*.tmp*"):
            tmp.unlink()  # a shard a killed process was writing
        manifest = {"format": FORMAT, "version": VERSION, "count": self.count, "shard_size": self.shard_size,
                    "height": self.spec.height, "width": self.spec.width, "channels": self.spec.channels,
                    "dtype": self.spec.dtype.name}
        self.writer.write_text(MANIFEST, json.dumps(manifest, indent=1).encode())

    def release(self) -> None:
        self.writer.release()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.writer.__exit__(exc_type, exc, tb)


def write_shards(out: str | os.PathLike, images: np.ndarray, labels: Sequence[dict] | None = None, *,
                 shard_size: int = SHARD_IMAGES) -> Path:
    """Write ``N x H x W x C`` images (and optional labels dicts) as a new array-format folder."""
    from .folder import json_line, spec_of

    if len(images) == 0:
        raise SimganError("no images to write")
    spec = spec_of(images[0])
    with ShardWriter(out, spec, len(images), shard_size) as writer:
        for k in range(writer.n_shards):
            writer.write_shard(k, images[k * shard_size:(k + 1) * shard_size])
        lines = None if labels is None else [json_line(dict(rec)) for rec in labels]
        return writer.finish(lines)
