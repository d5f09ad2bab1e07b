"""Datasets: the interchange format, readers for the formats users of SimGAN hold, pixel scaling.

``open_dataset`` is the one entry point commands use; see :mod:`simgan.datasets.folder` for the
format itself, :mod:`simgan.datasets.formats` for how other formats are recognised, and one module
per external format (``unityeyes``, ``mpiigaze``, ``hdf5``, ``npz``, ``nyu``).
"""

from __future__ import annotations

from .folder import (IMAGE_EXTENSIONS, LABELS_FILE, Dataset, DatasetWriter, ImageFolder, ImageSpec,
                     Record, atomic_write_bytes, decode_image, encode_png, json_line, spec_of,
                     write_dataset)
from .pixels import from_model, to_model
from .common import gaze_angles
from .formats import open_dataset
from .hdf5 import HDF5Images
from .mpiigaze import MPIIGaze
from .npz import NPZImages
from .unityeyes import UnityEyes
from .nyu import NYUHands
from .conversion import convert

__all__ = [
    "IMAGE_EXTENSIONS", "LABELS_FILE", "Dataset", "DatasetWriter", "HDF5Images", "ImageFolder", "ImageSpec",
    "MPIIGaze", "NPZImages", "NYUHands", "Record", "UnityEyes", "atomic_write_bytes", "convert", "decode_image",
    "encode_png", "from_model", "gaze_angles", "json_line", "open_dataset", "spec_of", "to_model",
    "write_dataset",
]
