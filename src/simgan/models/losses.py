"""The losses of §2: Eq. 2 for D, Eq. 3/4 for R, with the local (per-patch) sum of §2.2.

D's output is a map of two-class logits (``N×2×h×w``); ``D(.) = softmax(logits)[:, 1]`` is the
probability that a patch is *refined*. Targets: refined = 1, real = 0 (Eq. 2).

Conventions (fixed here and tested on hand-computed cases):

* ``reduction="sum"`` (the paper's Eq. 2 and 4 read literally; the eyes and hands presets):
  each image's adversarial loss is the **sum over D's patches** (§2.2, Figure 3) and the
  self-regularisation term is the L1 norm, the **sum over feature elements**. Then the balance
  between the two terms of Eq. 4 depends on the image size and on D's patch count: at 55×35
  with the eyes D (36 patches, 1,925 pixels) lambda = 0.1 weighs a mean pixel change 5.3 times
  as much as a mean patch loss; at 24×24 RGB with 9 patches, 19 times.
* ``reduction="mean"`` (the generic preset): the **mean over patches** and the **mean over
  feature elements**, so ``lambda`` means the same at every image size and patch count. With
  Adam (scale-invariant steps) the only thing that changes between the two conventions is
  lambda's meaning: ``lambda_mean = lambda_sum * elements / patches``.
* a mini-batch loss is the **mean over its images**, so learning rates do not depend on the
  batch size. (The paper's Eq. 2 and 4 sum over images as well; that only rescales the step.)

The adversarial loss itself (``adversarial``): ``cross-entropy`` is the paper's (Eq. 2, 3);
``least-squares`` is LSGAN (Mao et al., "Least Squares Generative Adversarial Networks",
ICCV 2017; the 0-1 coding, a = 0, b = c = 1); ``hinge`` is the hinge loss of Lim & Ye
("Geometric GAN", 2017) as used by Miyato et al. (ICLR 2018). The last two read D's score as the
log-odds of *real*, ``r = logit_real - logit_refined``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .image_ops import standardize

REFINED, REAL = 1, 0


def _per_image(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """``N×h×w`` per-patch values -> ``N`` per-image losses (sum or mean over patches)."""
    flat = values.flatten(1)
    return flat.mean(1) if reduction == "mean" else flat.sum(1)


def _patch_ce(logits: torch.Tensor, target: int, reduction: str = "sum") -> torch.Tensor:
    """Per-image sum (or mean) over patches of the cross-entropy against ``target`` (N,)."""
    logp = F.log_softmax(logits.float(), dim=1)[:, target]
    return _per_image(-logp, reduction)


def realness(logits: torch.Tensor) -> torch.Tensor:
    """D's score that a patch is real, ``logit_real - logit_refined`` (N×h×w)."""
    logits = logits.float()
    return logits[:, REAL] - logits[:, REFINED]


def discriminator_loss(logits_refined: torch.Tensor, logits_real: torch.Tensor, *, adversarial: str = "cross-entropy",
                       reduction: str = "sum") -> torch.Tensor:
    """Eq. 2: ``-sum_i log D(x~_i) - sum_j log(1 - D(y_j))``, summed (or averaged) over patches,
    averaged over the ``n_refined + n_real`` images of D's mini-batch. ``least-squares``:
    ``½(r_real - 1)² + ½ r_refined²`` per patch; ``hinge``: ``relu(1 - r_real) + relu(1 + r_refined)``."""
    if adversarial == "cross-entropy":
        per_image = torch.cat([_patch_ce(logits_refined, REFINED, reduction), _patch_ce(logits_real, REAL, reduction)])
    elif adversarial == "least-squares":
        per_image = torch.cat([_per_image(0.5 * realness(logits_refined) ** 2, reduction),
                               _per_image(0.5 * (realness(logits_real) - 1.0) ** 2, reduction)])
    elif adversarial == "hinge":
        per_image = torch.cat([_per_image(F.relu(1.0 + realness(logits_refined)), reduction),
                               _per_image(F.relu(1.0 - realness(logits_real)), reduction)])
    else:
        raise ValueError(f"unknown adversarial loss {adversarial!r}")
    return per_image.mean()


