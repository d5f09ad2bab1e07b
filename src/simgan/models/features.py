"""A frozen feature network that needs no download: a fixed-seed random CNN.

Two parts of simgan need image features from a network nobody has to fetch:

* the kernel distance of :mod:`simgan.evaluation.realism` (a KID-style MMD², the counterpart of
  the Inception features of FID/KID), and
* the self-regularisation of Eq. 4 with ``feature="features"``: ψ = a mid layer of a CNN, the
  "learned transform" the paper lists beside the identity map, image derivatives and the
  channel mean (§2.1, §3.1 "Self-regularization in Feature Space").

**Choice: a fixed-seed random CNN, not a small trained one.** Reasons:

1. *No neutral data to train on.* Without downloads, the only images the project has are the
   very domains being compared (synthetic, refined, real/target). A network trained on any of
   them would see that domain as "normal" and bias the distances between them; trained on a mix,
   its features would depend on which data happened to be used. Random weights depend on none.
2. *Reproducible from code alone.* The weights are drawn from NumPy's legacy ``RandomState``
   (whose stream NumPy guarantees never to change) with a fixed seed, scaled per filter, so every
   machine and version builds the same network: no binary file, no training script to rerun,
   nothing to go stale when the architecture changes.
3. *Adequate for relative comparisons.* Random convolutional features keep a great deal of the
   local statistics of an image (edges, texture energy, noise level, brightness) — exactly what
   separates rendered from captured pixels (§1: skin texture, sensor noise, illumination). The
   kernel distance is only ever used to rank candidates against the same real set ("synthetic vs
   real" beside "refined vs real"), never as an absolute number comparable with published KID.
   Its trained complement is the classifier two-sample test of the same module, which learns its
   features for each comparison.
4. *Any input.* 1 or 3 channels (weights drawn per channel count) and any H×W ≥ 16.

Architecture: four blocks of ``reflect-pad 3×3 conv -> ReLU``; block 1 keeps the resolution,
blocks 2–4 have stride 2 (32, 64, 128, 256 maps). Each filter is a Gaussian draw rescaled to norm
√2 (He scaling: activations keep their magnitude from block to block), biases are zero. Reflect
padding avoids inventing dark borders that zero padding would add to every image.

For ψ of Eq. 4 use ``frozen_feature_net(c, level=PSI_LEVEL)``: the output of block 2 (64 maps at
half resolution), differentiable with respect to the input. For the kernel distance,
:meth:`FrozenFeatureNet.pooled` concatenates the spatial means of all four blocks (480 numbers).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import SimganError

FEATURE_SEED = 20170606  # fixed forever: changing it changes every kernel-distance number
BLOCK_CHANNELS = (32, 64, 128, 256)
BLOCK_STRIDES = (1, 2, 2, 2)
PSI_LEVEL = 2  # the mid layer used as the self-regularisation feature transform ψ (Eq. 4)
MIN_SIZE = 16


def _filters(rng: np.random.RandomState, out_ch: int, in_ch: int, k: int) -> torch.Tensor:
    w = rng.standard_normal((out_ch, in_ch * k * k))
    w *= np.sqrt(2.0) / np.linalg.norm(w, axis=1, keepdims=True)
    return torch.from_numpy(w.reshape(out_ch, in_ch, k, k).astype(np.float32))


class FrozenFeatureNet(nn.Module):
    """Fixed random CNN mapping ``N×C×H×W`` images in [-1, 1] to feature maps (see module doc).

    ``forward(x)`` returns the output of the last kept block; ``pooled(x)`` the concatenated
    spatial means of every kept block. All parameters are frozen (``requires_grad=False``) and
    the network has no mode-dependent layers, so ``train()``/``eval()`` change nothing.
    """

    def __init__(self, in_channels: int, levels: int = len(BLOCK_CHANNELS), seed: int = FEATURE_SEED):
        super().__init__()
        if in_channels < 1:
            raise SimganError(f"feature network needs at least one input channel, got {in_channels}")
        if not 1 <= levels <= len(BLOCK_CHANNELS):
            raise SimganError(f"feature network level must be 1..{len(BLOCK_CHANNELS)}, got {levels}")
        rng = np.random.RandomState(seed + 1000 * in_channels)
        self.in_channels = in_channels
        self.blocks = nn.ModuleList()
        prev = in_channels
        # Always draw all four blocks' weights so a truncated net equals a prefix of the full one.
        for i, (ch, stride) in enumerate(zip(BLOCK_CHANNELS, BLOCK_STRIDES)):
            weight = _filters(rng, ch, prev, 3)
            if i < levels:
                conv = nn.Conv2d(prev, ch, 3, stride=stride, padding=1, padding_mode="reflect", bias=False)
                with torch.no_grad():
                    conv.weight.copy_(weight)
                self.blocks.append(nn.Sequential(conv, nn.ReLU()))
            prev = ch
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    @property
    def out_channels(self) -> int:
        return BLOCK_CHANNELS[len(self.blocks) - 1]

    @property
    def pooled_dim(self) -> int:
        return sum(BLOCK_CHANNELS[: len(self.blocks)])

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise SimganError(f"feature network expects N×{self.in_channels}×H×W images, got shape {tuple(x.shape)}")
        if min(x.shape[2], x.shape[3]) < MIN_SIZE:
            raise SimganError(f"feature network needs images of at least {MIN_SIZE}×{MIN_SIZE} pixels, "
                              f"got {x.shape[3]}×{x.shape[2]}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        for block in self.blocks:
            x = block(x)
        return x

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """``N × pooled_dim``: the spatial mean of every block's output, concatenated."""
        self._check(x)
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x.mean(dim=(2, 3)))
        return torch.cat(outs, dim=1)


def frozen_feature_net(in_channels: int, level: int | None = None) -> FrozenFeatureNet:
    """The project's frozen feature network for ``in_channels``-channel images.

    ``level=None``: all four blocks (used for the kernel distance). ``level=k``: only the first
    ``k`` blocks, e.g. ``level=PSI_LEVEL`` for the ψ of Eq. 4. The module is in eval mode with
    every parameter's ``requires_grad`` False; gradients still flow to its input.
    """
    return FrozenFeatureNet(in_channels, levels=len(BLOCK_CHANNELS) if level is None else level)
