"""Reader of images (and label arrays) in a NumPy ``.npz`` archive; see
:mod:`simgan.datasets.arrays` for which arrays are the images and which the labels. Arrays of
Python objects are refused: simgan never unpickles."""

from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path

import numpy as np

from ..errors import SimganError
from .arrays import ArrayImages


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of the arrays in an ``.npz`` archive, read from the headers only."""
    arrays = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                arrays[info.filename[:-4]] = (tuple(shape), np.dtype(dtype))
    except FileNotFoundError:
        raise SimganError(f"NPZ file not found: {path}") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise SimganError(f"cannot read {path}: corrupt or not an NPZ archive ({exc})") from None
    for key, (_, dtype) in arrays.items():
        if dtype.hasobject:
            raise SimganError(f"{path}: array '{key}' holds Python objects, which simgan never unpickles")
    return arrays


class NPZImages(ArrayImages):
    """Images (and label arrays) from a NumPy ``.npz`` archive; each array is loaded once, when
    first used."""

    _TRANSIENT = ArrayImages._TRANSIENT + ("_arrays", "_load_lock")

    def _init_transient(self) -> None:
        super()._init_transient()
        self._arrays: dict[str, np.ndarray] = {}
        self._load_lock = threading.Lock()

    def __init__(self, path: str | os.PathLike, *, images_key: str | None = None,
                 size: tuple[int, int] | None = None, gray: bool = False, what: str = "dataset"):
        path = Path(path)
        super().__init__(path, _npz_headers(path), images_key=images_key, size=size, gray=gray, what=what)

    def _array(self, key: str) -> np.ndarray:
        with self._load_lock:
            if key not in self._arrays:
                try:
                    with np.load(self.path, allow_pickle=False) as npz:
                        self._arrays[key] = npz[key]
                except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
                    raise SimganError(f"cannot read array '{key}' of {self.path}: {exc}") from None
            return self._arrays[key]

    def _fetch(self, key: str, start: int, stop: int) -> np.ndarray:
        return self._array(key)[start:stop]

    def _fetch_rows(self, key: str, sorted_unique: np.ndarray) -> np.ndarray:
        return self._array(key)[sorted_unique]
