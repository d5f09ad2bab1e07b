"""Realism measures: the frozen feature network, the classifier two-sample test and the kernel distance, on cases with a
known answer (all data made here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import toy_eyes

from simgan.errors import SimganError
from simgan.evaluation import (
    C2STSettings,
    classifier_two_sample_test,
    image_features,
    kernel_distance,
    polynomial_mmd2_unbiased,
)
from simgan.models.features import PSI_LEVEL, frozen_feature_net


def _noise_sets(n: int, seed: int, sigma_b: float = 6.0):
    a, _ = toy_eyes.render(n, seed=seed, noise=6.0)
    b, _ = toy_eyes.render(n, seed=seed + 1000, noise=sigma_b)
    return a, b


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

