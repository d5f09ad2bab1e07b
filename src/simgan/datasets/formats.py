"""The formats simgan reads besides its own, and how a path is recognised as one of them.

Every reader is a :class:`~simgan.datasets.folder.Dataset`, so every command can read these
formats directly (``open_dataset`` calls :func:`detect`), and ``simgan convert`` turns them into
the interchange format (:mod:`simgan.datasets.conversion`).

One module per format: :mod:`~simgan.datasets.unityeyes`, :mod:`~simgan.datasets.mpiigaze`,
:mod:`~simgan.datasets.hdf5`, :mod:`~simgan.datasets.npz` and :mod:`~simgan.datasets.nyu`; their
shared label conventions are in :mod:`simgan.datasets.common`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SimganError
from .common import GAZE_SIZE
from .folder import IMAGE_EXTENSIONS, LABELS_FILE, Dataset, ImageFolder
from .hdf5 import HDF5_SUFFIXES, HDF5Images
from .mpiigaze import DAY_FILE, MPIIGaze
from .npz import NPZImages
from .shards import MANIFEST as SHARDS_MANIFEST
from .shards import ShardImages
from .unityeyes import UnityEyes

FORMATS = ("unityeyes", "mpiigaze", "hdf5", "npz", "nyu", "shards")


def sniff(path: str | os.PathLike) -> str | None:
    """Which of :data:`FORMATS` ``path`` holds, or ``None`` for the interchange format (or unknown).

    Files: ``.h5``/``.hdf5`` -> hdf5, ``.npz`` -> npz, ``.mat`` -> mpiigaze. Folders: one with
    ``shards.json`` is the array format (:mod:`~simgan.datasets.shards`); one with
    ``labels.jsonl`` is the interchange format; one with ``N.json`` + ``N.jpg`` pairs is
    UnityEyes; one with no images at its top level but ``dayNN.mat`` files below is MPIIGaze.
    """
    p = Path(path)
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix in HDF5_SUFFIXES:
            return "hdf5"
        if suffix == ".npz":
            return "npz"
        if p.name.lower() == "joint_data.mat":
            return "nyu"
        if suffix == ".mat":
            return "mpiigaze"
        return None
    if p.is_dir() and (p / SHARDS_MANIFEST).is_file():
        return "shards"
    if not p.is_dir() or (p / LABELS_FILE).exists():
        return None
    if (p / "joint_data.mat").is_file():
        return "nyu"
    jsons, jpgs = UnityEyes.pairs(p)
    if any(stem in jpgs for stem in jsons):
        return "unityeyes"
    with os.scandir(p) as it:
        if any(e.name.lower().endswith(IMAGE_EXTENSIONS) for e in it):
            return None  # a plain (unlabelled) image folder
    for _dirpath, dirnames, filenames in os.walk(p):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if any(DAY_FILE.match(f) for f in filenames):
            return "mpiigaze"
    return None


def open_format(path: str | os.PathLike, fmt: str, *, size: tuple[int, int] | None | str = "default",
                gray: bool | None = None, crop_scale: float = 1.5, landmarks: bool = True,
                eyes: str = "both", flip: str = "right", images_key: str | None = None,
                what: str = "dataset", nyu_kind: str = "real", cameras=None) -> Dataset:
    """Open ``path`` as format ``fmt`` (one of :data:`FORMATS`).

    ``size="default"`` means the format's own default: 55x35 for UnityEyes and MPIIGaze (the
    paper's eye images), 224x224 crops for NYU hands (§3.2), the stored size for HDF5/NPZ; ``None`` keeps the stored size. ``gray=None``
    means gray for UnityEyes and MPIIGaze, channels kept for HDF5/NPZ.
    """
    p = Path(path)
    if not p.exists():
        raise SimganError(f"{what} not found: {p}")
    gaze_size = GAZE_SIZE if size == "default" else size
    array_size = None if size == "default" else size
    if fmt == "unityeyes":
        return UnityEyes(p, size=gaze_size, gray=True if gray is None else gray, crop_scale=crop_scale,
                         landmarks=landmarks, what=what)
    if fmt == "mpiigaze":
        files = MPIIGaze.find(p)
        if not files:
            raise SimganError(f"{what} {p} holds no MPIIGaze dayNN.mat files")
        return MPIIGaze(files, eyes=eyes, flip=flip, size=gaze_size, what=what)
    if fmt == "hdf5":
        return HDF5Images(p, images_key=images_key, size=array_size, gray=bool(gray), what=what)
    if fmt == "npz":
        return NPZImages(p, images_key=images_key, size=array_size, gray=bool(gray), what=what)
    if fmt == "shards":
        if size not in ("default", None) or gray:
            raise SimganError("the array format (.shards) is read as stored: convert it to change size or channels")
        return ShardImages(p, what=what)
    if fmt == "nyu":  # §3.2: hand crops, 224x224 unless asked otherwise
        from .nyu import NYUHands

        if size is not None and size != "default" and size[0] != size[1]:
            raise SimganError(f"NYU hand crops are square; got size {size[0]}x{size[1]}")
        side = 224 if size in ("default", None) else int(size[0])
        return NYUHands(p.parent if p.is_file() else p, kind=nyu_kind, cameras=cameras, size=side, what=what)
    raise SimganError(f"unknown format {fmt!r}; choose one of auto, {', '.join(FORMATS)}")


def detect(path: str | os.PathLike, *, need_labels: bool = False, what: str = "dataset") -> Dataset | None:
    """A reader for ``path`` if it holds UnityEyes, MPIIGaze, HDF5 or NPZ data (with each
    format's defaults), else ``None`` so that the caller opens it as an interchange folder."""
    fmt = sniff(path)
    if fmt is None:
        return None
    ds = open_format(path, fmt, what=what)
    if need_labels and not ds.labelled:
        raise SimganError(f"{what} {path} has no label arrays besides the images; this command needs "
                          "labelled images")
    return ds



def open_dataset(path: str | os.PathLike, *, need_labels: bool = False, what: str = "dataset") -> Dataset:
    """Open a dataset in any supported format.

    The interchange folder (PNG + ``labels.jsonl``, or a bare folder of images) is the native
    format; other formats are recognised by :func:`detect`.
    """
    p = Path(path)
    if not p.exists():
        raise SimganError(f"{what} not found: {p}")
    ds = detect(p, need_labels=need_labels, what=what)
    if ds is not None:
        return ds
    return ImageFolder.open(p, need_labels=need_labels, what=what)
