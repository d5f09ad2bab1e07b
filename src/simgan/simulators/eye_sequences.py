"""Eye *sequences*: the eyes of :mod:`.eyes` in motion, with the ground-truth motion of every pixel.

The paper ends (§5) with "investigate refining videos rather than images". A refiner that treats
each frame on its own makes a sequence flicker; measuring that, and training against it, needs
sequences whose per-pixel motion is known. The renderer knows it, so it is written out:

* **Motion.** Each sequence is one scene (one eye, one head pose, one light, one camera) whose gaze
  moves as eyes do (:class:`EyeMotion`): fixations with a slow drift, saccades along the main
  sequence (duration ``21 + 2.2 ms`` per degree, a smooth velocity profile), smooth pursuit at a
  few degrees per second, and now and then a blink (the upper lid closes and opens over a few
  frames). The lids follow the gaze as in a single image (:mod:`.eye_scene`).
* **Target domain.** The webcam's skin texture, lashes, spectacle rims, light and optics belong to
  the scene and stay; the corneal glints move with the cornea; the sensor noise is drawn afresh
  for every frame, as a real sensor's is.
* **Flow.** For frame ``t`` of a sequence, ``flow[t]`` is the *backward* flow: the pixel at
  ``(x, y)`` of frame ``t`` shows what frame ``t - 1`` showed at ``(x + u, y + v)`` (so warping
  frame ``t - 1`` by it gives frame ``t``, :func:`simgan.evaluation.temporal.warp`). On the eyeball
  it is the rotation of the eye between the frames, exact for the weak-perspective camera; the
  skin does not move (the head is still within a sequence).
* **Occlusion.** ``occlusion[t]`` is 1 where the flow does not hold: pixels the lids cover or
  uncover between the frames, skin that moves with a lid (from the brow down to the upper lid
  margin, and around the lower lid, in the columns where they moved), the band of lid shadow on
  the eyeball when the lid moved, the first frame of every sequence, and flow that leaves the image.

A sequence set is a dataset like any other, with two label keys per frame, ``sequence`` (its
number) and ``frame`` (0 .. T-1), and two arrays beside ``labels.jsonl``, in the frames' order:
``flow.npy`` (``N x H x W x 2`` float32, ``(u, v)`` in pixels) and ``occlusion.npy`` (``N x H x W``
uint8), as :mod:`simgan.datasets.sequences` describes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..datasets.sequences import warp
from ..errors import SimganError
from .eye_render import columns as lid_columns
from .eye_scene import EYEBALL_RADIUS, EyeGeometry, EyeSceneParams, EyeSceneRanges, rotation

BLINK_COVER = 10.0  # mm added to the upper lid's cover at a full blink: the lid comes down to the lower one
BLINK_PROFILE = (0.45, 1.0, 1.0, 0.7, 0.35)  # closure over a blink's frames at 30 fps (about 170 ms)


@dataclass(frozen=True)
class EyeMotion:
    """How gaze moves within a sequence (angles in degrees, times in seconds)."""

    fps: float = 30.0
    fixation: tuple[float, float] = (0.15, 0.6)  # s, uniform
    saccade_share: float = 0.7  # after a fixation: a saccade, else smooth pursuit
    pursuit_speed: tuple[float, float] = (4.0, 20.0)  # deg/s
    pursuit_time: tuple[float, float] = (0.3, 1.0)  # s
    drift: float = 0.03  # deg per frame, std of the random walk during a fixation
    blink_rate: float = 0.25  # blinks per second

    def __post_init__(self):
        if not (self.fps > 0 and 0 <= self.saccade_share <= 1 and self.drift >= 0 and self.blink_rate >= 0
                and 0 < self.fixation[0] <= self.fixation[1] and 0 < self.pursuit_time[0] <= self.pursuit_time[1]
                and 0 <= self.pursuit_speed[0] <= self.pursuit_speed[1]):
            raise SimganError(f"bad EyeMotion settings: {self}")


def gaze_paths(rng: np.random.Generator, pitch0: np.ndarray, yaw0: np.ndarray, frames: int,
               ranges: EyeSceneRanges, motion: EyeMotion) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaze pitch and yaw (radians) and lid closure (0 open .. 1 shut) of ``len(pitch0)``
    sequences of ``frames`` frames, ``(n, frames)`` each, starting at ``(pitch0, yaw0)`` with open
    eyes. A fixed order of draws per sequence: the result depends on ``rng``'s state alone."""
    n = len(pitch0)
    lo = np.radians([ranges.gaze_pitch[0], ranges.gaze_yaw[0]])
    hi = np.radians([ranges.gaze_pitch[1], ranges.gaze_yaw[1]])
    dt = 1.0 / motion.fps
    gaze = np.empty((n, frames, 2))
    closure = np.zeros((n, frames))
    blink = np.interp(np.arange(max(1, round(len(BLINK_PROFILE) * motion.fps / 30.0))),
                      np.linspace(0, max(1, round(len(BLINK_PROFILE) * motion.fps / 30.0)) - 1, len(BLINK_PROFILE)),
                      BLINK_PROFILE)
    for i in range(n):
        g = np.array([pitch0[i], yaw0[i]], float)
        t = 0
        while t < frames:
            # a fixation, drifting slowly
            k = max(1, round(rng.uniform(*motion.fixation) * motion.fps))
            for _ in range(min(k, frames - t)):
                gaze[i, t] = g
                g = np.clip(g + np.radians(motion.drift) * rng.standard_normal(2), lo, hi)
                t += 1
            if t >= frames:
                break
            if rng.random() < motion.saccade_share:  # a saccade to a new target, along the main sequence
                target = rng.uniform(lo, hi)
                amplitude = math.degrees(float(np.hypot(*(target - g))))
                k = max(1, round((0.021 + 0.0022 * amplitude) * motion.fps))
                start = g.copy()
                for j in range(1, k + 1):
                    if t >= frames:
                        break
                    s = 0.5 - 0.5 * math.cos(math.pi * j / k)
                    gaze[i, t] = start + s * (target - start)
                    t += 1
                g = target
            else:  # smooth pursuit at a constant speed, stopped at the edge of the range
                angle = rng.uniform(0, 2 * math.pi)
                step = np.radians(rng.uniform(*motion.pursuit_speed)) * dt * np.array([math.sin(angle), math.cos(angle)])
                k = max(1, round(rng.uniform(*motion.pursuit_time) * motion.fps))
                for _ in range(min(k, frames - t)):
                    g = np.clip(g + step, lo, hi)
                    gaze[i, t] = g
                    t += 1
        # blinks: a Poisson process, never in the first frame
        rate = motion.blink_rate * dt
        t = 1
        while t < frames:
            if rng.random() < rate:
                m = min(len(blink), frames - t)
                closure[i, t:t + m] = blink[:m]
                t += len(blink)
            else:
                t += 1
    return gaze[:, :, 0], gaze[:, :, 1], closure


