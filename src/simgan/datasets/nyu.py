"""Reader of the NYU hand pose data set (Tompson et al., ACM ToG 2014), the data of §3.2.

Layout of a split folder (``train/`` or ``test/`` of the download)::

    joint_data.mat                  joint_uvd, joint_xyz: (cameras, frames, 36, 3) float
    depth_K_NNNNNNN.png             Kinect depth of camera K (1..3), frame N (1-based, 7 digits)
    synthdepth_K_NNNNNNN.png        the synthetic render of the fitted hand model for that frame

The depth PNGs are 8-bit RGB holding depth in millimetres in two channels: ``depth = green * 256 +
blue`` (red unused); 0 is "no reading". ``joint_uvd`` gives each joint's pixel (u, v) in the
640x480 frame and its depth in mm, ``joint_xyz`` its camera-space position in mm.

§3.2: "We pre-process the data by cropping the pixels from real images using the synthetic
images. The images are resized to 224x224 before passing them to the ConvNet", and "We train on
the same 14 hand joints as in [38]": NYU's joints 0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31,
32 (:data:`simgan.simulators.hand_scene.NYU_JOINT_INDICES`). The crop is the same for a frame's
real and synthetic image: a square around the frame's labelled joints (which the synthetic
render is fitted to), ``margin`` times the larger side of their bounding box, centred on it;
resized to ``size x size`` with nearest-neighbour sampling (interpolating depth across a
silhouette would invent depths), outside the frame: 0. Labels per image: ``uv`` (the 14 joints
in the crop's pixels), ``depth`` (mm), ``xyz`` (mm), ``crop`` ({"box": [x0, y0, side] in frame
pixels, the edges of the square}), ``camera``, ``frame``, ``kind`` (real or synthetic).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import SimganError
from .folder import Dataset

MAT_FILE = "joint_data.mat"
KINDS = {"real": "depth", "synthetic": "synthdepth"}
NYU_EVAL_JOINTS = (0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32)


def decode_nyu_depth(path: Path) -> np.ndarray:
    """Depth in mm (uint16, H x W) of an NYU depth PNG: ``green * 256 + blue``."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("RGB", "RGBA"):
                raise SimganError(f"{path}: NYU depth images are RGB (depth = green * 256 + blue), got mode {im.mode}")
            a = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise SimganError(f"NYU depth image not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise SimganError(f"cannot read NYU depth image {path}: {exc}") from None
    return a[:, :, 1].astype(np.uint16) * 256 + a[:, :, 2].astype(np.uint16)


def crop_box(uv: np.ndarray, margin: float) -> tuple[float, float, float]:
    """The square ``(x0, y0, side)`` (edges, in frame pixels) around joints ``uv`` (J x 2)."""
    lo, hi = uv.min(0), uv.max(0)
    side = max(float((hi - lo).max()) * margin, 8.0)
    c = (lo + hi) / 2.0 + 0.5  # pixel centres at integers -> edge coordinates
    return float(c[0] - side / 2), float(c[1] - side / 2), side


def crop_depth(depth: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """Nearest-neighbour crop of ``box`` resized to ``size x size``; outside the frame: 0."""
    x0, y0, side = box
    g = (np.arange(size) + 0.5) * (side / size)
    xs = np.floor(x0 + g).astype(np.int64)
    ys = np.floor(y0 + g).astype(np.int64)
    h, w = depth.shape
    out = depth[np.clip(ys, 0, h - 1)[:, None], np.clip(xs, 0, w - 1)[None, :]]
    inside = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
    return np.where(inside, out, 0).astype(np.uint16)


def to_crop(uv: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """Frame pixel coordinates -> crop pixel coordinates (pixel centres at integers in both)."""
    x0, y0, side = box
    return (uv + 0.5 - np.array([x0, y0])) * (size / side) - 0.5


class NYUHands(Dataset):
    """One split of the NYU hand pose data set as 224x224 hand crops with the 14 joints."""

    labelled = True

    def __init__(self, root: str | os.PathLike, *, kind: str = "real", cameras=None, size: int = 224,
                 margin: float = 1.3, what: str = "dataset"):
        from scipy.io import loadmat

        self.root = Path(root)
        if kind not in KINDS:
            raise SimganError(f"NYU image kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not isinstance(size, int) or not 16 <= size <= 4096:
            raise SimganError(f"NYU crop size must be an integer from 16 to 4096, got {size!r}")
        if not margin >= 1.0:
            raise SimganError(f"NYU crop margin must be >= 1, got {margin!r}")
        mat = self.root / MAT_FILE
        if not mat.is_file():
            raise SimganError(f"{what} {self.root} has no {MAT_FILE}; not an NYU hand pose folder")
        try:
            m = loadmat(mat, variable_names=["joint_uvd", "joint_xyz"])
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
            raise SimganError(f"cannot read {mat}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        uvd, xyz = m.get("joint_uvd"), m.get("joint_xyz")
        for name, a in (("joint_uvd", uvd), ("joint_xyz", xyz)):
            if a is None:
                raise SimganError(f"{mat} has no {name} array")
            if a.ndim != 4 or a.shape[3] != 3 or not np.issubdtype(a.dtype, np.number):
                raise SimganError(f"{mat}: {name} must be cameras x frames x joints x 3, got shape {a.shape}")
        if uvd.shape != xyz.shape:
            raise SimganError(f"{mat}: joint_uvd {uvd.shape} and joint_xyz {xyz.shape} differ in shape")
        n_cam, n_frames, n_joints, _ = uvd.shape
        if n_joints == 36:
            sel = list(NYU_EVAL_JOINTS)
        elif n_joints == 14:
            sel = list(range(14))
        else:
            raise SimganError(f"{mat}: expected 36 joints (or the 14 evaluation joints), got {n_joints}")
        cams = list(range(1, n_cam + 1)) if cameras is None else [int(c) for c in cameras]
        bad = [c for c in cams if not 1 <= c <= n_cam]
        if bad or not cams:
            raise SimganError(f"NYU camera must be in 1..{n_cam}, got {cameras!r}")
        self.uvd_all, self.uvd, self.xyz = uvd.astype(np.float64), uvd[:, :, sel].astype(np.float64), \
            xyz[:, :, sel].astype(np.float64)
        if not (np.all(np.isfinite(self.uvd)) and np.all(np.isfinite(self.xyz))):
            raise SimganError(f"{mat}: joint coordinates must be finite numbers")
        self.kind, self.size, self.margin = kind, size, margin
        # every (camera, frame) whose image exists; frames are 1-based in the file names
        prefix = KINDS[kind]
        self.items = [(c, f) for f in range(1, n_frames + 1) for c in cams
                      if (self.root / f"{prefix}_{c}_{f:07d}.png").is_file()]
        if not self.items:
            raise SimganError(f"{what} {self.root} holds no {prefix}_K_NNNNNNN.png images for the frames of {MAT_FILE}")

    def __len__(self) -> int:
        return len(self.items)

    def path(self, i: int) -> Path:
        c, f = self.items[i]
        return self.root / f"{KINDS[self.kind]}_{c}_{f:07d}.png"

    def describe(self, i: int) -> str:
        return str(self.path(i))

    def box(self, i: int) -> tuple[float, float, float]:
        c, f = self.items[i]
        return crop_box(self.uvd_all[c - 1, f - 1, :, :2], self.margin)

    def read(self, i: int) -> np.ndarray:
        return crop_depth(decode_nyu_depth(self.path(i)), self.box(i), self.size)[:, :, None]

    def labels(self, i: int) -> dict:
        c, f = self.items[i]
        box = self.box(i)
        uv = to_crop(self.uvd[c - 1, f - 1, :, :2], box, self.size)
        return {"uv": np.round(uv, 3).tolist(), "depth": np.round(self.uvd[c - 1, f - 1, :, 2], 2).tolist(),
                "xyz": np.round(self.xyz[c - 1, f - 1], 2).tolist(),
                "crop": {"box": [round(v, 3) for v in box]}, "camera": c, "frame": f, "kind": self.kind}