def realism_loss(logits_refined: torch.Tensor, *, adversarial: str = "cross-entropy",
                 reduction: str = "sum") -> torch.Tensor:
    """Eq. 3: ``l_real = -log(1 - D(R(x)))``, summed (or averaged) over D's patches, averaged over
    images. ``least-squares``: ``½(r - 1)²`` per patch; ``hinge``: ``-r``."""
    if adversarial == "cross-entropy":
        return _patch_ce(logits_refined, REAL, reduction).mean()
    r = realness(logits_refined)
    if adversarial == "least-squares":
        return _per_image(0.5 * (r - 1.0) ** 2, reduction).mean()
    if adversarial == "hinge":
        return _per_image(-r, reduction).mean()
    raise ValueError(f"unknown adversarial loss {adversarial!r}")


def r1_penalty(real_scores: torch.Tensor, real_images: torch.Tensor, *, reduction: str = "sum") -> torch.Tensor:
    """R1 gradient penalty (Mescheder et al., "Which Training Methods for GANs do actually
    Converge?", ICML 2018, Eq. 9 without gamma/2): ``||grad_y D(y)||²`` on real images, where D(y)
    is the per-image sum (or mean) of the patch scores ``real_scores`` (N×h×w, computed from
    ``real_images`` with ``requires_grad``); averaged over images."""
    per_image = _per_image(real_scores, reduction)
    (grad,) = torch.autograd.grad(per_image.sum(), real_images, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def diversity_term(refined_a: torch.Tensor, refined_b: torch.Tensor, cap: float) -> torch.Tensor:
    """The diversity-sensitive term of Yang et al. (ICLR 2019, Eq. 3) for pairs of refinements of
    the same images under two noise codes, in pixel units: per pair ``min(mean|x~_a - x~_b|, cap)``
    (the mean over the image's pixels, in the [-1, 1] range), averaged over pairs. R's loss
    *subtracts* it (times ``loss.diversity``); ``cap`` (their tau) is how far apart two refinements
    of one image are worth pushing. Yang et al. divide by the distance between the two codes;
    with a per-image N(0, 1) code that distance is about 1.13 whatever the image, so dividing by it
    only hides the cap's meaning: here the cap is a pixel distance."""
    per_pair = (refined_a.float() - refined_b.float()).abs().flatten(1).mean(1)
    return per_pair.clamp(max=cap).mean()


def discriminator_accuracy(logits: torch.Tensor, target: int) -> torch.Tensor:
    """Fraction of patches D classifies as ``target`` (a device scalar: no host sync)."""
    pred = logits[:, REFINED] > logits[:, REAL]
    return (pred == bool(target)).float().mean()


# ----------------------------------------------------------------------------------------------
# feature transforms psi of the self-regularisation term (§2.1, §3.1 "Self-regularization in
# Feature Space")


class Identity(nn.Module):
    """psi(x) = x: the paper's default."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ChannelMean(nn.Module):
    """psi(x) = mean of the colour channels (Figure 6: lets R change colour, not luminance)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True)


