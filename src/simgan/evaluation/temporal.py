"""Flicker: how much a refined *sequence* changes from frame to frame beyond what the scene's
motion explains (the paper's second future work, §5: refining videos).

The measure is the warping error of Lai et al. ("Learning Blind Video Temporal Consistency",
ECCV 2018): frame ``t - 1`` is warped onto frame ``t`` by the ground-truth backward flow the
simulator wrote (:mod:`simgan.datasets.sequences`), and the mean squared difference to frame
``t`` over the pixels the flow holds for (not occluded), pixels in [0, 1], is averaged over the
frame pairs. A still sequence scores 0; per-frame noise, a look that changes from frame to frame,
or a refiner whose output depends on where an edge falls on its pixel grid score more. The target
domain's own score (fresh sensor noise in every frame) is the floor a realistic refined sequence
should reach, not beat.
"""

from __future__ import annotations

import numpy as np

from ..datasets.sequences import warp
from ..errors import SimganError


def warping_error(frames: np.ndarray, flow: np.ndarray, occlusion: np.ndarray, *, max_value: float = 255.0) -> float:
    """Lai et al.'s warping error of ``frames`` (``N x H x W x C``, sequence after sequence):
    the mean, over every frame ``t`` whose flow holds somewhere, of the mean squared difference
    between frame ``t`` and frame ``t - 1`` warped by ``flow[t]``, over its pixels with
    ``occlusion[t] == 0``; pixels are scaled to [0, 1] by ``max_value``. The first frame of a
    sequence is all occluded, so pairs never cross sequences."""
    x = np.asarray(frames, np.float64) / max_value
    if x.ndim == 3:
        x = x[..., None]
    if occlusion.shape != x.shape[:3]:
        raise SimganError(f"occlusion of shape {occlusion.shape} does not fit frames of shape {x.shape[:3]}")
    valid = occlusion[1:] == 0
    keep = valid.reshape(len(valid), -1).any(1)
    if not keep.any():
        raise SimganError("no frame pair with unoccluded pixels: is this a sequence set (frames 0 .. T-1)?")
    idx = np.flatnonzero(keep) + 1
    errors = []
    for s in range(0, len(idx), 256):  # in chunks: flat memory on long sequences
        t = idx[s:s + 256]
        diff = np.square(x[t] - warp(x[t - 1], flow[t])).mean(-1)
        m = occlusion[t] == 0
        errors.extend((diff * m).reshape(len(t), -1).sum(1) / m.reshape(len(t), -1).sum(1))
    return float(np.mean(errors))


def warping_error_curve(frames: np.ndarray, flow: np.ndarray, occlusion: np.ndarray, length: int, *,
                        max_value: float = 255.0) -> np.ndarray:
    """The warping error per frame number: entry ``t`` is the mean over sequences (of ``length``
    frames each) of frame ``t``'s error against frame ``t - 1``; entry 0 is NaN."""
    x = np.asarray(frames, np.float64) / max_value
    if x.ndim == 3:
        x = x[..., None]
    n = len(x)
    if n % length:
        raise SimganError(f"{n} frames are not whole sequences of {length}")
    sums, counts = np.zeros(length), np.zeros(length)
    for t in range(1, length):
        idx = np.arange(t, n, length)
        m = occlusion[idx] == 0
        diff = np.square(x[idx] - warp(x[idx - 1], flow[idx])).mean(-1)
        ok = m.reshape(len(idx), -1).sum(1) > 0
        if ok.any():
            per = (diff * m).reshape(len(idx), -1).sum(1)[ok] / m.reshape(len(idx), -1).sum(1)[ok]
            sums[t], counts[t] = per.sum(), len(per)
    out = np.full(length, np.nan)
    out[1:] = np.where(counts[1:] > 0, sums[1:] / np.maximum(counts[1:], 1), np.nan)
    return out


def pupil_jitter(frames: np.ndarray, pupils: np.ndarray, length: int, *, max_value: int = 255) -> float:
    """How much a pupil fitted in each frame jumps from frame to frame beyond the true pupil's
    motion: the mean, over consecutive frames of a sequence where both fits succeed, of
    ``|(fit_t - true_t) - (fit_{t-1} - true_{t-1})|`` in pixels (:func:`simgan.evaluation.
    preservation.fit_pupil`, searched near the true centre). A label-sensitive flicker measure:
    the fit follows what the image shows, so a refiner that moves the pupil's look from frame to
    frame raises it."""
    from .preservation import fit_pupil

    x = np.asarray(frames)
    pupils = np.asarray(pupils, float)
    errors = np.full((len(x), 2), np.nan)
    for i in range(len(x)):
        fit = fit_pupil(x[i], max_value=max_value, near=(float(pupils[i][0]), float(pupils[i][1])))
        if fit.ok:
            errors[i] = (fit.region.x - pupils[i][0], fit.region.y - pupils[i][1])
    steps = [np.hypot(*(errors[i] - errors[i - 1])) for i in range(1, len(x))
             if i % length and np.isfinite(errors[i]).all() and np.isfinite(errors[i - 1]).all()]
    if not steps:
        raise SimganError("no two consecutive frames with a fitted pupil: is this a set of eye sequences?")
    return float(np.mean(steps))


def gaze_jitter(predicted: np.ndarray, true: np.ndarray, length: int) -> float:
    """How much a gaze estimator's prediction jumps from frame to frame beyond the true gaze's
    motion, in degrees: with ``e_t`` the error (pitch and yaw of the prediction minus those of the
    true gaze, both ``N x 3`` direction vectors, sequences of ``length`` frames one after another),
    the mean over consecutive frames of a sequence of ``|e_t - e_{t-1}|``. A steady estimator on
    steady frames scores near 0 however large its error; a refinement whose look changes from
    frame to frame moves the prediction and raises it."""
    from ..gaze_convention import pitch_yaw_from_gaze

    p, t = np.asarray(predicted, np.float64), np.asarray(true, np.float64)
    if p.shape != t.shape or p.ndim != 2 or p.shape[1] != 3:
        raise SimganError(f"predicted {p.shape} and true {t.shape} gaze must both be N x 3")
    if len(p) % length or length < 2:
        raise SimganError(f"{len(p)} frames are not whole sequences of {length} >= 2 frames")
    err = np.degrees(np.stack(pitch_yaw_from_gaze(p), -1) - np.stack(pitch_yaw_from_gaze(t), -1))
    err = err.reshape(-1, length, 2)
    return float(np.hypot(*np.moveaxis(np.diff(err, axis=1), -1, 0)).mean())
