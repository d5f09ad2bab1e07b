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
