"""Readers for the data SimGAN users hold: UnityEyes, MPIIGaze, HDF5 and NPZ.

Every reader is a :class:`~simgan.datasets.folder.Dataset`, so every command can read these
formats directly (``open_dataset`` calls :func:`detect`), and ``simgan convert`` turns them into
the interchange format (:mod:`simgan.datasets.conversion`).

Conventions shared by every reader
----------------------------------
``gaze``
    Unit 3-vector in camera coordinates: x right in the image, y down, z away from the camera, so
    an eye looking into the camera has ``gaze ≈ [0, 0, -1]``. ``pitch = asin(-gaze_y)`` (up is
    positive) and ``yaw = atan2(-gaze_x, -gaze_z)`` (towards the image's left is positive), in
    radians: MPIIGaze's convention (Zhang et al., CVPR 2015).
``head_pitch``, ``head_yaw``
    The direction the face points, in the same camera coordinates and with the same formulas.
    ``head_pose_raw`` keeps the source's own head-pose numbers.
Image coordinates (landmarks)
    Continuous pixel coordinates of the written image: origin at the top-left corner of the
    top-left pixel, x right, y down, the pixel in row r and column c covering
    ``[c, c+1) x [r, r+1)`` (so its centre is ``(c + 0.5, r + 0.5)``).

UnityEyes (Wood et al., ETRA 2016)
----------------------------------
A folder of ``N.jpg`` + ``N.json`` pairs. The JSON's landmark lists (``interior_margin_2d``,
``caruncle_2d``, ``iris_2d``) are strings ``"(x, y, z)"`` in screen pixels with **y measured from
the bottom** of the image (Unity screen space), so ``y_image = height - y``; this is what
UnityEyes' own ``visualize.py`` and GazeML's ``unityeyes.py`` do. ``eye_details.look_vec`` is
``"(x, y, z, 0)"`` in Unity camera space: x right, **y up**, z away from the camera (Unity's
left-handed frame; a rendered eye looking at the camera has ``z < 0``). The same public code
draws it in the image as ``(x, -y)`` and places the iris at ``centre + r * (x, -y)``, so the
conversion to our convention is just a flip of y::

    gaze = normalise(look_x, -look_y, look_z)

UnityEyes renders a left eye (inner corner and caruncle on the image's left). The crop follows
GazeML's UnityEyes preprocessing: the inner eye corner is the mean of ``caruncle_2d``, the outer
corner the ``interior_margin_2d`` point farthest from it; the crop is centred on the middle of the
bounding box of ``interior_margin_2d``, is ``crop_scale`` (default 1.5) times the corner distance
wide, and has the output's aspect ratio (55:35 by default). Parts of the crop outside the render
repeat its edge pixels. Landmarks are kept (x, y only) in the crop's pixel coordinates.
``head_pose`` is Unity Euler angles in degrees, ``(pitch, yaw, roll)``, with a face looking into
the camera at ``(0, 180, 0)`` (GazeML subtracts 180 from the yaw); the face direction is Unity's
``Ry(yaw) Rx(pitch) (0, 0, 1)`` with y flipped, which gives ``head_pitch = -pitch`` and
``head_yaw = yaw - 180°``.

MPIIGaze normalized data (Zhang et al., CVPR 2015)
--------------------------------------------------
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

HDF5 and NPZ
------------
An images array (the one named ``images``, else the only 3-D or 4-D uint8/uint16 array) shaped
N x H x W, N x H x W x C or N x C x H x W with C in {1, 3} (channels-last wins when both could
be), and optional labels: every other array whose first dimension is N becomes a label key
(``gaze`` N x 3 -> ``"gaze": [x, y, z]``). Scalars are ignored; any other array of another length
is an error, as is a label named ``file`` (the interchange format's own key).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import threading
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import SimganError
from .folder import IMAGE_EXTENSIONS, LABELS_FILE, Dataset
from ..gaze_convention import gaze_angles

#: The paper's eye-image size (§3.1), width x height.
GAZE_SIZE = (55, 35)
#: Resampling filter for every resize (antialiased when shrinking).
RESAMPLE = Image.Resampling.BICUBIC
FORMATS = ("unityeyes", "mpiigaze", "hdf5", "npz", "nyu")
HDF5_SUFFIXES = (".h5", ".hdf5", ".he5")
_MPII_DAY = re.compile(r"^day\d+\.mat$", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)", re.IGNORECASE)


# ----------------------------------------------------------------------------------------------
# shared helpers


def _unit(vec: np.ndarray, where: str, name: str) -> np.ndarray:
    vec = np.asarray(vec, dtype=np.float64)
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm < 1e-9:
        raise SimganError(f"{where}: {name} {vec.tolist()} is not a direction (zero or not finite)")
    return vec / norm


def _rounded(values, digits: int):
    """Nested lists of floats rounded for compact ``labels.jsonl`` lines."""
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


def _gaze_labels(gaze: np.ndarray) -> dict:
    pitch, yaw = gaze_angles(gaze)
    return {"gaze": _rounded(gaze, 6), "pitch": round(pitch, 6), "yaw": round(yaw, 6)}


def _head_labels(face_direction: np.ndarray) -> dict:
    pitch, yaw = gaze_angles(face_direction)
    return {"head_pitch": round(pitch, 6), "head_yaw": round(yaw, 6)}


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"55x35"`` -> ``(55, 35)`` (width, height); ``"native"`` or ``None`` -> ``None``."""
    if text is None or text.strip().lower() == "native":
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise SimganError(f"size must look like WIDTHxHEIGHT (e.g. 55x35) or 'native', got {text!r}")
    return int(m.group(1)), int(m.group(2))


