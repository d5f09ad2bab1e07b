"""The warping error (Lai et al. 2018) and the checks of a sequence set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simgan.datasets import write_dataset
from simgan.datasets.sequences import FLOW_FILE, OCCLUSION_FILE, open_sequences, warp
from simgan.errors import SimganError
from simgan.evaluation.temporal import warping_error


def test_warp_by_hand():
    a = np.arange(12, dtype=float).reshape(1, 3, 4)
    flow = np.zeros((1, 3, 4, 2))
    flow[..., 0] = 1.0  # every pixel shows what its right neighbour showed
    assert np.array_equal(warp(a, flow)[0, :, :3], a[0, :, 1:])
    flow[..., 0], flow[..., 1] = 0.5, 0.0
    assert np.allclose(warp(a, flow)[0, 0, :3], [0.5, 1.5, 2.5])


def _moving_square(frames=6, flicker=0.0, seed=0):
    """A bright square moving one pixel right per frame, its exact backward flow, and (optionally)
    a random brightness change per frame."""
    rng = np.random.default_rng(seed)
    x = np.zeros((frames, 16, 16, 1))
    for t in range(frames):
        x[t, 5:10, 2 + t:7 + t] = 200 + flicker * rng.standard_normal()
    flow = np.zeros((frames, 16, 16, 2))
    flow[1:, ..., 0] = -1.0
    occlusion = np.zeros((frames, 16, 16), np.uint8)
    occlusion[0] = 1
    occlusion[1:, :, 0] = 1  # the column that enters at the left edge
    return x, flow, occlusion


def test_warping_error_is_zero_for_exact_motion_and_fires_on_flicker():
    x, flow, occ = _moving_square()
    assert warping_error(x, flow, occ) == pytest.approx(0.0, abs=1e-12)
    still = np.repeat(x[:1], 6, axis=0)
    assert warping_error(still, np.zeros_like(flow), occ) == 0.0
    flickering, _, _ = _moving_square(flicker=20.0)
    assert warping_error(flickering, flow, occ) > 1e-4
    # without the flow the motion itself counts
    assert warping_error(x, np.zeros_like(flow), occ) > 1e-3


def _sequence_folder(tmp_path, frames):
    images = np.zeros((len(frames), 8, 8, 1), np.uint8)
    labels = [{"sequence": s, "frame": f} for s, f in frames]
    out = write_dataset(tmp_path / "seq", images, labels)
    return out


@pytest.mark.parametrize("frames, message", [
    ([(0, 0), (0, 1), (0, 1)], "frame 1 twice"),
    ([(0, 0), (0, 2)], "frame 1 missing"),
    ([(0, 0), (0, 1), (1, 0)], "different lengths"),
    ([(0, 0), (1, 0), (0, 1)], "not next to each other"),
])
def test_bad_sequences_are_named(tmp_path, frames, message):
    path = _sequence_folder(tmp_path, frames)
    with pytest.raises(SimganError, match=message):
        open_sequences(path)


def test_flow_of_the_wrong_shape(tmp_path):
    path = _sequence_folder(tmp_path, [(0, 0), (0, 1)])
    s = open_sequences(path)
    assert s.frames == 2 and s.flow is None
    with pytest.raises(SimganError, match="no flow.npy"):
        open_sequences(path, need_flow=True)
    np.save(path / FLOW_FILE, np.zeros((2, 8, 7, 2), np.float32))
    np.save(path / OCCLUSION_FILE, np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(SimganError, match="expected float32"):
        open_sequences(path)
    lines = (path / "labels.jsonl").read_text().splitlines()
    (path / "labels.jsonl").write_text("\n".join(json.dumps({**json.loads(x), "frame": None}) for x in lines) + "\n")
    with pytest.raises(SimganError, match="no integer 'sequence' and 'frame'"):
        open_sequences(path)


def test_curve_and_pupil_jitter():
    from simgan.evaluation.temporal import pupil_jitter, warping_error_curve
    from simgan.simulators.eyes import render_eye_sequences

    x, flow, occ = _moving_square(frames=4)
    curve = warping_error_curve(np.concatenate([x, x]), np.concatenate([flow, flow]), np.concatenate([occ, occ]), 4)
    assert np.isnan(curve[0]) and np.allclose(curve[1:], 0.0)
    images, labels, _, _ = render_eye_sequences(2, 8, seed=3)
    pupils = np.array([lab["pupil"] for lab in labels])
    still = pupil_jitter(images, pupils, 8)
    shaken = images.copy()
    shaken[1::2] = np.roll(images[1::2], 2, axis=2)  # every other frame two pixels to the right
    assert still < 0.5 and pupil_jitter(shaken, pupils, 8) > still + 1.0


def test_a_frame_of_another_size_is_named(tmp_path):
    from PIL import Image

    path = _sequence_folder(tmp_path, [(0, 0), (0, 1), (0, 2)])
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(path / "img" / "000001.png")
    with pytest.raises(SimganError, match="000001.png is 8x9"):
        open_sequences(path).dataset.load()


def test_gaze_jitter_fires_on_a_shaking_prediction_only():
    from simgan.evaluation.temporal import gaze_jitter
    from simgan.gaze_convention import gaze_from_pitch_yaw

    t = np.radians(np.linspace(-10, 10, 12))
    true = np.stack([gaze_from_pitch_yaw(p, 0.3 * p) for p in t])  # two sequences of 6 frames, moving
    assert gaze_jitter(true, true, 6) == pytest.approx(0.0, abs=1e-9)
    offset = np.stack([gaze_from_pitch_yaw(p + np.radians(5), 0.3 * p) for p in t])
    assert gaze_jitter(offset, true, 6) == pytest.approx(0.0, abs=1e-6)  # a steady error is no jitter
    # every other frame 2 degrees up: each step moves the error by 2 degrees
    shaken = np.stack([gaze_from_pitch_yaw(p + np.radians(2 * (i % 2)), 0.3 * p) for i, p in enumerate(t)])
    assert gaze_jitter(shaken, true, 6) == pytest.approx(2.0, rel=1e-6)
    with pytest.raises(SimganError, match="whole sequences"):
        gaze_jitter(true, true, 5)
