"""Images and per-image label arrays held in one file: the shared part of the HDF5
(:mod:`simgan.datasets.hdf5`) and NPZ (:mod:`simgan.datasets.npz`) readers.

An images array (the one named ``images``, else the only 3-D or 4-D uint8/uint16 array) shaped
N x H x W, N x H x W x C or N x C x H x W with C in {1, 3} (channels-last wins when both could
be), and optional labels: every other array whose first dimension is N becomes a label key
(``gaze`` N x 3 -> ``"gaze": [x, y, z]``). Scalars are ignored; any other array of another length
is an error, as is a label named ``file`` (the interchange format's own key).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import SimganError
from .common import Transient, native_order, resize_image, to_gray
from .folder import Dataset


def _layout(shape: tuple[int, ...], where: str) -> str:
    """``"NHW"``, ``"NHWC"`` or ``"NCHW"`` for an images array of ``shape``."""
    if len(shape) == 3:
        return "NHW"
    if len(shape) == 4:
        if shape[3] in (1, 3):
            return "NHWC"
        if shape[1] in (1, 3):
            return "NCHW"
        raise SimganError(f"{where}: images shape {shape} has no channel axis of size 1 or 3 "
                          "(expected N x H x W, N x H x W x C or N x C x H x W)")
    raise SimganError(f"{where}: images must be N x H x W (x C), got shape {shape}")


_LABEL_KINDS = "biufUS"


class ArrayImages(Transient, Dataset):
    """Images and per-image label arrays from an HDF5 file or NPZ archive.

    Subclasses provide ``_fetch(key, start, stop)`` (rows of one array) and the array shapes; this
    class handles layout, gray conversion, resizing, batched reading and label rows.
    """

    labelled = False
    _LABEL_BLOCK = 4096
    _TRANSIENT = ("_blocks", "_lock")

    def __init__(self, path: Path, arrays: dict[str, tuple[tuple[int, ...], np.dtype]], *,
                 images_key: str | None, size: tuple[int, int] | None, gray: bool, what: str):
        self.path = path
        self.size = size
        self.gray = gray
        self.images_key = _pick_images(path, arrays, images_key)
        shape, dtype = arrays[self.images_key]
        where = f"{path}: array '{self.images_key}'"
        if dtype.newbyteorder("=") not in (np.dtype(np.uint8), np.dtype(np.uint16)):
            raise SimganError(f"{where} has unsupported pixel type {dtype}; images must be uint8 or uint16")
        self.layout = _layout(shape, where)
        self.n = shape[0]
        if self.n == 0:
            raise SimganError(f"{where} holds no images")
        self.label_keys: list[str] = []
        for key, (kshape, kdtype) in arrays.items():
            if key == self.images_key or len(kshape) == 0:
                continue
            if kshape[0] != self.n:
                raise SimganError(f"{path}: array '{key}' has {kshape[0]} entries but "
                                  f"'{self.images_key}' has {self.n} images; arrays of per-image "
                                  "labels must match")
            if kdtype.kind not in _LABEL_KINDS:
                raise SimganError(f"{path}: label array '{key}' has unsupported type {kdtype}")
            if key == "file":
                raise SimganError(f"{path}: an array named 'file' clashes with the interchange "
                                  "format's image path key; rename it")
            self.label_keys.append(key)
        self.labelled = bool(self.label_keys)
        self._spec = None
        self._init_transient()

    def _init_transient(self) -> None:
        self._blocks: dict[str, tuple[int, np.ndarray]] = {}  # label key -> (block, rows)
        self._lock = threading.Lock()

    # -- subclass interface --------------------------------------------------------------------
    def _fetch(self, key: str, start: int, stop: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _take(self, key: str, indices: np.ndarray) -> np.ndarray:
        """Rows ``indices`` (any order) of array ``key``; contiguous runs read as one slice."""
        if len(indices) and np.all(np.diff(indices) == 1):
            return self._fetch(key, int(indices[0]), int(indices[-1]) + 1)
        uniq, inverse = np.unique(indices, return_inverse=True)
        rows = self._fetch_rows(key, uniq)
        return rows[inverse]

    def _fetch_rows(self, key: str, sorted_unique: np.ndarray) -> np.ndarray:
        return np.stack([self._fetch(key, int(i), int(i) + 1)[0] for i in sorted_unique])

    # -- pixels --------------------------------------------------------------------------------
    def _finish(self, raw: np.ndarray) -> np.ndarray:
        """Raw rows of the images array -> ``k x H x W x C`` native uint8/uint16, gray/resized."""
        raw = native_order(np.asarray(raw))
        if self.layout == "NHW":
            raw = raw[..., None]
        elif self.layout == "NCHW":
            raw = raw.transpose(0, 2, 3, 1)
        if self.gray:
            raw = to_gray(raw)
        if self.size is not None and (raw.shape[2], raw.shape[1]) != tuple(self.size):
            return np.stack([resize_image(np.ascontiguousarray(img), self.size) for img in raw])
        return np.ascontiguousarray(raw)

    def __len__(self) -> int:
        return self.n

    def describe(self, i: int) -> str:
        return f"{self.path}:{self.images_key}[{i}]"

    def read(self, i: int) -> np.ndarray:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self._finish(self._fetch(self.images_key, i, i + 1))[0]

    def read_many(self, indices: Sequence[int], *, threads: int = 4, check: bool = True) -> np.ndarray:
        """Read a batch with one array access (images of an array share their shape)."""
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) == 0:
            spec = self.spec
            return np.empty((0, spec.height, spec.width, spec.channels), dtype=spec.dtype)
        if idx.min() < 0 or idx.max() >= self.n:
            raise IndexError(f"index out of range for {self.n} images")
        return self._finish(self._take(self.images_key, idx))

    # -- labels --------------------------------------------------------------------------------
    def _label_row(self, key: str, i: int):
        block = i // self._LABEL_BLOCK
        with self._lock:
            cached = self._blocks.get(key)
            if cached is None or cached[0] != block:
                start = block * self._LABEL_BLOCK
                cached = (block, native_order(np.asarray(self._fetch(key, start, min(self.n, start + self._LABEL_BLOCK)))))
                self._blocks[key] = cached
            value = cached[1][i - block * self._LABEL_BLOCK]
        return _json_value(value)

    def labels(self, i: int) -> dict:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return {key: self._label_row(key, i) for key in self.label_keys}


def _json_value(value):
    """A numpy label row as plain JSON values (lists, numbers, strings, booleans)."""
    value = np.asarray(value).tolist()

    def clean(v):
        if isinstance(v, bytes):
            return v.decode("utf-8", errors="replace")
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return clean(value)


def _pick_images(path: Path, arrays: dict[str, tuple[tuple[int, ...], np.dtype]], images_key: str | None) -> str:
    """The images array: ``images_key``, else ``images``, else the only 3-D/4-D uint8/uint16 one."""
    if images_key is not None:
        if images_key not in arrays:
            raise SimganError(f"{path}: no array named '{images_key}' (has: {', '.join(sorted(arrays)) or 'none'})")
        return images_key
    named = [k for k in arrays if k == "images" or k.rsplit("/", 1)[-1] == "images"]
    if "images" in arrays:
        return "images"
    if len(named) == 1:
        return named[0]
    candidates = [k for k, (shape, dtype) in arrays.items()
                  if len(shape) in (3, 4) and dtype.kind == "u" and dtype.itemsize in (1, 2)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise SimganError(f"{path}: no images array (an array named 'images', or a 3-D/4-D uint8 or "
                          "uint16 array)")
    raise SimganError(f"{path}: several arrays could be the images ({', '.join(sorted(candidates))}); "
                      "name one 'images'")
