"""The depth hand simulator of §3.2: labels agree with pixels, determinism, the sensor's effects."""

import json

import numpy as np
import pytest
from scipy import ndimage

from simgan.datasets import decode_image
from simgan.simulators.hand_render import render_depth
from simgan.simulators.hand_scene import (
    JOINT_NAMES,
    LIMITS_DEG,
    PARAM_NAMES,
    sample_params,
    skeleton,
)
from simgan.simulators.hands import render_hands
from simgan.simulators.kinect import SensorModel, apply_sensor


def test_joints_agree_with_rendered_depth():
    images, labels = render_hands(32, seed=3, size=96)
    assert images.dtype == np.uint16 and images.shape == (32, 96, 96, 1)
    near, total = 0, 0
    for img, lab in zip(images[:, :, :, 0], labels):
        K = lab["intrinsics"]
        xyz = np.array(lab["xyz"])
        uv = np.array(lab["uv"])
        assert len(uv) == len(JOINT_NAMES) == 14
        # uv is the pinhole projection of xyz with the stated intrinsics; depth is xyz's z
        np.testing.assert_allclose(uv[:, 0], K["fx"] * xyz[:, 0] / xyz[:, 2] + K["cx"], atol=0.01)
        np.testing.assert_allclose(uv[:, 1], K["fy"] * xyz[:, 1] / xyz[:, 2] + K["cy"], atol=0.01)
        np.testing.assert_allclose(lab["depth"], xyz[:, 2], atol=0.01)
        for (u, v), z in zip(uv, xyz[:, 2]):
            iu, iv = int(round(u)), int(round(v))
            if not (0 <= iu < 96 and 0 <= iv < 96):
                continue
            total += 1
            d = float(img[iv, iu])
            around = img[max(iv - 1, 0):iv + 2, max(iu - 1, 0):iu + 2].astype(float)
            around = around[around > 0]
            assert around.size, "a joint projects onto a place with no surface"
            # the joint is inside its capsule: its own surface is in front of it (the nearest
            # pixel centre may fall just past a fingertip's cap, hence the 3x3 neighbourhood)
            assert around.min() <= z + 2.0, "the surface at a joint's pixel lies behind the joint"
            near += (z - d) <= 25.0
    # joints lie inside their capsules: most are seen on their own surface (the rest occluded)
    assert total > 300 and near / total > 0.6


def test_pose_parameters_respect_limits_and_scene_is_plausible():
    p = sample_params(np.random.default_rng(0), 500)
    art = np.degrees(p["articulation"])
    assert art.shape == (500, len(PARAM_NAMES))
    assert np.all(art >= LIMITS_DEG[:, 0] - 1e-9) and np.all(art <= LIMITS_DEG[:, 1] + 1e-9)
    # poses are blends, not independent uniform angles: PIP and DIP flexions of a finger co-vary
    assert np.corrcoef(art[:, 2], art[:, 3])[0, 1] > 0.5
    a, b, r, J = skeleton(p)
    assert np.all(J[..., 2] > 250) and np.all(J[..., 2] < 800)
    # the hand fills part of the frame: bones are finger-length, not degenerate
    assert np.all(np.linalg.norm(b - a, axis=-1)[:, :16] > 10)


def test_deterministic_by_seed_and_independent_of_n():
    a, la = render_hands(3, seed=7, size=64, domain="target")
    b, lb = render_hands(3, seed=7, size=64, domain="target")
    c, lc = render_hands(40, seed=7, size=64, domain="target", workers=2)
    d, _ = render_hands(3, seed=8, size=64, domain="target")
    assert np.array_equal(a, b) and la == lb
    assert np.array_equal(a, c[:3]) and la == lc[:3]
    assert not np.array_equal(a, d)


def test_three_views_share_the_pose():
    imgs, labs = render_hands(2, seed=1, size=64, views=3)
    assert imgs.shape[0] == 6
    assert [l["view"] for l in labs] == [0, 1, 2, 0, 1, 2]
    assert labs[0]["pose"] == labs[1]["pose"] == labs[2]["pose"]
    x0, x1 = np.array(labs[0]["xyz"]), np.array(labs[1]["xyz"])
    # a rigid rotation: distances between joints are kept, positions are not
    d0 = np.linalg.norm(x0[:, None] - x0[None], axis=-1)
    d1 = np.linalg.norm(x1[:, None] - x1[None], axis=-1)
    np.testing.assert_allclose(d0, d1, atol=0.05)
    assert np.abs(x0 - x1).max() > 10


