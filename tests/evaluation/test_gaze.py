"""The §3.1 gaze estimator: angular error, the pitch/yaw convention, the paper's network shapes, training on toy eyes
(``toy_eyes``: dark discs on gray with gaze-derived positions; nothing is downloaded)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import toy_eyes

from simgan.cli import main as cli_main
from simgan.datasets import write_dataset
from simgan.errors import SimganError
from simgan.evaluation import (
    GazeEstimator,
    GazeNet,
    GazeTrainSettings,
    angular_error_deg,
    gaze_from_pitch_yaw,
    gaze_metrics,
    gaze_of,
    pitch_yaw_from_gaze,
    train_gaze_estimator,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from more threads, and on a busy machine (parallel test runs,
    CI) OpenMP threads waiting for each other make them many times slower: use one."""
    old_threads, old_env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # the CLI's set_threads() respects it
    yield
    torch.set_num_threads(old_threads)
    if old_env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = old_env


SMALL_NET = dict(conv_channels=(8, 8, 16, 16, 32), hidden=64)


def _noise_sets(n: int, seed: int, sigma_b: float = 6.0):
    a, _ = toy_eyes.render(n, seed=seed, noise=6.0)
    b, _ = toy_eyes.render(n, seed=seed + 1000, noise=sigma_b)
    return a, b


def run_cli(argv, capsys):
    code = 0
    try:
        cli_main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaldata")
    syn, syn_labels = toy_eyes.render(160, seed=11, noise=2.0)
    ref, _ = toy_eyes.render(160, seed=11, noise=6.0, noise_seed=3, pupil_dx=1.0)
    real, real_labels = toy_eyes.render(120, seed=12, noise=6.0)
    write_dataset(root / "synthetic", syn, syn_labels)
    write_dataset(root / "refined", ref, syn_labels)
    write_dataset(root / "real", real, real_labels)
    write_dataset(root / "unlabelled", real[:40])
    write_dataset(root / "fewer", ref[:100], syn_labels[:100])
    write_dataset(root / "small", np.zeros((20, 20, 30, 1), np.uint8), syn_labels[:20])
    return root


def test_angular_error_on_hand_computed_vectors():
    pred = np.array([[1, 0, 0], [0, 0, -3], [1, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float)
    true = np.array([[0, 1, 0], [0, 0, -1], [1, 0, 0], [0, 0, -1], [1, 1e-6, 0]], dtype=float)
    err = angular_error_deg(pred, true)
    np.testing.assert_allclose(err[:4], [90.0, 0.0, 45.0, 180.0], atol=1e-9)
    assert err[4] == pytest.approx(math.degrees(1e-6), rel=1e-6)  # tiny angles stay accurate


def test_pitch_yaw_convention():
    # Looking into the camera: pitch = yaw = 0 -> [0, 0, -1].
    np.testing.assert_allclose(gaze_from_pitch_yaw(0.0, 0.0), [0, 0, -1], atol=1e-12)
    # pitch = asin(-g_y): looking up in the image (negative y) is a positive pitch.
    np.testing.assert_allclose(gaze_from_pitch_yaw(math.pi / 2, 0.0), [0, -1, 0], atol=1e-12)
    rng = np.random.default_rng(0)
    p, y = rng.uniform(-1, 1, 50), rng.uniform(-2, 2, 50)
    g = gaze_from_pitch_yaw(p, y)
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0)
    np.testing.assert_allclose(np.arcsin(-g[:, 1]), p, atol=1e-12)
    np.testing.assert_allclose(np.arctan2(-g[:, 0], -g[:, 2]), y, atol=1e-12)
    p2, y2 = pitch_yaw_from_gaze(3 * g)
    np.testing.assert_allclose(p2, p, atol=1e-12)
    np.testing.assert_allclose(y2, y, atol=1e-12)
    # A labels line with pitch/yaw but no gaze is derived; a gaze is normalised.
    np.testing.assert_allclose(gaze_of({"pitch": 0.1, "yaw": -0.2}, "x"), gaze_from_pitch_yaw(0.1, -0.2))
    np.testing.assert_allclose(gaze_of({"gaze": [0, 0, -2]}, "x"), [0, 0, -1])
    with pytest.raises(SimganError, match="no gaze label"):
        gaze_of({"pupil": [1, 2]}, "line 3")
    with pytest.raises(SimganError):
        gaze_of({"gaze": [0, 0]}, "line 3")


def test_gaze_metrics_percent_within():
    m = gaze_metrics([0.5, 1.0, 2.5, 7.0, 7.5, 30.0])
    assert m["within_pct"]["1"] == pytest.approx(100 * 2 / 6)
    assert m["within_pct"]["7"] == pytest.approx(100 * 4 / 6)
    assert m["within_pct"]["20"] == pytest.approx(100 * 5 / 6)
    assert m["mean_deg"] == pytest.approx(np.mean([0.5, 1.0, 2.5, 7.0, 7.5, 30.0]))
    assert m["median_deg"] == pytest.approx(4.75)
    assert set(m["within_pct"]) == {str(d) for d in range(1, 21)}


def test_gaze_net_shapes_follow_the_paper():
    net = GazeNet(1, 35, 55)
    assert net.flat_features == 9600  # 192 x 5 x 10: the paper's "FC9600"
    assert net(torch.zeros(2, 1, 35, 55)).shape == (2, 3)
    assert GazeNet(3, 36, 60).flat_features == 192 * 5 * 11  # other sizes: flatten size computed
    with pytest.raises(SimganError, match="too small"):
        GazeNet(1, 12, 12)


def test_gaze_estimator_fits_a_small_set(tmp_path):
    images, labels = toy_eyes.render(384, seed=1, noise=3.0)
    gaze = np.array([d["gaze"] for d in labels])
    s = GazeTrainSettings(batch_size=32, eval_every_images=640, patience=3, max_epochs=12, max_val_images=64,
                          **SMALL_NET)
    est = train_gaze_estimator(images, gaze, settings=s, device="cpu")
    baseline = angular_error_deg(np.broadcast_to(gaze.mean(0), gaze.shape), gaze).mean()
    train_err = angular_error_deg(est.predict(images), gaze).mean()
    assert train_err < 0.35 * baseline, (train_err, baseline)
    assert est.info["best_val_deg"] < 0.5 * baseline
    assert est.info["images_per_second"] > 0 and est.info["curve"]
    # save / load round trip keeps predictions
    path = est.save(tmp_path / "est.pt")
    again = GazeEstimator.load(path)
    np.testing.assert_allclose(again.predict(images[:20]), est.predict(images[:20]), atol=1e-5)
    with pytest.raises(SimganError, match="trained on"):
        est.predict(np.zeros((2, 20, 20, 1), np.uint8))


def test_gaze_training_keeps_to_its_time_budget():
    images, labels = toy_eyes.render(256, seed=2)
    gaze = np.array([d["gaze"] for d in labels])
    s = GazeTrainSettings.budget(0.5, eval_every_images=10**6, max_epochs=1000, **SMALL_NET)
    est = train_gaze_estimator(images, gaze, settings=s, device="cpu")
    assert est.info["stopped"] == "max_seconds"
    assert est.info["total_seconds"] < 5.0 and len(est.info["curve"]) == 1


def test_estimator_load_rejects_other_files(tmp_path):
    p = tmp_path / "x.pt"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(SimganError):
        GazeEstimator.load(p)
    with pytest.raises(SimganError, match="not found"):
        GazeEstimator.load(tmp_path / "missing.pt")