def sequence_params(p0: EyeSceneParams, pitch: np.ndarray, yaw: np.ndarray, closure: np.ndarray) -> EyeSceneParams:
    """The frames of ``len(p0)`` sequences, sequence after sequence: each scene of ``p0`` repeated
    with its gaze path and its lid closure."""
    frames = pitch.shape[1]
    p = p0.take(np.repeat(np.arange(len(p0)), frames))
    return replace(p, gaze_pitch=pitch.ravel(), gaze_yaw=yaw.ravel(),
                   upper_cover=p.upper_cover + BLINK_COVER * closure.ravel())


def eye_fixed_iris(p: EyeSceneParams, g: EyeGeometry, frames: int) -> EyeSceneParams:
    """``p`` with the iris fibres turned so that they stay fixed on the eye from frame to frame.

    A single render draws the fibres at angles measured from the iris ellipse's minor axis (the
    gaze's direction in the image), which turns in the image as the gaze moves; on a moving eye
    that would spin the iris. Here each frame's fibre phases are shifted by the turn of an
    eye-fixed direction (the eye's "up") in that frame, relative to the sequence's first frame."""
    from .eye_render import IRIS_HARMONICS

    E = rotation(p.head_pitch, p.head_yaw, p.head_roll) @ rotation(p.gaze_pitch, p.gaze_yaw)
    up = -E[:, :, 1]  # the eye's up, camera coordinates (y points down)
    major = np.stack([-g.minor_dir[:, 1], g.minor_dir[:, 0], np.zeros(len(p))], 1)
    minor = np.cross(major, g.gaze)  # in the iris plane, seen along the ellipse's minor axis
    minor *= np.where(np.einsum("ni,ni->n", minor[:, :2], g.minor_dir) < 0, -1.0, 1.0)[:, None]
    angle = np.arctan2(np.einsum("ni,ni->n", up, major), np.einsum("ni,ni->n", up, minor))
    turn = angle - np.repeat(angle[::frames], frames)
    orders = np.asarray(IRIS_HARMONICS, float)[None, : p.iris_phases.shape[1]]
    return replace(p, iris_phases=p.iris_phases - orders * turn[:, None])


def _opening(g: EyeGeometry) -> np.ndarray:
    """``(n, H, W)`` coverage of the lid opening, as the rasteriser draws it."""
    H = g.height
    Y = np.arange(H, dtype=np.float32)[None, :, None]
    yu, nu = lid_columns(g.upper, g.width)
    yl, nl = lid_columns(g.lower, g.width)
    d = np.minimum((Y - yu[:, None, :]) * nu[:, None, :], (yl[:, None, :] - Y) * nl[:, None, :])
    return np.clip(d + 0.5, 0.0, 1.0), (Y - yu[:, None, :]) * nu[:, None, :], (yl[:, None, :] - Y) * nl[:, None, :]


