"""Tiny procedural eye images with known gaze and pupil, for the evaluation tests.

Not the project's simulator: a gray skin background, a lighter elliptical eye opening, a dark
iris disc and a darker pupil disc whose centre moves with the gaze direction. Rendered at 4×
resolution and box-averaged down, so the pupil centre is exact to a small fraction of a pixel.
"""

from __future__ import annotations

import numpy as np

H, W = 35, 55


def gaze_vectors(pitch: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    cp = np.cos(pitch)
    return np.stack([-cp * np.sin(yaw), -np.sin(pitch), -cp * np.cos(yaw)], axis=1)


def render(n: int, *, seed: int = 0, noise: float = 4.0, height: int = H, width: int = W,
           skin: float = 150.0, sclera: float = 215.0, iris: float = 95.0, pupil: float = 25.0,
           iris_r: float = 7.0, pupil_r: float = 3.2, reach: float = 16.0, ss: int = 4,
           max_yaw: float = 0.5, max_pitch: float = 0.35, noise_seed: int | None = None,
           pupil_dx: float = 0.0):
    """``n`` images (``n×H×W×1`` uint8) and their labels dicts (gaze, pitch, yaw, pupil).

    ``seed`` draws the gaze directions; ``noise_seed`` (default: ``seed``) the pixel noise, so
    two calls with one ``seed`` show the same eyes with independent noise. ``pupil_dx`` moves
    iris and pupil that many pixels to the right of where the gaze puts them.
    """
    rng = np.random.default_rng(seed)
    noise_rng = rng if noise_seed is None else np.random.default_rng(noise_seed)
    pitch = rng.uniform(-max_pitch, max_pitch, n)
    yaw = rng.uniform(-max_yaw, max_yaw, n)
    g = gaze_vectors(pitch, yaw)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    px, py = cx + reach * g[:, 0] + pupil_dx, cy + reach * g[:, 1]
    ys = (np.arange(height * ss) + 0.5) / ss - 0.5
    xs = (np.arange(width * ss) + 0.5) / ss - 0.5
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    eye = ((xx - cx) / (0.42 * width)) ** 2 + ((yy - cy) / (0.36 * height)) ** 2 <= 1.0
    out = np.empty((n, height, width, 1), dtype=np.uint8)
    for start in range(0, n, 256):
        sl = slice(start, min(n, start + 256))
        dx = xx[None] - px[sl, None, None]
        dy = yy[None] - py[sl, None, None]
        d2 = dx * dx + dy * dy
        img = np.where(eye[None], sclera, skin).astype(np.float32) * np.ones_like(d2, dtype=np.float32)
        img = np.where(eye[None] & (d2 <= iris_r ** 2), iris, img)
        img = np.where(eye[None] & (d2 <= pupil_r ** 2), pupil, img)
        img = img.reshape(len(d2), height, ss, width, ss).mean(axis=(2, 4))
        img += noise_rng.normal(0.0, noise, img.shape)
        out[sl, :, :, 0] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    labels = [{"gaze": [float(v) for v in g[i]], "pitch": float(pitch[i]), "yaw": float(yaw[i]),
               "pupil": [float(px[i]), float(py[i])]} for i in range(n)]
    return out, labels


def shift_right(images: np.ndarray, dx: int) -> np.ndarray:
    """Translate images ``dx`` pixels to the right, repeating the left edge column."""
    out = np.empty_like(images)
    out[:, :, dx:] = images[:, :, :-dx]
    out[:, :, :dx] = images[:, :, :1]
    return out
