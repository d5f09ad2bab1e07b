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

import numpy as np
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


class InputPad(nn.Module):
    """Replicate-pads D's input by ``(left, right, top, bottom)`` pixels (:func:`input_padding`),
    real and refined images alike, so that D's patches reach every pixel."""

    def __init__(self, pad: tuple[int, int, int, int]):
        super().__init__()
        self.pad = tuple(pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.pad(x, self.pad, mode="replicate") if any(self.pad) else x


class LocalDiscriminator(nn.Module):
    """Fully convolutional D: trunk, then a ``1×1`` convolution to 2 maps (§2.2, Figure 3), on
    the input padded so that every pixel lies in a patch."""

    def __init__(self, cfg: DiscriminatorConfig, in_channels: int, height: int, width: int):
        super().__init__()
        self.cfg = cfg
        self.pad = InputPad(input_padding(cfg, height, width))
        self.trunk, ch = build_trunk(cfg, in_channels)
        self.classify = _maybe_sn(nn.Conv2d(ch, 2, 1), cfg.spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.trunk(self.pad(x)))


class GlobalDiscriminator(nn.Module):
    """Image-level D for the ablation of §3.3: the same trunk, then a fully connected layer."""

    def __init__(self, cfg: DiscriminatorConfig, in_channels: int, height: int, width: int):
        super().__init__()
        self.cfg = cfg
        self.pad = InputPad(input_padding(cfg, height, width))
        self.trunk, ch = build_trunk(cfg, in_channels)
        h, w = check_fits(cfg, height, width)
        self.classify = _maybe_sn(nn.Linear(ch * h * w, 2), cfg.spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.trunk(self.pad(x)).flatten(1))[:, :, None, None]


def check_fits(cfg: DiscriminatorConfig, height: int, width: int) -> tuple[int, int]:
    """D's map size for ``height × width`` images (after :func:`input_padding`); a one-line error
    when the layers shrink the image to nothing (checked before a run writes anything)."""
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
    return LocalDiscriminator(cfg, channels, height, width)


# ----------------------------------------------------------------------------------------------
# geometry: which input pixels each of D's outputs sees


def _ops(cfg: DiscriminatorConfig) -> list[tuple[int, int, int]]:
    """D's trunk along one axis as ``(kernel, stride, padding)`` steps (an anti-aliased strided
    convolution is two: the convolution at stride 1, then the 3-tap blur at the stride)."""
    ops = []
    for layer in cfg.layers:
        pad = _padding(layer, cfg.padding)
        if layer.kind == "conv" and cfg.antialias and layer.stride > 1:
            ops += [(layer.kernel, 1, pad), (3, layer.stride, 1)]
        else:
            ops.append((layer.kernel, layer.stride, pad))
    return ops


def _map_size(ops, n: int) -> int:
    for k, s, p in ops:
        if n + 2 * p < k:
            return 0
        n = (n + 2 * p - k) // s + 1
    return n


def _windows(ops) -> tuple[int, int, int]:
    """``(receptive field, stride, offset)``: output ``i`` sees input pixels ``i * stride + offset``
    to ``i * stride + offset + receptive field - 1`` (offset <= 0 where layers pad)."""
    rf, jump, off = 1, 1, 0
    for k, s, p in ops:
        rf += (k - 1) * jump
        off -= p * jump
        jump *= s
    return rf, jump, off


def _axis_padding(ops, n: int) -> tuple[int, int]:
    """The fewest pixels to add to an axis of ``n`` (split evenly, before and after) so that the
    last of D's windows reaches its last pixel."""
    rf, jump, off = _windows(ops)
    if _map_size(ops, n) < 1:
        return 0, 0  # D does not fit this image at all: that is an error, not a padding (check_fits)
    for total in range(jump):  # the last window falls short of the end by less than one stride
        before = total // 2
        m = _map_size(ops, n + total)
        if (m - 1) * jump + off + rf - 1 >= before + n - 1:
            return before, total - before
    return 0, 0


def input_padding(cfg: DiscriminatorConfig, height: int, width: int) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)``: how much D pads its input so that its patches tile the whole
    image. With valid convolutions and strides the last rows and columns of an image can lie in no
    patch (the gradient of D's output there is exactly zero), so R would get no adversarial signal
    in them (§2.2 judges every patch of the image). The paper's eyes D covers 55x35 whole and pads
    nothing."""
    ops = _ops(cfg)
    top, bottom = _axis_padding(ops, height)
    left, right = _axis_padding(ops, width)
    return left, right, top, bottom


def output_size(cfg: DiscriminatorConfig, height: int, width: int) -> tuple[int, int]:
    """``(h, w)`` of D's probability map for an input of ``height × width`` (Figure 3), after D's
    input padding."""
    left, right, top, bottom = input_padding(cfg, height, width)
    ops = _ops(cfg)
    return _map_size(ops, height + top + bottom), _map_size(ops, width + left + right)


def patches_per_pixel(cfg: DiscriminatorConfig, height: int, width: int) -> np.ndarray:
    """``height × width``: how many of D's patches each image pixel lies in (a pixel in none gets
    no adversarial gradient); counts the padded border copies with the pixel they copy."""
    left, right, top, bottom = input_padding(cfg, height, width)
    ops = _ops(cfg)
    rf, jump, off = _windows(ops)

    def axis(n: int, before: int, after: int) -> np.ndarray:
        counts = np.zeros(n, np.int64)
        for i in range(_map_size(ops, n + before + after)):
            lo, hi = i * jump + off - before, i * jump + off + rf - 1 - before
            if hi >= 0 and lo <= n - 1:
                counts[max(lo, 0):min(hi, n - 1) + 1] += 1
        return counts

    return np.outer(axis(height, top, bottom), axis(width, left, right))


@dataclass(frozen=True)
class PatchGeometry:
    receptive_field: int  # side in pixels of the input patch one output of D sees
    stride: int  # distance in pixels between neighbouring patches
    map_height: int
    map_width: int
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # D's input padding (left, right, top, bottom)

    @property
    def patches(self) -> int:
        return self.map_height * self.map_width


def patch_geometry(cfg: DiscriminatorConfig, height: int, width: int) -> PatchGeometry:
    """Receptive field and layout of D's patches: each layer widens the field by
    ``(k - 1) * jump`` where ``jump`` is the product of the strides before it."""
    rf, jump, _ = _windows(_ops(cfg))
    h, w = check_fits(cfg, height, width)
    pad = input_padding(cfg, height, width)
    if cfg.kind == "global":
        return PatchGeometry(max(height, width), jump, 1, 1, pad)
    return PatchGeometry(rf, jump, h, w, pad)