# Numeric kernel, long on purpose: one chain from the two frames' geometry to the flow and its mask.
def eye_flow(p: EyeSceneParams, g: EyeGeometry, frames: int, band: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Backward flow ``(N, H, W, 2)`` and occlusion ``(N, H, W)`` of sequences of ``frames`` frames
    (``p`` and ``g`` list them sequence after sequence; see the module docstring). ``band``: pixels
    around a moving lid margin, crease or brow that count as occluded."""
    n, H, W = len(p), g.height, g.width
    flow = np.zeros((n, H, W, 2), np.float32)
    occlusion = np.ones((n, H, W), np.uint8)
    cur = np.flatnonzero(np.arange(n) % frames != 0)
    if len(cur) == 0:
        return flow, occlusion
    prev = cur - 1
    X = np.arange(W, dtype=np.float64)[None, None, :]
    Y = np.arange(H, dtype=np.float64)[None, :, None]
    # the eyeball: a point fixed on it moves with the eye's rotation E (camera <- eye)
    E = rotation(p.head_pitch, p.head_yaw, p.head_roll) @ rotation(p.gaze_pitch, p.gaze_yaw)
    M = E[prev] @ np.transpose(E[cur], (0, 2, 1))
    s = g.scale[cur][:, None, None]
    ex, ey = g.eyeball[cur, 0][:, None, None], g.eyeball[cur, 1][:, None, None]
    qx, qy = (X - ex) / s, (Y - ey) / s
    r2 = qx * qx + qy * qy
    on_ball = r2 < 0.98 * EYEBALL_RADIUS ** 2
    qz = -np.sqrt(np.maximum(EYEBALL_RADIUS ** 2 - r2, 0.0))
    px = ex + s * (M[:, 0, 0, None, None] * qx + M[:, 0, 1, None, None] * qy + M[:, 0, 2, None, None] * qz)
    py = ey + s * (M[:, 1, 0, None, None] * qx + M[:, 1, 1, None, None] * qy + M[:, 1, 2, None, None] * qz)
    # which layer each pixel shows, in this frame and (at the flow's source) in the one before
    open_now, d_up_now, d_low_now = _opening(g.take(cur))
    open_prev, d_up_prev, d_low_prev = _opening(g.take(prev))
    eye_now = open_now >= 0.999
    X2, Y2 = np.broadcast_to(X, px.shape), np.broadcast_to(Y, py.shape)
    back = np.stack([px - X2, py - Y2], -1)
    at_source = lambda a: warp(a, back)  # noqa: E731  (frame t-1's values where the flow points)
    src_open = at_source(open_prev) >= 0.999
    inside = (px >= 0) & (px <= W - 1) & (py >= 0) & (py <= H - 1)
    # the lid's shadow on the eyeball moves with the lid: keep clear of it where the lid moved
    yu_now, _ = lid_columns(g.upper[cur], W)
    yu_prev, _ = lid_columns(g.upper[prev], W)
    yl_now, _ = lid_columns(g.lower[cur], W)
    yl_prev, _ = lid_columns(g.lower[prev], W)
    up_moved = (np.abs(yu_now - yu_prev) > 0.02)[:, None, :]
    low_moved = (np.abs(yl_now - yl_prev) > 0.02)[:, None, :]
    shadow = 2.5 * s  # px: the upper lid's shadow fades over about 2.5 mm
    clear = ((d_up_now > np.where(up_moved, shadow, band)) & (d_low_now > np.where(low_moved, 2 * band, band))
             & (at_source(d_up_prev) > np.where(up_moved, shadow, band))
             & (at_source(d_low_prev) > np.where(low_moved, 2 * band, band)))
    eye_ok = eye_now & src_open & on_ball & inside & clear
    # the skin: still, except what moves with the lids (crease, lid skin, lashes, brow)
    skin_now = (open_now <= 0.0) & (open_prev <= 0.0)
    yc_now, _ = lid_columns(g.crease[cur], W)
    yc_prev, _ = lid_columns(g.crease[prev], W)
    moved_up = (np.abs(yu_now - yu_prev) > 0.02) | (np.abs(yc_now - yc_prev) > 0.02) | \
        (np.abs(g.brow_y[cur] - g.brow_y[prev]) > 0.02)[:, None]
    top = np.minimum(g.brow_y[cur], g.brow_y[prev])[:, None] - 3 * band * g.scale[cur][:, None] / 2
    bottom = np.maximum(yu_now, yu_prev) + band
    lid_skin = moved_up[:, None, :] & (Y >= top[:, None, :]) & (Y <= bottom[:, None, :])
    low_skin = low_moved & (Y >= np.minimum(yl_now, yl_prev)[:, None, :] - band) & \
        (Y <= np.maximum(yl_now, yl_prev)[:, None, :] + 3 * band)
    skin_ok = skin_now & ~lid_skin & ~low_skin & (np.minimum(d_up_now, d_low_now) < -band)
    u = np.where(eye_ok, px - X, 0.0)
    v = np.where(eye_ok, py - Y, 0.0)
    flow[cur, :, :, 0] = u
    flow[cur, :, :, 1] = v
    occlusion[cur] = ~(eye_ok | skin_ok)
    return flow, occlusion


def check_sequence_args(sequences: int, frames: int) -> None:
    from .blocks import check_int
    check_int(sequences, "--sequences", 1)
    check_int(frames, "--frames", 2, 100_000)
