"""What every reader of an external format shares: the label conventions, resizing, gray
conversion and pickling support.

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
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from ..errors import SimganError
from ..gaze_convention import gaze_angles

#: The paper's eye-image size (§3.1), width x height.
GAZE_SIZE = (55, 35)
#: Resampling filter for every resize (antialiased when shrinking).
RESAMPLE = Image.Resampling.BICUBIC


def unit_vector(vec: np.ndarray, where: str, name: str) -> np.ndarray:
    vec = np.asarray(vec, dtype=np.float64)
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm < 1e-9:
        raise SimganError(f"{where}: {name} {vec.tolist()} is not a direction (zero or not finite)")
    return vec / norm


def rounded(values, digits: int):
    """Nested lists of floats rounded for compact ``labels.jsonl`` lines."""
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


def gaze_labels(gaze: np.ndarray) -> dict:
    pitch, yaw = gaze_angles(gaze)
    return {"gaze": rounded(gaze, 6), "pitch": round(pitch, 6), "yaw": round(yaw, 6)}


def head_labels(face_direction: np.ndarray) -> dict:
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


def native_order(arr: np.ndarray) -> np.ndarray:
    """``arr`` in native byte order (HDF5 and .npy files may hold big-endian data)."""
    if arr.dtype.byteorder not in "=|":
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr


class Transient:
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

