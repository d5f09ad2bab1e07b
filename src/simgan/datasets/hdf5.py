"""Reader of images (and label arrays) in an HDF5 file; see :mod:`simgan.datasets.arrays` for
which arrays are the images and which the labels."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ..errors import SimganError
from .arrays import ArrayImages

HDF5_SUFFIXES = (".h5", ".hdf5", ".he5")


class HDF5Images(ArrayImages):
    """Images (and label arrays) from an HDF5 file; datasets in groups are keyed by their path
    (``"meta/gaze"``). The file stays open for reading once first used."""

    _TRANSIENT = ArrayImages._TRANSIENT + ("_file", "_open_lock")

    def _init_transient(self) -> None:
        super()._init_transient()
        self._file = None
        self._open_lock = threading.Lock()

    def __init__(self, path: str | os.PathLike, *, images_key: str | None = None,
                 size: tuple[int, int] | None = None, gray: bool = False, what: str = "dataset"):
        super().__init__(Path(path), self._index(Path(path)), images_key=images_key, size=size, gray=gray, what=what)

    @staticmethod
    def _index(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shape and dtype of every dataset in the file (no data read)."""
        import h5py

        if not path.is_file():
            raise SimganError(f"HDF5 file not found: {path}")
        arrays: dict[str, tuple[tuple[int, ...], np.dtype]] = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.shape is not None:
                dtype = obj.dtype
                if h5py.check_string_dtype(dtype) is not None:
                    dtype = np.dtype("U")  # variable-length strings are read as str
                arrays[name] = (tuple(obj.shape), dtype)

        try:
            with h5py.File(path, "r") as f:
                f.visititems(visit)
        except OSError as exc:
            raise SimganError(f"cannot read {path}: corrupt or not an HDF5 file ({exc})") from None
        return arrays

    def _handle(self):
        import h5py

        with self._open_lock:
            if self._file is None:
                try:
                    self._file = h5py.File(self.path, "r")
                except OSError as exc:
                    raise SimganError(f"cannot read {self.path}: corrupt or not an HDF5 file ({exc})") from None
            return self._file

    def _fetch(self, key: str, start: int, stop: int) -> np.ndarray:
        import h5py

        try:
            ds = self._handle()[key]
            if h5py.check_string_dtype(ds.dtype) is not None:
                return np.asarray(ds.asstr()[start:stop], dtype=object)
            return ds[start:stop]
        except (OSError, KeyError) as exc:
            raise SimganError(f"cannot read {self.path}:{key}[{start}:{stop}]: {exc}") from None

    def _fetch_rows(self, key: str, sorted_unique: np.ndarray) -> np.ndarray:
        ds = self._handle()[key]
        if ds.dtype.kind in "biuf":
            try:
                return ds[sorted_unique.tolist()]  # h5py point selection needs increasing indices
            except OSError as exc:
                raise SimganError(f"cannot read {self.path}:{key}: {exc}") from None
        return super()._fetch_rows(key, sorted_unique)
