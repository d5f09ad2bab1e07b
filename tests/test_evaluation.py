"""Tests of the evaluation package: every measure on cases with a known answer, and the CLI.

All data are made here (``toy_eyes``: dark discs on gray with gaze-derived positions); nothing
reads /work/shared or the network. CPU only, tiny images and few steps.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from simgan.cli import main as cli_main
from simgan.datasets import write_dataset
from simgan.errors import SimganError
from simgan.evaluation import (C2STSettings, GazeEstimator, GazeNet, GazeTrainSettings, angular_error_deg,
                               classifier_two_sample_test, evaluate_preservation, fit_pupil, fit_pupil_pair,
                               gaze_from_pitch_yaw,
                               gaze_metrics, gaze_of, image_features, kernel_distance, pitch_yaw_from_gaze,
                               polynomial_mmd2_unbiased, train_gaze_estimator)
from simgan.models.features import PSI_LEVEL, frozen_feature_net

import toy_eyes


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

# ----------------------------------------------------------------------------------------------
# angular error and label conventions


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


# ----------------------------------------------------------------------------------------------
# the gaze estimator


def test_gaze_net_shapes_follow_the_paper():
    net = GazeNet(1, 35, 55)
    assert net.flat_features == 9600  # 192 x 5 x 10: the paper's "FC9600"
    assert net(torch.zeros(2, 1, 35, 55)).shape == (2, 3)
    assert GazeNet(3, 36, 60).flat_features == 192 * 5 * 11  # other sizes: flatten size computed
    with pytest.raises(SimganError, match="too small"):
        GazeNet(1, 12, 12)


SMALL_NET = dict(conv_channels=(8, 8, 16, 16, 32), hidden=64)


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


# ----------------------------------------------------------------------------------------------
# the frozen feature network


def test_frozen_feature_net_is_deterministic_frozen_and_differentiable():
    a, b = frozen_feature_net(1), frozen_feature_net(1)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
        assert not pa.requires_grad
    assert not a.training
    x = torch.rand(2, 1, 35, 55, requires_grad=True) * 2 - 1
    x.retain_grad()
    psi = frozen_feature_net(1, level=PSI_LEVEL)
    f = psi(x)
    assert f.shape == (2, 64, 18, 28)
    f.abs().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # the truncated net is a prefix of the full one
    with torch.no_grad():
        full_mid = a.blocks[1](a.blocks[0](x))
        torch.testing.assert_close(psi(x), full_mid)
    rgb = frozen_feature_net(3)
    assert rgb(torch.zeros(1, 3, 16, 16)).shape == (1, 256, 2, 2)
    assert rgb.pooled(torch.zeros(4, 3, 20, 17)).shape == (4, 480)
    with pytest.raises(SimganError):
        a(torch.zeros(1, 1, 15, 40))
    with pytest.raises(SimganError):
        a(torch.zeros(1, 3, 32, 32))


# ----------------------------------------------------------------------------------------------
# realism: C2ST and kernel distance


def _noise_sets(n: int, seed: int, sigma_b: float = 6.0):
    a, _ = toy_eyes.render(n, seed=seed, noise=6.0)
    b, _ = toy_eyes.render(n, seed=seed + 1000, noise=sigma_b)
    return a, b


def test_c2st_same_distribution_is_chance():
    a, b = _noise_sets(400, seed=3)
    r = classifier_two_sample_test(a, b, settings=C2STSettings(max_steps=120, max_epochs=40, eval_every=20, width=8), seed=0)
    lo, hi = r["ci95"]
    assert lo <= 0.5 <= hi, r
    assert r["p_value"] > 0.01
    assert r["trials"] == 400 and r["n_per_class"] == 400


def test_c2st_separable_sets_are_told_apart():
    a, b = _noise_sets(300, seed=4, sigma_b=20.0)  # clean vs very noisy: trivially separable
    r = classifier_two_sample_test(a, b, settings=C2STSettings(max_steps=120, max_epochs=40, eval_every=20, width=8), seed=0)
    assert r["accuracy"] > 0.95, r
    assert r["ci95"][0] > 0.85 and r["p_value"] < 1e-10


def test_kernel_distance_known_answers():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same = kernel_distance(x, y, n_blocks=10)
    assert abs(same["kid"]) < 4 * same["kid_se"]
    far = kernel_distance(x, y + 1.0, n_blocks=10)
    assert far["kid"] > 10 * far["kid_se"] and far["kid"] > 0.1
    # the unbiased estimator on a hand-checkable case: identical points -> MMD² of 0 exactly
    z = np.ones((3, 2))
    assert polynomial_mmd2_unbiased(z, z) == pytest.approx(0.0)


def test_kernel_distance_on_images():
    a, b = _noise_sets(300, seed=5)
    fa, fb = image_features(a), image_features(b)
    assert fa.shape == (300, 480)
    same = kernel_distance(fa, fb)
    assert abs(same["kid"]) < 3 * same["kid_se"]
    _, c = _noise_sets(300, seed=6, sigma_b=20.0)
    diff = kernel_distance(fa, image_features(c))
    assert diff["kid"] > 5 * diff["kid_se"] and diff["kid"] > 10 * abs(same["kid"])


# ----------------------------------------------------------------------------------------------
# preservation: pupil fit


def test_pupil_fit_finds_the_label_and_a_known_shift():
    images, labels = toy_eyes.render(60, seed=7, noise=5.0)
    moved, _ = toy_eyes.render(60, seed=7, noise=5.0, noise_seed=99, pupil_dx=2.0)
    errs, shifts = [], []
    for img, mov, lab in zip(images, moved, labels):
        fs, fm = fit_pupil(img), fit_pupil(mov)  # independent fits
        assert fs.ok and fm.ok, (fs.failure, fm.failure)
        errs.append(math.hypot(fs.region.x - lab["pupil"][0], fs.region.y - lab["pupil"][1]))
        shifts.append(fm.region.x - fs.region.x)
        ps, pm = fit_pupil_pair(img, mov)  # the refined image fitted near the synthetic one
        assert ps == fs and abs((pm.region.x - ps.region.x) - shifts[-1]) < 0.05
    assert np.mean(errs) < 0.3, np.mean(errs)
    assert abs(np.mean(shifts) - 2.0) < 0.3, np.mean(shifts)
    # a flat image has no pupil: a clean failure, not an exception
    flat = fit_pupil(np.full((35, 55, 1), 128, np.uint8))
    assert not flat.ok and flat.failure


def test_preservation_api_measures_the_shift(tmp_path):
    images, labels = toy_eyes.render(80, seed=8, noise=4.0)
    moved, _ = toy_eyes.render(80, seed=8, noise=4.0, noise_seed=5, pupil_dx=2.0)
    extra, extra_labels = toy_eyes.render(3, seed=9)
    write_dataset(tmp_path / "syn", images, labels)
    # the refined set may hold more files than the synthetic one; pairs are matched by path
    write_dataset(tmp_path / "ref", np.concatenate([moved, extra]), labels + extra_labels)
    gaze = np.array([d["gaze"] for d in labels])
    est = train_gaze_estimator(images, gaze, device="cpu", settings=GazeTrainSettings(
        batch_size=16, eval_every_images=160, max_epochs=3, **SMALL_NET))
    m = evaluate_preservation(tmp_path / "syn", tmp_path / "ref", tmp_path / "out", estimator=est)
    assert abs(m["pupil"]["mean_px"] - 2.0) < 0.3
    assert m["pupil"]["n_failed"] == 0 and m["n_pairs"] == 80
    assert m["pupil"]["fit_vs_label_synthetic_mean_px"] < 0.3
    assert (tmp_path / "out" / "pupil_shift_hist.png").stat().st_size > 1000
    g = m["gaze"]
    assert g["estimator"]["trained_on"] == "given estimator" and g["change_mean_deg"] > 0
    # identical sets: nothing moves
    m0 = evaluate_preservation(tmp_path / "syn", tmp_path / "syn", estimator=est)
    assert m0["pupil"]["mean_px"] == 0 and m0["gaze"]["change_mean_deg"] < 1e-3
    assert m0["pixels"]["mean_abs_change"] == 0
    m1 = evaluate_preservation(tmp_path / "syn", tmp_path / "ref", train_estimator=False, pupil=False)
    assert m1["gaze"] is None and "switched off" in m1["gaze_skipped"] and "pupil" not in m1


# ----------------------------------------------------------------------------------------------
# CLI end to end


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


def test_cli_gaze_end_to_end(folders, tmp_path, capsys):
    out = tmp_path / "gaze"
    code, stdout, err = run_cli(["evaluate", "gaze", "--train", str(folders / "synthetic"), "--train",
                                 str(folders / "refined"), "--name", "syn", "--name", "ref", "--test",
                                 str(folders / "real"), "--out", str(out), "--device", "cpu", "--max-epochs", "1",
                                 "--batch-size", "64", "-q"], capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["results"]) == {"syn", "ref"}
    for r in m["results"].values():
        assert 0 <= r["mean_deg"] <= 180 and set(r["within_pct"]) == {str(d) for d in range(1, 21)}
        assert Path(r["estimator"]).is_file()
    assert (out / "gaze_cdf.png").stat().st_size > 1000
    assert "syn" in stdout and "≤7°%" in stdout
    # an existing metrics.json is not replaced without --overwrite
    code, _, err = run_cli(["evaluate", "gaze", "--train", str(folders / "synthetic"), "--test",
                            str(folders / "real"), "--out", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1 and "--overwrite" in err


def test_cli_realism_end_to_end(folders, tmp_path, capsys):
    out = tmp_path / "realism"
    code, stdout, err = run_cli(["evaluate", "realism", "--real", str(folders / "real"), "--candidate",
                                 str(folders / "synthetic"), "--candidate", str(folders / "refined"),
                                 "--out", str(out), "--device", "cpu", "--reference", "--no-fid", "-q"], capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["results"]) == {"synthetic", "refined"}
    assert m["reference"]["n_used"] == 60 and "kid" in m["reference"] and "c2st" in m["reference"]
    for r in m["results"].values():
        assert 0 <= r["c2st"]["accuracy"] <= 1 and r["c2st"]["ci95"][0] <= r["c2st"]["accuracy"]
        assert r["kid"]["kid_se"] >= 0
    assert "C2ST acc%" in stdout and "refined" in stdout and "real half vs half" in stdout


def test_cli_preservation_end_to_end(folders, tmp_path, capsys):
    out = tmp_path / "pres"
    code, stdout, err = run_cli(["evaluate", "preservation", "--synthetic", str(folders / "synthetic"),
                                 "--refined", str(folders / "refined"), "--out", str(out), "--device", "cpu",
                                 "--max-epochs", "1", "--max-minutes", "1", "--batch-size", "32", "-q"], capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert abs(m["pupil"]["mean_px"] - 1.0) < 0.3
    assert m["gaze"]["change_mean_deg"] >= 0 and m["gaze"]["estimator"]["trained_on"] == "synthetic set"
    assert "pupil shift, censored median" in stdout and "moved beyond the radius" in stdout


@pytest.mark.parametrize("argv, needle", [
    (["evaluate", "gaze", "--train", "{d}/nope", "--test", "{d}/real", "--out", "{t}/o"], "not found"),
    (["evaluate", "gaze", "--train", "{d}/synthetic", "--test", "{d}/unlabelled", "--out", "{t}/o"], "labels"),
    (["evaluate", "gaze", "--train", "{d}/small", "--test", "{d}/real", "--out", "{t}/o"], "size"),
    (["evaluate", "gaze", "--train", "{d}/synthetic", "--name", "a", "--name", "b", "--test", "{d}/real",
      "--out", "{t}/o"], "--name"),
    (["evaluate", "gaze", "--train", "{d}/synthetic", "--test", "{d}/real", "--out", "{t}/o", "--batch-size", "0"],
     "--batch-size"),
    (["evaluate", "realism", "--real", "{d}/nope", "--candidate", "{d}/synthetic", "--out", "{t}/o"], "not found"),
    (["evaluate", "realism", "--real", "{d}/real", "--candidate", "{d}/small", "--out", "{t}/o"], "size"),
    (["evaluate", "preservation", "--synthetic", "{d}/synthetic", "--refined", "{d}/fewer", "--out", "{t}/o"],
     "lacks 60"),
    (["evaluate", "preservation", "--synthetic", "{d}/synthetic", "--refined", "{d}/small", "--out", "{t}/o"],
     "size"),
    (["evaluate", "preservation", "--synthetic", "{d}/synthetic", "--refined", "{d}/refined", "--out", "{t}/o",
      "--estimator", "{t}/missing.pt"], "not found"),
])
def test_cli_bad_inputs_are_one_line_errors(folders, tmp_path, capsys, argv, needle):
    argv = [a.format(d=folders, t=tmp_path) for a in argv]
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert err.startswith("simgan: error: ") and err.count("\n") == 1, err
    assert needle in err
    assert not (tmp_path / "o").exists()  # bad input leaves no output folder behind


def test_pupil_failures_count_in_the_censored_headline(tmp_path):
    """A refiner that moves pupils beyond the search radius cannot look good by dropping out of
    the statistics: those pairs are a counted outcome and push the censored median up."""
    from simgan.evaluation.preservation import censored_summary, pair_outcome, search_radius

    images, labels = toy_eyes.render(20, seed=8, noise=4.0)
    near, _ = toy_eyes.render(20, seed=8, noise=4.0, noise_seed=5, pupil_dx=1.0)
    far, _ = toy_eyes.render(20, seed=8, noise=4.0, noise_seed=5, pupil_dx=14.0)
    radius = search_radius(images.shape[2])
    assert radius < 14.0
    outcomes = [pair_outcome(a, b)[0] for a, b in zip(images, far)]
    assert outcomes.count("beyond_radius") >= 10, outcomes
    # 12 pairs moved 1 px, 8 moved 14 px: the fitted-only mean stays ~1 px, the headline does not.
    refined = np.concatenate([near[:12], far[12:]])
    write_dataset(tmp_path / "syn", images, labels)
    write_dataset(tmp_path / "ref", refined, labels)
    m = evaluate_preservation(tmp_path / "syn", tmp_path / "ref", train_estimator=False)["pupil"]
    bad = m["outcomes"]["beyond_radius"] + m["outcomes"]["refined_failed"]
    assert m["outcomes"]["fitted"] + bad + m["outcomes"]["synthetic_failed"] == 20
    assert bad >= 6 and m["failure_rate"] == bad / m["n_eligible"]
    assert m["mean_px"] < 2.0  # what the old headline reported
    assert m["mean_px_lower_bound"] > m["mean_px"] + 2.0
    assert m["p90_px_censored"] == float("inf")
    assert all(d > radius for d in m["beyond_radius_distances_px"])
    # the statistic itself: failures are +inf in the quantiles, the radius in the mean bound
    s = censored_summary(np.array([1.0, 2.0, 3.0]), 2, 8.0)
    assert s["median_px_censored"] == 3.0 and s["p90_px_censored"] == float("inf")
    assert s["failure_rate"] == 0.4 and s["mean_px_lower_bound"] == (6.0 + 16.0) / 5
    assert censored_summary(np.array([1.0]), 2, 8.0)["median_px_censored"] == float("inf")