def test_sensor_effects_are_measurable():
    size = 128
    p = sample_params(np.random.default_rng(1), 16)
    a, b, r, _ = skeleton(p)
    clean = render_depth(a, b, r, size)
    hand = np.isfinite(clean)
    # clean model: just whole millimetres
    exact = apply_sensor(clean, np.random.default_rng(0), size, SensorModel.clean())
    assert np.array_equal(exact, np.where(hand, np.rint(np.where(hand, clean, 0)), 0).astype(np.uint16))
    noisy = apply_sensor(clean, np.random.default_rng(0), size, SensorModel(background_prob=0, clutter_max=0))
    edge = hand & ~ndimage.binary_erosion(hand, np.ones((1, 3, 3), bool))
    interior = ndimage.binary_erosion(hand, np.ones((1, 7, 7), bool))
    missing_edge = np.mean(noisy[edge] == 0)
    missing_interior = np.mean(noisy[interior] == 0)
    # (the interior includes edges between overlapping fingers and their grazing flanks)
    assert missing_edge > 0.3 and missing_edge > 2.5 * missing_interior, (missing_edge, missing_interior)
    # depth noise and quantisation: interior readings differ from the exact depth, by millimetres
    ok = interior & (noisy > 0)
    diff = noisy[ok].astype(float) - clean[ok]
    assert 0.5 < np.std(diff) < 10
    # flying pixels: readings outside the clean silhouette with no surface behind them
    assert np.count_nonzero((noisy > 0) & ~hand) > 0


def test_projector_shadow_on_background():
    size = 96
    p = sample_params(np.random.default_rng(2), 8)
    a, b, r, _ = skeleton(p)
    clean = render_depth(a, b, r, size)
    wall = np.full_like(clean, 1200.0)
    scene = np.minimum(clean, wall)
    m = SensorModel(background_prob=0, clutter_max=0, jitter_px=0, p_edge_drop=0, p_flying=0, holes_max=0,
                    grazing_deg=(90, 91))
    out = apply_sensor(scene, np.random.default_rng(0), size, m)
    background = ~np.isfinite(clean)
    # missing readings on the wall appear only beside the hand, on the side away from the projector
    assert np.mean(out[background] == 0) > 0.01
    # ... to the right of hand pixels in the same row (the projector is on the camera's right)
    hand_to_left = np.maximum.accumulate(np.isfinite(clean), axis=2)
    assert np.all(hand_to_left[background & (out == 0)])
    # self-shadows on the hand are possible but rarer than on the wall behind it
    assert np.mean(out[~background] == 0) < np.mean(out[background] == 0) * 5


