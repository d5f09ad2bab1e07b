"""Eq. 2, 3, 4 on hand-computed cases, the feature transforms psi, and D's accuracy."""

import math

import pytest
import torch

from simgan.models import losses


def logits_with_prob(p_refined: torch.Tensor) -> torch.Tensor:
    """Logits (N,2,h,w) whose softmax gives P(refined) = p_refined."""
    return torch.stack([torch.zeros_like(p_refined), torch.log(p_refined / (1 - p_refined))], dim=1)


def test_discriminator_loss_eq2_by_hand():
    # one refined image with 2 patches at P(refined) = 0.8, 0.5; one real image with 2 patches at 0.1, 0.4
    ref = logits_with_prob(torch.tensor([[[0.8, 0.5]]]))
    real = logits_with_prob(torch.tensor([[[0.1, 0.4]]]))
    expected = (-math.log(0.8) - math.log(0.5) - math.log(0.9) - math.log(0.6)) / 2  # summed over patches, mean over 2 images
    assert losses.discriminator_loss(ref, real).item() == pytest.approx(expected, rel=1e-5)


def test_realism_loss_eq3_by_hand():
    ref = logits_with_prob(torch.tensor([[[0.8, 0.5]], [[0.2, 0.2]]]))
    expected = ((-math.log(0.2) - math.log(0.5)) + (-2 * math.log(0.8))) / 2
    assert losses.realism_loss(ref).item() == pytest.approx(expected, rel=1e-5)


def test_self_regularization_identity_and_eq4():
    syn = torch.zeros(2, 1, 2, 2)
    ref = torch.tensor([[[[0.5, -0.5], [0.0, 0.0]]], [[[0.1, 0.1], [0.1, 0.1]]]])
    reg = losses.self_regularization_loss(ref, syn, losses.Identity())
    assert reg.item() == pytest.approx((1.0 + 0.4) / 2)
    logits = logits_with_prob(torch.full((2, 1, 1), 0.5))
    total, real, reg2 = losses.refiner_loss(logits, ref, syn, losses.Identity(), lambda_reg=0.25)
    assert real.item() == pytest.approx(math.log(2), rel=1e-5)
    assert total.item() == pytest.approx(math.log(2) + 0.25 * 0.7, rel=1e-5)


def test_channel_mean_ignores_colour_changes_that_keep_the_mean():
    syn = torch.zeros(1, 3, 2, 2)
    ref = torch.zeros(1, 3, 2, 2)
    ref[:, 0] += 0.3
    ref[:, 1] -= 0.3
    assert losses.self_regularization_loss(ref, syn, losses.ChannelMean()).item() == pytest.approx(0.0, abs=1e-7)
    assert losses.self_regularization_loss(ref, syn, losses.Identity()).item() == pytest.approx(2.4)


def test_gradients_ignore_brightness_but_not_edges():
    syn = torch.linspace(-1, 1, 12).reshape(1, 1, 3, 4)
    psi = losses.Gradients()
    assert losses.self_regularization_loss(syn + 0.2, syn, psi).item() == pytest.approx(0.0, abs=1e-6)
    edged = syn.clone()
    edged[..., 0, 0] += 0.5  # one pixel changed: touches one horizontal and one vertical difference
    assert losses.self_regularization_loss(edged, syn, psi).item() == pytest.approx(1.0, rel=1e-5)


def test_standardized_ignores_brightness_and_contrast_but_not_edges():
    syn = torch.tensor([[[[-0.5, 0.5], [0.5, -0.5]]]])  # mean 0, std 0.5: psi = -1, 1, 1, -1
    psi = losses.Standardized()
    assert torch.allclose(psi(syn), syn * 2)
    # a per-image gain and offset (tone) costs nothing, in each channel separately
    assert losses.self_regularization_loss(0.4 * syn + 0.3, syn, psi).item() == pytest.approx(0.0, abs=1e-6)
    moved = torch.tensor([[[[0.5, -0.5], [0.5, -0.5]]]])  # same histogram, edges moved: 2 of 4 pixels flip
    assert losses.self_regularization_loss(moved, syn, psi).item() == pytest.approx(4.0, rel=1e-5)
    flat = torch.zeros(1, 1, 2, 2)  # std floored at 0.05: a flat image's tiny change is x20, not infinite
    speck = torch.tensor([0.01, 0.0, 0.0, -0.01]).reshape(1, 1, 2, 2)
    assert losses.self_regularization_loss(flat + speck, flat, psi).item() == pytest.approx(0.4, rel=1e-4)


def test_equalized_psi_ignores_monotone_tone_but_counts_amplified_patterns():
    psi = losses.feature_transform("equalized", 1)
    assert isinstance(psi, losses.Equalized)
    g = torch.Generator().manual_seed(0)
    syn = torch.rand(2, 1, 12, 16, generator=g) * 1.6 - 0.8
    # a monotone per-image tone change (gamma-like, then a gain) costs (almost) nothing
    toned = (torch.sign(syn) * syn.abs() ** 0.7) * 0.6 - 0.1
    assert losses.self_regularization_loss(toned, syn, psi, reduction="mean").item() < 0.02
    # a faint checkerboard on a nearly flat image: tiny before equalisation, large after it
    flat = torch.full((1, 1, 12, 16), 0.2) + torch.rand(1, 1, 12, 16, generator=g) * 0.002
    checker = ((torch.arange(12)[:, None] + torch.arange(16)[None]) % 2).float() * 0.01
    before = losses.self_regularization_loss(flat + checker, flat, losses.Identity(), reduction="mean").item()
    after = losses.self_regularization_loss(flat + checker, flat, psi, reduction="mean").item()
    assert before == pytest.approx(0.005, rel=1e-3) and after > 50 * before


def test_discriminator_accuracy():
    logits = logits_with_prob(torch.tensor([[[0.9, 0.2, 0.6, 0.4]]]))
    assert losses.discriminator_accuracy(logits, losses.REFINED).item() == pytest.approx(0.5)
    assert losses.discriminator_accuracy(logits, losses.REAL).item() == pytest.approx(0.5)


def test_features_psi_is_frozen_and_differentiable():
    psi = losses.feature_transform("features", 1)
    assert all(not p.requires_grad for p in psi.parameters())
    x = torch.rand(2, 1, 20, 24) * 2 - 1
    assert losses.self_regularization_loss(x, x, psi).item() == 0.0
    y = (x + 0.1 * torch.randn_like(x)).requires_grad_(True)
    loss = losses.self_regularization_loss(y, x, psi)
    loss.backward()
    assert loss.item() > 0 and y.grad.abs().sum() > 0
    assert losses.feature_transform("features", 3)(torch.zeros(1, 3, 16, 16)).shape[1] == 64
