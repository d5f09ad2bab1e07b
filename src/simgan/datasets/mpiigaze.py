"""Reader of MPIIGaze normalized data (Zhang et al., CVPR 2015), the real eyes of §3.1.

``Data/Normalized/pXX/dayYY.mat`` (MATLAB v5): a struct ``data`` with ``left`` and ``right``,
each holding ``image`` (N x 36 x 60 uint8 gray), ``gaze`` (N x 3) and ``pose`` (N x 3, a Rodrigues
rotation vector of the head), and a cell array ``filenames`` (N). The gaze vectors live in the
normalized camera's OpenCV frame (x right, y down, z forward), which is already our convention:
hysts/pytorch_mpiigaze converts them with exactly ``asin(-y), atan2(-x, -z)``. Head pitch/yaw
come from the head frame's z axis (which points back into the head, so the face points along its
negation), the same as ``convert_pose`` there.

By default right eyes are mirrored left-right (image, gaze x, head yaw) so that every image shows
a left eye like UnityEyes' renders; this is what hysts/pytorch_mpiigaze does too. ``flip`` picks
``"right"`` (default), ``"left"`` (mirror left eyes instead: every image shows a right eye) or
``"none"``. ``eyes`` picks ``"both"`` (default), ``"left"`` or ``"right"``. Images are resized
from 60x36 to the paper's 55x35 unless ``size=None``.
Labels follow :mod:`simgan.datasets.common`'s conventions.
"""

from __future__ import annotations

import math
import os
import re
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import SimganError
from .common import GAZE_SIZE, Transient, gaze_labels, head_labels, resize_image, rounded, unit_vector
from .folder import Dataset

#: The name of an MPIIGaze day file (``day01.mat``).
DAY_FILE = re.compile(r"^day\d+\.mat$", re.IGNORECASE)


def _rodrigues(rvec: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (axis * angle), as OpenCV's ``Rodrigues``."""
    theta = float(np.linalg.norm(rvec))
    if theta < 1e-12:
        return np.eye(3)
    k = rvec / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(theta) * kx + (1 - math.cos(theta)) * kx @ kx


_MAT_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError, KeyError, IndexError,
                                                AttributeError, NotImplementedError, EOFError)


def _mat_error(path: Path, exc: BaseException) -> SimganError:
    if isinstance(exc, NotImplementedError):  # scipy's answer to MATLAB v7.3 (HDF5) files
        return SimganError(f"cannot read {path}: MATLAB v7.3 files are not supported; save it as v5 (-v7)")
    return SimganError(f"cannot read {path}: corrupt or not a MATLAB v5 file ({exc})")


