"""Label preservation (§3.1): pupil fits on toy eyes with a known shift, and the censored headline."""

from __future__ import annotations

import math

import numpy as np
import toy_eyes

from simgan.datasets import write_dataset
from simgan.evaluation import (
    GazeTrainSettings,
    evaluate_preservation,
    fit_pupil,
    fit_pupil_pair,
    train_gaze_estimator,
)

SMALL_NET = dict(conv_channels=(8, 8, 16, 16, 32), hidden=64)


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


def test_pupil_failures_count_in_the_censored_headline(tmp_path):
    """A refiner that moves pupils beyond the search radius cannot look good by dropping out of
    the statistics: those pairs are a counted outcome and push the censored median up."""
    from simgan.evaluation.preservation import (
        censored_summary,
        pair_outcome,
        search_radius,
    )

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