def test_hand_effects_bench_rows():
    """bench/hand_effects.py's rows are valid sensors, and its "shadow_far" row (what a refiner
    can draw onto a synthetic hand) is a clean hand whose only missing readings are the
    projector's shadow: to the right of nearer readings in the same row, on a wall beyond the
    hand cube."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "hand_effects.py"
    spec = importlib.util.spec_from_file_location("hand_effects", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.sensor_for("synthetic") is None
    for row in bench.ROWS:
        assert row == "synthetic" or isinstance(bench.sensor_for(row), SensorModel)
    m = bench.sensor_for("shadow_far")
    assert (m.shadow, m.background_prob, m.clutter_max, m.holes_max, m.noise) == (True, 1.0, 0, 0, False)
    images, labels = render_hands(16, seed=5, size=64, domain="target", sensor=m)
    depth = images[..., 0].astype(float)
    centre = np.array([lab["pose"]["center"][2] for lab in labels])[:, None, None]
    missing = depth == 0
    assert 0.01 < missing.mean() < 0.3
    # the readings are the hand (within the 400 mm cube around its centre) and the wall beyond
    # the cube (encoded as far); hardly any wall pixel falls inside the cube
    behind = np.where(missing, np.nan, depth - centre)
    assert np.mean(behind > 200) > 0.5 and np.mean((behind > 100) & (behind <= 200)) < 0.02
    hand = ~missing & (depth - centre <= 200)
    hand_to_left = np.zeros_like(hand)
    hand_to_left[:, :, 1:] = np.maximum.accumulate(hand, axis=2)[:, :, :-1]
    assert np.all(hand_to_left[missing])


def test_simulate_hands_cli(cli, tmp_path):
    code, out, err = cli("simulate", "hands", "--n", "3", "--out", tmp_path / "h", "--size", "48", "--views", "3",
                         "--domain", "target", "--seed", "2", "--quiet")
    assert code == 0, err
    assert "images/s" in out
    files = sorted((tmp_path / "h" / "img").iterdir())
    assert len(files) == 9 and files[1].name == "000000_v1.png"
    img = decode_image(files[0])
    assert img.dtype == np.uint16 and img.shape == (48, 48, 1)
    lines = [json.loads(l) for l in (tmp_path / "h" / "labels.jsonl").read_text().splitlines()]
    assert len(lines) == 9 and lines[0]["file"] == "img/000000_v0.png"
    assert set(lines[0]) >= {"uv", "depth", "xyz", "intrinsics", "pose", "visible", "view"}


@pytest.mark.parametrize("args, needle", [
    (["--n", "0"], "--n"), (["--n", "2", "--size", "8"], "--size"), (["--n", "2", "--seed", "-1"], "seed"),
    (["--n", "2", "--views", "2"], "views"), (["--n", "2", "--domain", "kinect"], "domain")])
def test_simulate_hands_bad_input(cli, tmp_path, args, needle):
    code, out, err = cli("simulate", "hands", "--out", tmp_path / "x", *args)
    assert code == 2 and needle in err
    assert err.strip().count("\n") == 0 or err.startswith("Usage")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_simulate_hands_refuses_existing_out(cli, tmp_path):
    (tmp_path / "x").mkdir()
    code, _, err = cli("simulate", "hands", "--n", "1", "--out", tmp_path / "x", "--size", "32")
    assert code == 2 and err.startswith("simgan: error:") and err.count("\n") == 1


def test_downsample_keeps_labels_on_their_pixels():
    from simgan.simulators.hands import cube_encode, downsample

    big, labels = render_hands(6, seed=4, size=160)
    small, labels = downsample(big[..., 0], labels, 64)
    assert small.shape == (6, 64, 64)
    for lab in labels:
        K, xyz, uv = lab["intrinsics"], np.array(lab["xyz"]), np.array(lab["uv"])
        assert K["width"] == 64
        np.testing.assert_allclose(uv[:, 0], K["fx"] * xyz[:, 0] / xyz[:, 2] + K["cx"], atol=0.01)
        np.testing.assert_allclose(uv[:, 1], K["fy"] * xyz[:, 1] / xyz[:, 2] + K["cy"], atol=0.01)
    # the cube encoding: 0 (no reading) stays 0, an empty synthetic background becomes far
    enc = cube_encode(small, [l["pose"]["center"][2] for l in labels], empty_is_far=True)
    assert np.all(enc[small == 0] == 65535) and np.all(enc[small > 0] >= 1)
    # the cube's centre maps to the middle of the 16-bit range, its ends to 1 and 65535
    assert cube_encode(np.array([[0, 500, 300, 700, 900]], np.uint16), [500])[0].tolist() == [0, 32768, 1, 65535, 65535]



def test_hand_sequences_move_smoothly_and_renew_the_sensor_noise():
    from simgan.simulators.hands import render_hand_sequences

    images, labels = render_hand_sequences(3, 6, seed=2, size=64)
    assert images.shape == (18, 64, 64, 1)
    assert [(lab["sequence"], lab["frame"]) for lab in labels[5:7]] == [(0, 5), (1, 0)]
    again, _ = render_hand_sequences(3, 6, seed=2, size=64)
    assert again.tobytes() == images.tobytes()
    uv = np.array([lab["uv"] for lab in labels]).reshape(3, 6, 14, 2)
    step = np.abs(np.diff(uv, axis=1)).max()  # px per frame within a sequence
    jump = np.abs(uv[1:, 0] - uv[:-1, -1]).max()  # from one sequence's last frame to the next one's first
    assert step < jump and step < 12
    target, _ = render_hand_sequences(2, 4, seed=2, size=64, domain="target")
    a, b = target[0, ..., 0].astype(int), target[1, ..., 0].astype(int)
    # the same background, but a fresh draw of the sensor's noise and dropouts
    assert 0 < np.mean(a != b) and np.median(np.abs(a - b)[(a > 0) & (b > 0)]) < 60
