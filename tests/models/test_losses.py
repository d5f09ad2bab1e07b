"""Eq. 2, 3, 4 on hand-computed cases: both reductions, the adversarial losses, R1, the diversity term, the feature
transforms psi, and D's accuracy."""

import math

import pytest
import torch

from simgan.config import resolve_config
from simgan.errors import SimganError
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


def logits_real_score(r: torch.Tensor) -> torch.Tensor:
    """Logits (N,2,h,w) whose realness logit_real - logit_refined is r."""
    return torch.stack([r, torch.zeros_like(r)], dim=1)


def test_mean_reduction_by_hand():
    p = torch.tensor([[[0.8, 0.5]]])
    ref = torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))], dim=1)
    real = ref.clone()
    # per patch means instead of sums: half the sum for 2 patches
    assert losses.realism_loss(ref, reduction="mean").item() == pytest.approx(
        (-math.log(0.2) - math.log(0.5)) / 2, rel=1e-5)
    assert losses.discriminator_loss(ref, real, reduction="mean").item() == pytest.approx(
        ((-math.log(0.8) - math.log(0.5)) / 2 + (-math.log(0.2) - math.log(0.5)) / 2) / 2, rel=1e-5)
    syn = torch.zeros(1, 1, 2, 2)
    out = torch.tensor([[[[0.4, 0.0], [0.0, 0.0]]]])
    assert losses.self_regularization_loss(out, syn, losses.Identity(), reduction="mean").item() == pytest.approx(0.1)


def test_least_squares_and_hinge_by_hand():
    r_ref = torch.tensor([[[0.5, -1.0]]])  # realness of refined patches
    r_real = torch.tensor([[[2.0, 0.0]]])
    ref, real = logits_real_score(r_ref), logits_real_score(r_real)
    # LSGAN 0-1 coding: D: ½ r_ref² + ½ (r_real - 1)²; R: ½ (r_ref - 1)²  (sums over patches, mean over images)
    d_ls = ((0.5 * 0.25 + 0.5 * 1.0) + (0.5 * 1.0 + 0.5 * 1.0)) / 2
    assert losses.discriminator_loss(ref, real, adversarial="least-squares").item() == pytest.approx(d_ls)
    assert losses.realism_loss(ref, adversarial="least-squares").item() == pytest.approx(0.5 * 0.25 + 0.5 * 4.0)
    # hinge: D: relu(1 + r_ref) + relu(1 - r_real); R: -r_ref
    d_h = ((1.5 + 0.0) + (0.0 + 1.0)) / 2
    assert losses.discriminator_loss(ref, real, adversarial="hinge").item() == pytest.approx(d_h)
    assert losses.realism_loss(ref, adversarial="hinge").item() == pytest.approx(0.5)
    assert losses.realism_loss(ref, adversarial="hinge", reduction="mean").item() == pytest.approx(0.25)


def test_r1_penalty_by_hand():
    # D(y) = sum over one patch of 3 * y: gradient 3 everywhere, ||grad||² = 9 * pixels
    y = torch.zeros(2, 1, 2, 2, requires_grad=True)
    scores = (3 * y).sum(dim=(1, 2, 3))[:, None, None]
    assert losses.r1_penalty(scores, y).item() == pytest.approx(9 * 4)


def test_diversity_term_by_hand():
    """In pixel units: per pair the mean |a - b| over the image, capped, averaged over pairs."""
    a = torch.zeros(2, 1, 2, 2)
    b = torch.tensor([0.3, 0.9]).view(2, 1, 1, 1).expand(2, 1, 2, 2)  # mean |a - b|: 0.3 and 0.9
    assert losses.diversity_term(a, b, cap=0.5).item() == pytest.approx((0.3 + 0.5) / 2)
    assert losses.diversity_term(a, b, cap=2.0).item() == pytest.approx((0.3 + 0.9) / 2)
    a.requires_grad_(True)
    losses.diversity_term(a, b, cap=0.5).backward()  # the capped pair passes no gradient
    assert torch.allclose(a.grad[0], torch.full((1, 2, 2), -1 / 8)) and torch.equal(a.grad[1], torch.zeros(1, 2, 2))
    with pytest.raises(SimganError, match="diversity needs refiner.noise_channels"):
        resolve_config("eyes", overrides={"loss": {"diversity": 1.0}})


def test_task_consistency_loss_by_hand():
    # class: the cross-entropy against the class the network gave x (CyCADA)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    ref = torch.tensor([0, 0])
    want = (-torch.log_softmax(logits, 1)[0, 0] - torch.log_softmax(logits, 1)[1, 0]) / 2
    assert torch.allclose(losses.task_consistency_loss(logits, ref, "class"), want)
    assert abs(float(want) - (math.log(1 + math.exp(-2)) + math.log(1 + math.e)) / 2) < 1e-6
    # vector and points: the mean squared change of the output
    out, ref = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert float(losses.task_consistency_loss(out, ref, "vector")) == (0 + 4 + 1 + 1) / 4
    assert float(losses.task_consistency_loss(ref, ref, "points")) == 0.0