class Gradients(nn.Module):
    """psi(x) = image derivatives (horizontal and vertical forward differences): keeps edges,
    lets R change smooth shading and brightness."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dx = x[:, :, :, 1:] - x[:, :, :, :-1]
        dy = x[:, :, 1:, :] - x[:, :, :-1, :]
        return torch.cat([dx.flatten(1), dy.flatten(1)], dim=1)


class Standardized(nn.Module):
    """psi(x) = x standardised per image and channel (:func:`~simgan.models.image_ops.standardize`,
    instance normalisation used as the paper's psi): R may change an image's brightness and
    contrast, the per-image tone of a target domain (exposure, gain, histogram equalisation), but
    not where its edges are."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return standardize(x)


def feature_transform(name: str, channels: int) -> nn.Module:
    """The psi named ``name``; ``features`` is a frozen CNN layer that needs no download."""
    if name == "identity":
        return Identity()
    if name == "channel-mean":
        return ChannelMean()
    if name == "gradients":
        return Gradients()
    if name == "standardized":
        return Standardized()
    if name == "features":
        from .features import PSI_LEVEL, frozen_feature_net
        return frozen_feature_net(channels, level=PSI_LEVEL)
    raise ValueError(f"unknown feature transform {name!r}")


def self_regularization_loss(refined: torch.Tensor, synthetic: torch.Tensor, psi: nn.Module,
                             *, reduction: str = "sum") -> torch.Tensor:
    """``||psi(R(x)) - psi(x)||_1`` (the second term of Eq. 4), summed (``mean``: averaged) over
    the feature elements of each image, averaged over images."""
    diff = psi(refined.float()) - psi(synthetic.float())
    flat = diff.abs().flatten(1)
    return (flat.mean(1) if reduction == "mean" else flat.sum(1)).mean()


def refiner_loss(logits_refined: torch.Tensor, refined: torch.Tensor, synthetic: torch.Tensor,
                 psi: nn.Module, lambda_reg: float, *, adversarial: str = "cross-entropy",
                 reduction: str = "sum") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 4: ``L_R = l_real + lambda * l_reg``. Returns ``(total, l_real, l_reg)``."""
    real = realism_loss(logits_refined, adversarial=adversarial, reduction=reduction)
    reg = self_regularization_loss(refined, synthetic, psi, reduction=reduction)
    return real + lambda_reg * reg, real, reg


def effective_lambda(cfg, patches: int, elements: int) -> tuple[float, float]:
    """Eq. 4's lambda in both conventions of :mod:`simgan.models.losses`: ``(per-patch/per-element
    means, the paper's sums)``."""
    lam = cfg.loss.lambda_reg
    if cfg.loss.reduction == "mean":
        return lam, lam * patches / elements
    return lam * elements / patches, lam


def task_consistency_loss(outputs: torch.Tensor, reference: torch.Tensor, kind: str) -> torch.Tensor:
    """The task-consistency term (beyond the paper; CyCADA's semantic consistency, Hoffman et al.
    ICML 2018): how far a frozen task network's output on R(x) moved from its output on x.
    ``class``: the cross-entropy of ``outputs`` (N×classes logits) against ``reference``, the class
    the network gave x (N, integers), as CyCADA; ``vector`` and ``points``: the mean squared
    difference from ``reference`` (N×D), in the units of the standardised labels the network
    learnt (1 = as far as a label's spread). Averaged over images."""
    if kind == "class":
        return F.cross_entropy(outputs.float(), reference)
    return (outputs.float() - reference).pow(2).mean()


# ----------------------------------------------------------------------------------------------
# temporal consistency (refining videos, the paper's second future work, §5)


def warp(previous: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``previous`` (N×C×H×W) sampled bilinearly at ``(x + u, y + v)`` for every pixel, ``flow``
    N×H×W×2 holding ``(u, v)`` in pixels (the backward flow of :mod:`simgan.datasets.sequences`);
    the nearest border pixel outside the image. Differentiable in ``previous``."""
    n, _, h, w = previous.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device, dtype=torch.float32),
                            torch.arange(w, device=flow.device, dtype=torch.float32), indexing="ij")
    gx = (xs + flow[..., 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[..., 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(previous.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)


def flow_consistency_loss(refined: torch.Tensor, x: torch.Tensor, refined_prev: torch.Tensor, x_prev: torch.Tensor,
                          flow: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The temporal term of Lai et al. (ECCV 2018) with the simulator's true flow: R's change to
    frame t, ``R(x_t) - x_t``, against its change to frame t-1 moved by the flow, ``warp(R(x_{t-1})
    - x_{t-1})``; the mean absolute difference over the pixels ``valid`` (N×H×W, 1 where the flow
    holds), in the models' pixel units. Comparing changes, not images, leaves the scene's own
    motion and lighting out: only what R adds must move with the scene."""
    change = refined.float() - x.float()
    moved = warp(refined_prev.float() - x_prev.float(), flow)
    m = valid[:, None].float()
    return ((change - moved).abs() * m).sum() / (m.sum() * change.shape[1]).clamp(min=1.0)


def shift_consistency_loss(refined_of_moved: torch.Tensor, moved_refined: torch.Tensor, margin: int) -> torch.Tensor:
    """The single-frame regulariser of Eilertsen et al. (CVPR 2019): ``R(T x)`` against ``T R(x)``
    for a small motion ``T`` (the caller's), mean absolute difference over the pixels at least
    ``margin`` from the border (where neither side sees past the image). A refiner that passes it
    changes an image the same way wherever its content sits on the pixel grid, so a slowly moving
    scene does not shimmer."""
    h, w = moved_refined.shape[2:]
    inner = (slice(None), slice(None), slice(margin, h - margin), slice(margin, w - margin))
    return (refined_of_moved.float()[inner] - moved_refined.float()[inner]).abs().mean()
