"""Reader of UnityEyes renders (Wood et al., ETRA 2016), the synthetic eyes of §3.1.

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
Labels follow :mod:`simgan.datasets.common`'s conventions.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import SimganError
from .common import GAZE_SIZE, RESAMPLE, Transient, gaze_labels, head_labels, rounded, unit_vector
from .folder import Dataset

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)", re.IGNORECASE)


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


class UnityEyes(Transient, Dataset):
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
        gaze = unit_vector(np.array([look[0], -look[1], look[2]]), where, "eye_details.look_vec")

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
        out = gaze_labels(geo["gaze"])
        if "head_pose" in meta:
            raw = _numbers(meta["head_pose"], where, "head_pose")
            if raw.size >= 2:
                pitch, yaw = np.radians(raw[0]), np.radians(raw[1])
                # Unity: forward = Ry(yaw) Rx(pitch) (0, 0, 1), y up; flip y for our frame.
                face = np.array([np.cos(pitch) * np.sin(yaw), np.sin(pitch), np.cos(pitch) * np.cos(yaw)])
                out.update(head_labels(face))
            out["head_pose_raw"] = rounded(raw, 4)
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
                    out[key] = rounded((points - (left, top)) * scale, 2)
        out["source"] = self.images[i]
        return out
