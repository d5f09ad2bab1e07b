"""The losses of §2: Eq. 2 for D, Eq. 3/4 for R, with the local (per-patch) sum of §2.2.

D's output is a map of two-class logits (``N×2×h×w``); ``D(.) = softmax(logits)[:, 1]`` is the
probability that a patch is *refined*. Targets: refined = 1, real = 0 (Eq. 2).

Conventions (fixed here and tested on hand-computed cases):

* each image's loss is the **sum over D's patches** (§2.2, Figure 3) and, for the
  self-regularisation term, the L1 norm, i.e. the **sum over feature elements**;
* a mini-batch loss is the **mean over its images**, so learning rates do not depend on the
  batch size. (The paper's Eq. 2 and 4 sum over images as well; that only rescales the step.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

REFINED, REAL = 1, 0


def _patch_ce(logits: torch.Tensor, target: int) -> torch.Tensor:
    """Per-image sum over patches of the cross-entropy against ``target`` (N,)."""
    logp = F.log_softmax(logits.float(), dim=1)[:, target]
    return -logp.flatten(1).sum(1)


def discriminator_loss(logits_refined: torch.Tensor, logits_real: torch.Tensor) -> torch.Tensor:
    """Eq. 2: ``-sum_i log D(x~_i) - sum_j log(1 - D(y_j))``, summed over patches, averaged over
    the ``n_refined + n_real`` images of D's mini-batch."""
    per_image = torch.cat([_patch_ce(logits_refined, REFINED), _patch_ce(logits_real, REAL)])
    return per_image.mean()


def realism_loss(logits_refined: torch.Tensor) -> torch.Tensor:
    """Eq. 3: ``l_real = -log(1 - D(R(x)))``, summed over D's patches, averaged over images."""
    return _patch_ce(logits_refined, REAL).mean()


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


def feature_transform(name: str, channels: int) -> nn.Module:
    """The psi named ``name``; ``features`` is a frozen CNN layer that needs no download."""
    if name == "identity":
        return Identity()
    if name == "channel-mean":
        return ChannelMean()
    if name == "gradients":
        return Gradients()
    if name == "features":
        from .features import PSI_LEVEL, frozen_feature_net
        return frozen_feature_net(channels, level=PSI_LEVEL)
    raise ValueError(f"unknown feature transform {name!r}")


def self_regularization_loss(refined: torch.Tensor, synthetic: torch.Tensor, psi: nn.Module) -> torch.Tensor:
    """``||psi(R(x)) - psi(x)||_1`` (the second term of Eq. 4), summed over the feature elements
    of each image, averaged over images."""
    diff = psi(refined.float()) - psi(synthetic.float())
    return diff.abs().flatten(1).sum(1).mean()


def refiner_loss(logits_refined: torch.Tensor, refined: torch.Tensor, synthetic: torch.Tensor,
                 psi: nn.Module, lambda_reg: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 4: ``L_R = l_real + lambda * l_reg``. Returns ``(total, l_real, l_reg)``."""
    real = realism_loss(logits_refined)
    reg = self_regularization_loss(refined, synthetic, psi)
    return real + lambda_reg * reg, real, reg
