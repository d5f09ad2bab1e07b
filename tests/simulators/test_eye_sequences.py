"""Eye sequences (``simgan simulate eyes --sequences S --frames T``): labels per frame, motion as
eyes move, and a ground-truth flow that warps each frame onto the next on the renderer's own images."""

from __future__ import annotations

import numpy as np
import pytest

from simgan.datasets.sequences import warp
from simgan.simulators.eye_scene import EyeSceneRanges
from simgan.simulators.eye_sequences import EyeMotion, gaze_paths
from simgan.simulators.eyes import render_eye_sequences


@pytest.fixture(scope="module")
def synthetic():
    return render_eye_sequences(6, 30, seed=1)


def test_labels_per_frame_and_determinism(synthetic):
    images, labels, flow, occlusion = synthetic
    assert images.shape == (180, 35, 55, 1) and flow.shape == (180, 35, 55, 2) and occlusion.shape == (180, 35, 55)
    assert [(lab["sequence"], lab["frame"]) for lab in labels[28:32]] == [(0, 28), (0, 29), (1, 0), (1, 1)]
    again = render_eye_sequences(6, 30, seed=1)
    assert again[0].tobytes() == images.tobytes() and again[1] == labels
    # a sequence is one scene: head pose and eye shape stay, the gaze moves
    seq = labels[:30]
    assert len({tuple(lab["head_pose"]) for lab in seq}) == 1
    assert len({(lab["pitch"], lab["yaw"]) for lab in seq}) > 10
    assert occlusion[0].all() and not flow[0].any()  # a sequence's first frame has no flow


def test_gaze_moves_as_eyes_do():
    rng = np.random.default_rng(0)
    pitch, yaw, closure = gaze_paths(rng, np.zeros(20), np.zeros(20), 90, EyeSceneRanges(), EyeMotion())
    step = np.degrees(np.hypot(np.diff(pitch, axis=1), np.diff(yaw, axis=1)))
    assert (step < 0.5).mean() > 0.6  # mostly fixations and pursuit
    assert step.max() > 5  # and saccades, several degrees a frame at 30 frames/s
    lo, hi = np.radians(EyeSceneRanges().gaze_pitch)
    assert pitch.min() >= lo and pitch.max() <= hi
    assert (closure[:, 0] == 0).all() and closure.max() == 1.0  # blinks, never in the first frame


def test_flow_warps_each_frame_onto_the_next(synthetic):
    images, _, flow, occlusion = synthetic
    x = images[..., 0].astype(np.float64)
    t = np.array([i for i in range(len(x)) if i % 30])
    warped = warp(x[t - 1], flow[t])
    valid = occlusion[t] == 0
    moving = valid & (np.hypot(flow[t, ..., 0], flow[t, ..., 1]) > 1.0)
    assert valid.mean() > 0.6 and moving.sum() > 200
    err, still = np.abs(x[t] - warped), np.abs(x[t] - x[t - 1])
    assert err[valid].mean() < 0.5  # gray levels, over everything the flow holds for
    assert err[moving].mean() < 0.4 * still[moving].mean()  # where the eye moved, the flow explains most of it


def test_target_sequences_keep_the_scene_and_renew_the_noise():
    images, labels, flow, occlusion = render_eye_sequences(2, 10, seed=2, domain="target")
    x = images[..., 0].astype(np.float64)
    valid = occlusion[1:] == 0
    diff = np.abs(x[1:] - warp(x[:-1], flow[1:]))[valid]
    assert 0.5 < diff.mean() < 15  # fresh sensor noise every frame, the same skin and light
