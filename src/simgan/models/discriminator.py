"""The discriminator network D_phi: local (§2.2) and global (the §3.3 ablation).

The **local** discriminator is fully convolutional: it outputs a ``w×h`` map of two-class logits,
one per receptive-field patch (Figure 3), so the adversarial loss is a sum of per-patch
cross-entropies. This limits D's capacity, gives many samples per image, and stops R from
producing artifacts to fool one strong global classifier. The **global** discriminator keeps the
same convolutional trunk but ends in a fully connected layer: one decision per image.

Both return logits of shape ``N×2×h×w`` (``h = w = 1`` for global); channel 1 is "refined"
(D(.) of Eq. 2 is ``softmax(logits)[:, 1]``), channel 0 "real".

eyes (§3.1): conv3×3 s2 96; conv3×3 s2 64; maxpool3×3 s1; conv3×3 s1 32; conv1×1 32; conv1×1 2.
hands (§3.2): conv7×7 s4 96; conv5×5 s2 64; maxpool3×3 s2; conv3×3 s2 32; conv1×1 32; conv1×1 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import DiscriminatorConfig, LayerSpec
from ..errors import SimganError


def _padding(layer: LayerSpec, mode: str) -> int:
    return layer.kernel // 2 if mode == "same" else 0


class BlurPool(nn.Module):
    """Anti-aliased subsampling (Zhang, "Making Convolutional Networks Shift-Invariant Again",
    ICML 2019): a 3×3 binomial ``[1, 2, 1]ᵀ[1, 2, 1] / 16`` blur per channel, then every
    ``stride``-th pixel. With the convolution before it at stride 1, the layer keeps the strided
    layer's output size (``kernel_size``-3 blur, no padding: one row and column less on each
    side, as the strided convolution's ``(n - k) // s + 1``) without its aliasing."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :]) / 16.0
        self.register_buffer("kernel", k.expand(channels, 1, 3, 3).clone(), persistent=False)
        self.stride = stride
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
        return nn.functional.conv2d(pad, self.kernel.to(x.dtype), stride=self.stride, groups=self.channels)


def _maybe_sn(module: nn.Module, on: bool) -> nn.Module:
    """Spectral normalisation (Miyato et al., ICLR 2018) of a layer's weight when ``on``."""
    return nn.utils.parametrizations.spectral_norm(module) if on else module


def build_trunk(cfg: DiscriminatorConfig, in_channels: int) -> tuple[nn.Sequential, int]:
    mods: list[nn.Module] = []
    ch = in_channels
    for layer in cfg.layers:
        pad = _padding(layer, cfg.padding)
        if layer.kind == "conv":
            blur = cfg.antialias and layer.stride > 1
            # anti-aliased: the convolution at stride 1, then BlurPool by the stride; same output size
            mods.append(_maybe_sn(nn.Conv2d(ch, layer.channels, layer.kernel, 1 if blur else layer.stride, pad,
                                            bias=cfg.norm == "none"), cfg.spectral_norm))
            if cfg.norm == "batch":
                mods.append(nn.BatchNorm2d(layer.channels))
            mods.append(nn.ReLU(inplace=True))
            if blur:
                mods.append(BlurPool(layer.channels, layer.stride))
            ch = layer.channels
        else:
            mods.append(nn.MaxPool2d(layer.kernel, layer.stride, pad))
    return nn.Sequential(*mods), ch


class LocalDiscriminator(nn.Module):
    """Fully convolutional D: trunk, then a ``1×1`` convolution to 2 maps (§2.2, Figure 3)."""

    def __init__(self, cfg: DiscriminatorConfig, in_channels: int):
        super().__init__()
        self.cfg = cfg
        self.trunk, ch = build_trunk(cfg, in_channels)
        self.classify = _maybe_sn(nn.Conv2d(ch, 2, 1), cfg.spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.trunk(x))


class GlobalDiscriminator(nn.Module):
    """Image-level D for the ablation of §3.3: the same trunk, then a fully connected layer."""

    def __init__(self, cfg: DiscriminatorConfig, in_channels: int, height: int, width: int):
        super().__init__()
        self.cfg = cfg
        self.trunk, ch = build_trunk(cfg, in_channels)
        h, w = output_size(cfg, height, width)
        self.classify = _maybe_sn(nn.Linear(ch * h * w, 2), cfg.spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.trunk(x).flatten(1))[:, :, None, None]


def check_fits(cfg: DiscriminatorConfig, height: int, width: int) -> tuple[int, int]:
    """D's map size for ``height × width`` images; a one-line error when the layers shrink the
    image to nothing (checked before a run writes anything)."""
    h, w = output_size(cfg, height, width)
    if h < 1 or w < 1:
        raise SimganError(
            f"the discriminator's layers shrink a {width}x{height} image to nothing; use fewer or "
            f"smaller strided layers (e.g. the generic preset) for images this small")
    return h, w


def build_discriminator(cfg: DiscriminatorConfig, channels: int, height: int, width: int) -> nn.Module:
    check_fits(cfg, height, width)
    if cfg.kind == "global":
        return GlobalDiscriminator(cfg, channels, height, width)
    return LocalDiscriminator(cfg, channels)


def output_size(cfg: DiscriminatorConfig, height: int, width: int) -> tuple[int, int]:
    """``(h, w)`` of D's probability map for an input of ``height × width`` (Figure 3)."""
    h, w = height, width
    for layer in cfg.layers:
        pad = _padding(layer, cfg.padding)
        if h + 2 * pad < layer.kernel or w + 2 * pad < layer.kernel:
            return 0, 0  # this layer no longer fits
        h = (h + 2 * pad - layer.kernel) // layer.stride + 1
        w = (w + 2 * pad - layer.kernel) // layer.stride + 1
    return h, w


@dataclass(frozen=True)
class PatchGeometry:
    receptive_field: int  # side in pixels of the input patch one output of D sees
    stride: int  # distance in pixels between neighbouring patches
    map_height: int
    map_width: int

    @property
    def patches(self) -> int:
        return self.map_height * self.map_width


def patch_geometry(cfg: DiscriminatorConfig, height: int, width: int) -> PatchGeometry:
    """Receptive field and layout of D's patches: each layer widens the field by
    ``(k - 1) * jump`` where ``jump`` is the product of the strides before it."""
    rf, jump = 1, 1
    for layer in cfg.layers:
        rf += (layer.kernel - 1) * jump
        jump *= layer.stride
    h, w = check_fits(cfg, height, width)
    if cfg.kind == "global":
        return PatchGeometry(max(height, width), jump, 1, 1)
    return PatchGeometry(rf, jump, h, w)