def to_gray(images: np.ndarray) -> np.ndarray:
    """``... x H x W x 3`` RGB -> ``... x H x W x 1`` luma (ITU-R 601, as Pillow's ``convert("L")``).

    Works for uint8 and uint16 with the same fixed-point weights Pillow uses, rounded to nearest.
    One-channel input is returned unchanged.
    """
    if images.shape[-1] == 1:
        return images
    if images.shape[-1] != 3:
        raise SimganError(f"cannot convert a {images.shape[-1]}-channel image to gray")
    rgb = images.astype(np.int64)
    luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
    return luma.astype(images.dtype)[..., None]


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize one ``H x W x C`` uint8 (gray/RGB) or uint16 (gray) image to ``size = (w, h)``."""
    w, h = size
    if image.shape[1] == w and image.shape[0] == h:
        return image
    if image.dtype == np.uint16:
        planes = []
        for c in range(image.shape[2]):
            im = Image.fromarray(image[:, :, c].astype(np.float32))
            plane = np.asarray(im.resize((w, h), RESAMPLE))
            planes.append(np.clip(np.rint(plane), 0, 65535).astype(np.uint16))
        return np.stack(planes, axis=2)
    if image.shape[2] == 1:
        return np.asarray(Image.fromarray(image[:, :, 0]).resize((w, h), RESAMPLE))[:, :, None]
    if image.shape[2] == 3:
        return np.asarray(Image.fromarray(image).resize((w, h), RESAMPLE))
    raise SimganError(f"cannot resize a {image.shape[2]}-channel image")


def _native(arr: np.ndarray) -> np.ndarray:
    """``arr`` in native byte order (HDF5 and .npy files may hold big-endian data)."""
    if arr.dtype.byteorder not in "=|":
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr


class _Transient:
    """Pickling support for readers with locks, caches or open files (e.g. for DataLoader workers):
    the attributes named in ``_TRANSIENT`` are dropped and rebuilt by ``_init_transient``."""

    _TRANSIENT: tuple[str, ...] = ()

    def _init_transient(self) -> None:  # pragma: no cover - overridden
        pass

    def __getstate__(self):
        state = self.__dict__.copy()
        for key in self._TRANSIENT:
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_transient()


# ----------------------------------------------------------------------------------------------
# UnityEyes


def _numbers(value, where: str, key: str) -> np.ndarray:
    """A UnityEyes vector: a string like ``"(1.0, -2.5, 3)"`` (or an already-parsed list)."""
    if isinstance(value, str):
        nums = [float(t) for t in _NUMBER.findall(value)]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
        nums = [float(v) for v in value]
    else:
        raise SimganError(f"{where}: {key} must be a string like \"(x, y, z)\", got {value!r}")
    if not nums:
        raise SimganError(f"{where}: {key} holds no numbers: {value!r}")
    return np.array(nums, dtype=np.float64)


def _landmarks(meta: dict, key: str, where: str, height: int, *, required: bool) -> np.ndarray | None:
    """Landmark list ``key`` as an ``M x 2`` array in top-down image coordinates."""
    value = meta.get(key)
    if value is None or (isinstance(value, list) and not value):
        if required:
            raise SimganError(f"{where}: no {key} landmarks; cannot find the eye to crop it")
        return None
    if not isinstance(value, list):
        raise SimganError(f"{where}: {key} must be a list of \"(x, y, z)\" strings")
    points = []
    for item in value:
        p = _numbers(item, where, key)
        if p.size < 2:
            raise SimganError(f"{where}: {key} entry {item!r} needs at least x and y")
        points.append((p[0], height - p[1]))  # Unity screen y is measured from the bottom
    return np.array(points, dtype=np.float64)


class UnityEyes(_Transient, Dataset):
    """UnityEyes renders (``N.jpg`` + ``N.json``), cropped around the eye (see the module docs).

    ``size`` is the output ``(width, height)``, ``gray`` converts to one channel (the paper's
    setting), ``crop_scale`` is the crop width over the eye-corner distance, ``landmarks`` keeps
    the eyelid, caruncle and iris landmarks in the labels.
    """

    labelled = True
    _TRANSIENT = ("_geometry",)

    def __init__(self, root: str | os.PathLike, *, size: tuple[int, int] = GAZE_SIZE, gray: bool = True,
                 crop_scale: float = 1.5, landmarks: bool = True, what: str = "dataset"):
        self.root = Path(root)
        if size is None:
            raise SimganError("UnityEyes renders are always cropped around the eye: give a size such as 55x35")
        if not crop_scale > 0:
            raise SimganError(f"crop scale must be positive, got {crop_scale}")
        self.size = (int(size[0]), int(size[1]))
        self.gray = gray
        self.crop_scale = float(crop_scale)
        self.keep_landmarks = landmarks
        self.stems, self.images = self._scan(self.root, what)
        self._spec = None
        self._init_transient()

    def _init_transient(self) -> None:
        # Parsed JSON + crop geometry, shared by read() and labels() of the same image.
        self._geometry = functools.lru_cache(maxsize=2048)(self._compute_geometry)

    @staticmethod
    def pairs(root: Path) -> tuple[dict[str, str], dict[str, str]]:
        """``(stem -> json name, stem -> jpg name)`` for the files directly inside ``root``."""
        jsons: dict[str, str] = {}
        jpgs: dict[str, str] = {}
        with os.scandir(root) as it:
            for entry in it:
                stem, ext = os.path.splitext(entry.name)
                ext = ext.lower()
                if ext == ".json":
                    jsons[stem] = entry.name
                elif ext in (".jpg", ".jpeg"):
                    jpgs[stem] = entry.name
        return jsons, jpgs

    @classmethod
    def _scan(cls, root: Path, what: str) -> tuple[list[str], list[str]]:
        if not root.is_dir():
            raise SimganError(f"{what} {root} is not a folder of UnityEyes .jpg + .json pairs")
        jsons, jpgs = cls.pairs(root)
        if not jsons:
            raise SimganError(f"{what} {root} holds no UnityEyes .json files")
        for stem, name in sorted(jsons.items()):
            if stem not in jpgs:
                raise SimganError(f"UnityEyes label {root / name} has no image {stem}.jpg beside it")
        for stem, name in sorted(jpgs.items()):
            if stem not in jsons:
                raise SimganError(f"UnityEyes image {root / name} has no labels {stem}.json beside it")
        stems = sorted(jsons, key=lambda s: (0, int(s), "") if s.isascii() and s.isdigit() else (1, 0, s))
        return stems, [jpgs[s] for s in stems]

    # -- per-image geometry ------------------------------------------------------------------
    def _compute_geometry(self, i: int) -> dict:
        stem = self.stems[i]
        json_path = self.root / f"{stem}.json"
        where = str(json_path)
        try:
            with open(json_path, "rb") as fh:
                meta = json.loads(fh.read())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise SimganError(f"{where}: not valid JSON") from None
        except OSError as exc:
            raise SimganError(f"cannot read {where}: {exc.strerror or exc}") from None
        if not isinstance(meta, dict):
            raise SimganError(f"{where}: expected a JSON object")
        details = meta.get("eye_details")
        if not isinstance(details, dict) or "look_vec" not in details:
            raise SimganError(f"{where}: no eye_details.look_vec (the gaze direction)")
        look = _numbers(details["look_vec"], where, "eye_details.look_vec")
        if look.size < 3:
            raise SimganError(f"{where}: eye_details.look_vec needs 3 components, got {details['look_vec']!r}")
        # Unity camera space (x right, y up, z away) -> ours (x right, y down, z away).
        gaze = _unit(np.array([look[0], -look[1], look[2]]), where, "eye_details.look_vec")

        width, height = self._image_size(i)
        interior = _landmarks(meta, "interior_margin_2d", where, height, required=True)
        caruncle = _landmarks(meta, "caruncle_2d", where, height, required=False)
        iris = _landmarks(meta, "iris_2d", where, height, required=False)
        if len(interior) < 2:
            raise SimganError(f"{where}: interior_margin_2d needs at least 2 points to find the eye")

        if caruncle is not None:
            inner = caruncle.mean(axis=0)
        else:  # no caruncle: only the corner distance matters, so start from the leftmost point
            inner = interior[np.argmin(interior[:, 0])]
        outer = interior[np.argmax(np.linalg.norm(interior - inner, axis=1))]
        eye_width = float(np.linalg.norm(outer - inner))
        if not eye_width > 0.5:
            raise SimganError(f"{where}: eye corners coincide; cannot size the crop")
        centre = (interior.min(axis=0) + interior.max(axis=0)) / 2
        out_w, out_h = self.size
        crop_w = self.crop_scale * eye_width
        crop_h = crop_w * out_h / out_w
        box = (centre[0] - crop_w / 2, centre[1] - crop_h / 2, centre[0] + crop_w / 2, centre[1] + crop_h / 2)
        return {"meta": meta, "gaze": gaze, "box": box, "image_size": (width, height),
                "landmarks": {"interior_margin": interior, "caruncle": caruncle, "iris": iris}}

    def _image_size(self, i: int) -> tuple[int, int]:
        path = self.root / self.images[i]
        try:
            with Image.open(path) as im:
                return im.size
        except FileNotFoundError:
            raise SimganError(f"image file not found: {path}") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise SimganError(f"cannot read image {path}: corrupt or not an image ({exc})") from None

    def crop_box(self, i: int) -> tuple[float, float, float, float]:
        """The crop ``(left, top, right, bottom)`` in the render's continuous pixel coordinates."""
        return self._geometry(i)["box"]

    # -- Dataset -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.stems)

    def describe(self, i: int) -> str:
        return str(self.root / self.images[i])

    def read(self, i: int) -> np.ndarray:
        geo = self._geometry(i)
        path = self.root / self.images[i]
        mode = "L" if self.gray else "RGB"
        left, top, right, bottom = geo["box"]
        out_w, out_h = self.size
        try:
            with Image.open(path) as im:
                full_w, full_h = im.size
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale while that still leaves >= 2 source
                # pixels per output pixel: much faster on big renders, same antialiased result.
                shrink = (right - left) / out_w
                reduce = 1
                while reduce < 8 and reduce * 4 <= shrink:
                    reduce *= 2
                if reduce > 1 and im.format == "JPEG":
                    im.draft(mode, (math.ceil(full_w / reduce), math.ceil(full_h / reduce)))
                # libjpeg scales by exactly 1/2^k and rounds the size up, so take the factor, not
                # the size ratio (they differ when the render's size is not a multiple of 2^k).
                scale = 1.0 / 2 ** round(math.log2(full_w / im.size[0]))
                im = im.convert(mode)
                box = (left * scale, top * scale, right * scale, bottom * scale)
                pad = math.ceil(max(0.0, -box[0], -box[1], box[2] - im.size[0], box[3] - im.size[1]))
                if pad:
                    pad += 2  # room for the resampling filter at the border
                    arr = np.asarray(im)
                    widths = ((pad, pad), (pad, pad)) + (((0, 0),) if arr.ndim == 3 else ())
                    im = Image.fromarray(np.pad(arr, widths, mode="edge"))
                    box = tuple(v + pad for v in box)
                out = np.asarray(im.resize((out_w, out_h), RESAMPLE, box=box))
        except FileNotFoundError:
            raise SimganError(f"image file not found: {path}") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise SimganError(f"cannot read image {path}: corrupt or not an image ({exc})") from None
        return out[:, :, None] if out.ndim == 2 else out

    def labels(self, i: int) -> dict:
        geo = self._geometry(i)
        meta = geo["meta"]
        where = str(self.root / f"{self.stems[i]}.json")
        out = _gaze_labels(geo["gaze"])
        if "head_pose" in meta:
            raw = _numbers(meta["head_pose"], where, "head_pose")
            if raw.size >= 2:
                pitch, yaw = np.radians(raw[0]), np.radians(raw[1])
                # Unity: forward = Ry(yaw) Rx(pitch) (0, 0, 1), y up; flip y for our frame.
                face = np.array([np.cos(pitch) * np.sin(yaw), np.sin(pitch), np.cos(pitch) * np.cos(yaw)])
                out.update(_head_labels(face))
            out["head_pose_raw"] = _rounded(raw, 4)
        details = meta.get("eye_details", {})
        for key in ("pupil_size", "iris_size"):
            if key in details:
                value = _numbers(details[key], where, f"eye_details.{key}")
                out[key] = round(float(value[0]), 6)
        if self.keep_landmarks:
            left, top, right, _ = geo["box"]
            scale = self.size[0] / (right - left)
            for key, points in geo["landmarks"].items():
                if points is not None:
                    out[key] = _rounded((points - (left, top)) * scale, 2)
        out["source"] = self.images[i]
        return out