class MPIIGaze(Transient, Dataset):
    """MPIIGaze normalized eye images from ``dayYY.mat`` files (see the module docs).

    ``files`` are the ``.mat`` files in order; ``eyes`` selects ``"both"``, ``"left"`` or
    ``"right"``; ``flip`` mirrors ``"right"`` eyes (default: all images show a left eye, like
    UnityEyes), ``"left"`` eyes, or ``"none"``; ``size`` resizes (``None`` keeps 60x36).
    Files are loaded when first needed and the last few stay cached.
    """

    labelled = True
    _TRANSIENT = ("_cache", "_order", "_lock")

    def __init__(self, files: Sequence[str | os.PathLike], *, eyes: str = "both", flip: str = "right",
                 size: tuple[int, int] | None = GAZE_SIZE, what: str = "dataset"):
        if eyes not in ("both", "left", "right"):
            raise SimganError(f"eyes must be both, left or right, got {eyes!r}")
        if flip not in ("right", "left", "none"):
            raise SimganError(f"flip must be right, left or none, got {flip!r}")
        self.files = [Path(f) for f in files]
        if not self.files:
            raise SimganError(f"{what}: no MPIIGaze dayNN.mat files")
        self.sides = ("left", "right") if eyes == "both" else (eyes,)
        self.flip = flip
        self.size = size
        counts = [self._count(f) for f in self.files]
        self.offsets = np.concatenate([[0], np.cumsum([c * len(self.sides) for c in counts])]).astype(np.int64)
        self._spec = None
        self._init_transient()

    def _init_transient(self) -> None:
        self._cache: dict[int, dict] = {}  # file index -> parsed file, the last few used
        self._order: list[int] = []
        self._lock = threading.Lock()

    @staticmethod
    def find(root: Path) -> list[Path]:
        """The ``dayNN.mat`` files under ``root`` (a file, or a folder searched recursively)."""
        if root.is_file():
            return [root]
        found = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found.extend(Path(dirpath) / f for f in sorted(filenames) if DAY_FILE.match(f))
        return found

    @staticmethod
    def _count(path: Path) -> int:
        """Samples in ``path``, read from the MAT header of ``filenames`` (no image data loaded)."""
        import scipy.io

        try:
            info = {name: shape for name, shape, _ in scipy.io.whosmat(str(path))}
        except _MAT_ERRORS + (scipy.io.matlab.MatReadError,) as exc:
            raise _mat_error(path, exc) from None
        if "data" not in info:
            raise SimganError(f"{path}: no 'data' struct; not an MPIIGaze normalized .mat file")
        if "filenames" in info:
            return int(np.prod(info["filenames"]))
        return MPIIGaze._parse(path)["count"]

    @staticmethod
    def _parse(path: Path) -> dict:
        """Load one ``.mat`` file into ``{"count", "filenames", side: {"image", "gaze", "pose"}}``."""
        import scipy.io

        try:
            mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
        except _MAT_ERRORS + (scipy.io.matlab.MatReadError,) as exc:
            raise _mat_error(path, exc) from None
        data = mat.get("data")
        if data is None:
            raise SimganError(f"{path}: no 'data' struct; not an MPIIGaze normalized .mat file")
        out: dict = {}
        count = None
        for side in ("left", "right"):
            eye = getattr(data, side, None)
            if eye is None:
                raise SimganError(f"{path}: data has no '{side}' eye struct")
            fields = {}
            for field in ("image", "gaze", "pose"):
                value = getattr(eye, field, None)
                if not isinstance(value, np.ndarray) or value.size == 0:
                    raise SimganError(f"{path}: data.{side}.{field} is missing or empty")
                fields[field] = value
            image = fields["image"]
            if image.ndim == 2:  # squeeze_me drops the sample axis of a one-sample file
                image = image[None]
            if image.ndim != 3 or image.dtype not in (np.uint8, np.uint16):
                raise SimganError(f"{path}: data.{side}.image must be N x H x W uint8, got "
                                  f"{image.shape} {image.dtype}")
            n = image.shape[0]
            vectors = {}
            for field in ("gaze", "pose"):
                try:
                    arr = np.asarray(fields[field], dtype=np.float64)
                except (TypeError, ValueError):
                    arr = np.empty(0)
                if arr.size != 3 * n:
                    raise SimganError(f"{path}: data.{side} has {n} images but {field} is not {n} x 3 "
                                      f"(shape {np.shape(fields[field])})")
                vectors[field] = arr.reshape(n, 3)
            if count is not None and n != count:
                raise SimganError(f"{path}: data.left has {count} images but data.right has {n}")
            count = n
            out[side] = {"image": np.ascontiguousarray(image), **vectors}
        names = mat.get("filenames")
        if names is None:
            names = [""] * count
        else:
            names = [str(v) for v in np.atleast_1d(names).ravel()]
            if len(names) != count:
                raise SimganError(f"{path}: {len(names)} filenames but {count} images per eye")
        out["count"] = count
        out["filenames"] = names
        return out

    def _load(self, k: int) -> dict:
        with self._lock:
            if k in self._cache:
                return self._cache[k]
            parsed = self._parse(self.files[k])
            expected = (self.offsets[k + 1] - self.offsets[k]) // len(self.sides)
            if parsed["count"] != expected:
                raise SimganError(f"{self.files[k]}: its header lists {expected} filenames but it holds "
                                  f"{parsed['count']} images per eye")
            self._cache[k] = parsed
            self._order.append(k)
            while len(self._order) > 4:
                self._cache.pop(self._order.pop(0), None)
            return parsed

    def _locate(self, i: int) -> tuple[int, int, str]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        local = i - int(self.offsets[k])
        return k, local // len(self.sides), self.sides[local % len(self.sides)]

    def _flipped(self, side: str) -> bool:
        return self.flip == side

    # -- Dataset -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.offsets[-1])

    def describe(self, i: int) -> str:
        k, j, side = self._locate(i)
        return f"{self.files[k]} ({side} eye #{j})"

    def read(self, i: int) -> np.ndarray:
        k, j, side = self._locate(i)
        image = self._load(k)[side]["image"][j]
        if self._flipped(side):
            image = image[:, ::-1]
        image = np.ascontiguousarray(image)[:, :, None]
        return resize_image(image, self.size) if self.size is not None else image

    def labels(self, i: int) -> dict:
        k, j, side = self._locate(i)
        parsed = self._load(k)
        where = self.describe(i)
        gaze = unit_vector(parsed[side]["gaze"][j], where, "gaze")
        rvec = parsed[side]["pose"][j].copy()
        flipped = self._flipped(side)
        if flipped:
            # Mirroring x (M = diag(-1, 1, 1)): vectors x -> -x, rotations R -> M R M, i.e. a
            # rotation vector (axial) becomes (rx, -ry, -rz).
            gaze = gaze * (-1.0, 1.0, 1.0)
            rvec = rvec * (1.0, -1.0, -1.0)
        out = gaze_labels(gaze)
        # The head frame's z axis points back into the head: the face points along -z.
        out.update(head_labels(-_rodrigues(rvec)[:, 2]))
        path = self.files[k]
        out["head_pose_raw"] = rounded(rvec, 6)
        out["participant"] = path.parent.name
        out["day"] = path.stem
        out["index"] = j
        out["side"] = side
        out["flipped"] = flipped
        if parsed["filenames"][j]:
            out["source"] = parsed["filenames"][j]
        return out
