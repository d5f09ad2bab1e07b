"""Datasets: the interchange format, readers for the formats users of SimGAN hold, pixel scaling.

``open_dataset`` is the one entry point commands use; see :mod:`simgan.datasets.folder` for the
format itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SimganError
from .folder import (IMAGE_EXTENSIONS, LABELS_FILE, Dataset, DatasetWriter, ImageFolder, ImageSpec,
                     Record, atomic_write_bytes, decode_image, encode_png, json_line, spec_of,
                     write_dataset)
from .pixels import from_model, to_model
from .readers import HDF5Images, MPIIGaze, NPZImages, UnityEyes, gaze_angles
from .nyu import NYUHands
from .conversion import convert

__all__ = [
    "IMAGE_EXTENSIONS", "LABELS_FILE", "Dataset", "DatasetWriter", "HDF5Images", "ImageFolder", "ImageSpec",
    "MPIIGaze", "NPZImages", "NYUHands", "Record", "UnityEyes", "atomic_write_bytes", "convert", "decode_image",
    "encode_png", "from_model", "gaze_angles", "json_line", "open_dataset", "spec_of", "to_model",
    "write_dataset",
]


def open_dataset(path: str | os.PathLike, *, need_labels: bool = False, what: str = "dataset") -> Dataset:
    """Open a dataset in any supported format.

    The interchange folder (PNG + ``labels.jsonl``, or a bare folder of images) is the native
    format; other formats are recognised by :func:`simgan.datasets.readers.detect`.
    """
    p = Path(path)
    if not p.exists():
        raise SimganError(f"{what} not found: {p}")
    try:
        from . import readers
    except ImportError:  # pragma: no cover - readers are part of the package
        readers = None
    if readers is not None:
        ds = readers.detect(p, need_labels=need_labels, what=what)
        if ds is not None:
            return ds
    return ImageFolder.open(p, need_labels=need_labels, what=what)