# ----------------------------------------------------------------------------------------------
# MPIIGaze


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


class MPIIGaze(_Transient, Dataset):
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
            found.extend(Path(dirpath) / f for f in sorted(filenames) if _MPII_DAY.match(f))
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
        gaze = _unit(parsed[side]["gaze"][j], where, "gaze")
        rvec = parsed[side]["pose"][j].copy()
        flipped = self._flipped(side)
        if flipped:
            # Mirroring x (M = diag(-1, 1, 1)): vectors x -> -x, rotations R -> M R M, i.e. a
            # rotation vector (axial) becomes (rx, -ry, -rz).
            gaze = gaze * (-1.0, 1.0, 1.0)
            rvec = rvec * (1.0, -1.0, -1.0)
        out = _gaze_labels(gaze)
        # The head frame's z axis points back into the head: the face points along -z.
        out.update(_head_labels(-_rodrigues(rvec)[:, 2]))
        path = self.files[k]
        out["head_pose_raw"] = _rounded(rvec, 6)
        out["participant"] = path.parent.name
        out["day"] = path.stem
        out["index"] = j
        out["side"] = side
        out["flipped"] = flipped
        if parsed["filenames"][j]:
            out["source"] = parsed["filenames"][j]
        return out


# ----------------------------------------------------------------------------------------------
# HDF5 and NPZ


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


class ArrayImages(_Transient, Dataset):
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
        raw = _native(np.asarray(raw))
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
                cached = (block, _native(np.asarray(self._fetch(key, start, min(self.n, start + self._LABEL_BLOCK)))))
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


# ----------------------------------------------------------------------------------------------
# detection


def sniff(path: str | os.PathLike) -> str | None:
    """Which of :data:`FORMATS` ``path`` holds, or ``None`` for the interchange format (or unknown).

    Files: ``.h5``/``.hdf5`` -> hdf5, ``.npz`` -> npz, ``.mat`` -> mpiigaze. Folders: one with
    ``labels.jsonl`` is always the interchange format; one with ``N.json`` + ``N.jpg`` pairs is
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
        if any(_MPII_DAY.match(f) for f in filenames):
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


__all__ = [
    "FORMATS", "GAZE_SIZE", "ArrayImages", "HDF5Images", "MPIIGaze", "NPZImages", "UnityEyes", "detect",
    "gaze_angles", "open_format", "parse_size", "resize_image", "sniff", "to_gray",
]
