"""The refiner network R_theta (§2.1, §3.1 "Implementation Details").

R is a fully convolutional ResNet with no striding or pooling, so it edits pixels locally and
keeps the global structure (and with it the simulator's labels): a ``k×k`` convolution to
``width`` maps, ``num_blocks`` ResNet blocks of two ``k×k`` convolutions, and a ``1×1``
convolution back to the image's channels. The output has the input's size and channels and stays
in the models' pixel range [-1, 1].

By default the ``1×1`` map is a correction added to the input (a global skip connection,
initialised to zero): R starts as the identity that the paper's self-regularised pretraining
aims at, and low-precision arithmetic only touches the small correction, so refining in bf16
gives the same 8-bit pixels as fp32. ``RefinerConfig(residual=False)`` is the paper's literal
output, ``tanh`` of the ``1×1`` map.

Options, each off in the paper's presets: a per-image noise code at the input (the paper's
future work, §5), per-image context after every block, and output stages that act on the whole
image (histogram equalisation).

eyes (§3.1): k=3, 64 maps, 4 blocks.  hands (§3.2): k=7, 64 maps, 10 blocks.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import RefinerConfig
from .image_ops import clamp_inward, soft_equalize


def channel_stats(h: torch.Tensor) -> torch.Tensor:
    """Per-image spatial mean and standard deviation of each of ``h``'s maps: ``N×2C`` in fp32
    (the epsilon keeps the gradient finite where a map is constant, e.g. all ReLU zeros)."""
    var, mean = torch.var_mean(h.float(), dim=(2, 3), correction=0)
    return torch.cat([mean, (var + 1e-5).sqrt()], dim=1)


class GlobalContext(nn.Module):
    """A per-image, channel-wise affine change of R's feature maps computed from the whole image:
    the maps' spatial mean and standard deviation per channel, a two-layer MLP, then
    ``h * (1 + gamma) + beta``: the squeeze of Hu et al. ("Squeeze-and-Excitation Networks",
    CVPR 2018) feeding a FiLM modulation (Perez et al., AAAI 2018).

    The paper's R sees only its receptive field, so it cannot make a change that depends on the
    whole image, as a target domain normalised per image asks (histogram-equalised eye crops map
    the same local patch to different grey levels in different images). The MLP's last layer
    starts at zero, so the block starts as the identity, like R itself; it changes no geometry."""

    def __init__(self, width: int):
        super().__init__()
        self.fc1 = nn.Linear(2 * width, width)
        self.fc2 = nn.Linear(width, 2 * width)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        stats = channel_stats(h).to(self.fc1.weight.dtype)
        gamma, beta = self.fc2(torch.relu(self.fc1(stats))).to(h.dtype).chunk(2, dim=1)
        return torch.addcmul(beta[:, :, None, None], h, 1 + gamma[:, :, None, None])


class Stem(nn.Module):
    """R's first ``k×k`` convolution and ReLU, on the image and, when R takes one, its noise code
    spread over every pixel."""

    def __init__(self, channels: int, noise_channels: int, width: int, kernel_size: int, padding: str):
        super().__init__()
        self.conv = nn.Conv2d(channels + noise_channels, width, kernel_size, padding=kernel_size // 2,
                              padding_mode=padding)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if z is not None:
            x = torch.cat([x, z.to(x.dtype).expand(-1, -1, *x.shape[2:])], dim=1)
        return self.act(self.conv(x.to(self.conv.weight.dtype)))


class ResnetBlock(nn.Module):
    """Two ``k×k`` convolutions with an identity shortcut (He et al., the paper's ref. [12]), then
    the block's :class:`GlobalContext` when R has one (``context``, set by :class:`Refiner`)."""

    def __init__(self, width: int, kernel_size: int, norm: str = "none", padding: str = "zeros"):
        super().__init__()
        pad = kernel_size // 2
        bias = norm == "none"
        self.conv1 = nn.Conv2d(width, width, kernel_size, padding=pad, bias=bias, padding_mode=padding)
        self.conv2 = nn.Conv2d(width, width, kernel_size, padding=pad, bias=bias, padding_mode=padding)
        self.norm1 = nn.BatchNorm2d(width) if norm == "batch" else nn.Identity()
        self.norm2 = nn.BatchNorm2d(width) if norm == "batch" else nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.context: GlobalContext | None = None
        self.texture: TextureNoise | None = None

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y)).to(x.dtype)
        # The shortcut stays in x's precision (float32 under autocast): only the block's own
        # contribution is rounded to bf16/fp16, so errors do not pile up along the stream. The
        # sum is formed in place in the convolution's fresh output (no third activation-sized
        # tensor per block).
        return self.finish(self.act(y.add_(x)), noise)

    def finish(self, y: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """What follows the block's convolutions: its texture noise and its context, when R has them."""
        if self.texture is not None:
            y = self.texture(y, noise)
        return y if self.context is None else self.context(y)


class TextureNoise(nn.Module):
    """One map of per-pixel N(0, 1) noise per image, added to a block's feature maps with a
    learned strength per map that starts at zero (the noise inputs of Karras et al., "A Style-Based
    Generator Architecture for Generative Adversarial Networks", CVPR 2019, §3.2). A per-image
    code spread over a flat region can only give it one colour; per-pixel noise lets R draw
    stochastic texture there (a photograph's grain, a sensor's speckle). It starts as the identity;
    self-regularisation still ties the result to x."""

    def __init__(self, width: int):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(width))

    def forward(self, h: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is None:  # no map given: no texture (the fused form's check compares the convolutions)
            return h
        return h + self.strength.to(h.dtype)[None, :, None, None] * noise.to(h.dtype)


class Equalize(nn.Module):
    """Output stage: per-image histogram equalisation (:func:`soft_equalize`), for a real domain
    equalised per image as MPIIGaze's eye crops are (Zhang et al., CVPR 2015). It maps any range
    onto [-1, 1], so R's output before it is not clamped: a clamped, saturated image would
    equalise to one grey level and pass no gradient back."""

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return soft_equalize(y, unit_range=False)


class Refiner(nn.Module):
    """R: synthetic image ``x`` (N×C×H×W in [-1, 1]) -> refined image of the same shape.

    ``R(x) = stages(x + head(blocks(stem(x, z))))``, clamped to the pixel range when no output stage
    follows (by default with a gradient that can bring a saturated pixel back: :func:`clamp_inward`;
    ``inward_clamp: false`` clamps plainly, as the hand demo does). With ``noise_channels = k > 0`` R also
    takes a per-image N(0, 1) code ``z`` (``k`` values per image, drawn anew per call unless
    ``noise`` is given, from ``generator`` when given), spread over every pixel at the stem, so R
    can give each image its own look (the z of Bousmalis et al., CVPR 2017); the output is still
    ``x`` plus a correction, tied to ``x`` by self-regularisation, and ``simgan refine
    --variants K`` draws K codes per image."""

    def __init__(self, cfg: RefinerConfig, channels: int):
        super().__init__()
        self.cfg = cfg
        self.channels = channels
        self.noise_channels = cfg.noise_channels
        self.residual = cfg.residual
        self.inward_clamp = cfg.inward_clamp
        self.stem = Stem(channels, cfg.noise_channels, cfg.width, cfg.kernel_size, cfg.padding)
        self.blocks = nn.Sequential(*[ResnetBlock(cfg.width, cfg.kernel_size, cfg.norm, cfg.padding)
                                      for _ in range(cfg.num_blocks)])
        for block in self.blocks:  # made after every convolution, whose initial weights then do not depend on them
            block.context = GlobalContext(cfg.width) if cfg.global_context else None
            block.texture = TextureNoise(cfg.width) if cfg.texture_noise else None
        self.head = nn.Conv2d(cfg.width, channels, 1)
        self.output_stages = nn.ModuleList([Equalize()] if cfg.equalize else [])
        if self.residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self._register_load_state_dict_pre_hook(_rename_old_keys)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
        y = self.before_stages(x, noise, generator=generator)
        for stage in self.output_stages:
            y = stage(y)
        return y

    def before_stages(self, x: torch.Tensor, noise: torch.Tensor | None = None, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """R's image before its output stages: what self-regularisation compares with ``x``."""
        z = None
        if self.noise_channels:
            z = noise if noise is not None else self.sample_noise(x.shape[0], generator=generator, device=x.device,
                                                                   dtype=x.dtype)
        h = self.stem(x, z)
        if self.head.weight.dtype == torch.float32:
            h = h.float()  # under autocast: the residual stream stays in fp32 (see ResnetBlock)
        for block in self.blocks:
            h = block(h, self.sample_texture(h, generator) if block.texture is not None else None)
        r = self.head(h).float()
        if not self.residual:
            return torch.tanh(r)
        if self.output_stages:
            return x + r
        return clamp_inward(x + r) if self.inward_clamp else (x + r).clamp(-1.0, 1.0)

    @staticmethod
    def sample_texture(h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One N(0, 1) map per image at the size of ``h``'s maps: ``n×1×H×W``."""
        shape = (h.shape[0], 1, *h.shape[2:])
        if generator is None:
            return torch.randn(shape, device=h.device, dtype=torch.float32)
        return torch.randn(shape, generator=generator).to(h.device)

    def sample_noise(self, n: int, *, generator: torch.Generator | None = None, device=None,
                     dtype=torch.float32) -> torch.Tensor:
        """The per-image N(0, 1) code for ``n`` images: ``n×k×1×1``."""
        shape = (n, self.noise_channels, 1, 1)
        if generator is None:
            return torch.randn(shape, device=device, dtype=dtype)
        return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)

    def for_inference(self, precision: str, channels_last: bool = False) -> "Refiner":
        """This refiner for refining on a CPU in ``precision`` (and in the channels-last layout
        when it will run so), in place: the stem and the ResNet blocks fused with their ReLUs and
        shortcut sums (:func:`simgan.models.fused.fuse_for_cpu`), and for bf16 the whole body cast
        to bf16 (the stream too), with only the final ``x + r`` in fp32: casts around every block
        would be memory passes that fast bf16 convolutions wait on."""
        from .fused import fuse_for_cpu

        fuse_for_cpu(self.eval(), torch.bfloat16 if precision == "bf16" else torch.float32, channels_last=channels_last)
        return self.to(torch.bfloat16) if precision == "bf16" else self

    @property
    def receptive_field(self) -> int:
        return refiner_receptive_field(self.cfg)


def _rename_old_keys(state_dict, prefix, *args) -> None:
    """Weights saved by an earlier simgan: the stem was ``stem.0`` and the contexts a list of
    their own (``context.i``); they now live in :class:`Stem` and in each block."""
    for key in list(state_dict):
        rest = key[len(prefix):]
        if rest.startswith("stem.0."):
            state_dict[prefix + "stem.conv." + rest[len("stem.0."):]] = state_dict.pop(key)
        elif rest.startswith("context."):
            i, tail = rest[len("context."):].split(".", 1)
            state_dict[f"{prefix}blocks.{i}.context.{tail}"] = state_dict.pop(key)


def refiner_receptive_field(cfg: RefinerConfig) -> int:
    """Side in pixels of the input region one output pixel depends on: every ``k×k`` convolution
    at stride 1 widens it by ``k - 1`` (the stem, two per block; the head is ``1×1``). With
    ``global_context`` the per-image statistics add the whole image; this is the local part."""
    return 1 + (cfg.kernel_size - 1) * (1 + 2 * cfg.num_blocks)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def refiner_flops(cfg: RefinerConfig, channels: int, height: int, width: int) -> float:
    """Multiply-adds x 2 of one forward pass on one ``height x width`` image (convolutions only)."""
    k2, w, px = cfg.kernel_size ** 2, cfg.width, height * width
    macs = px * (k2 * (channels + cfg.noise_channels) * w + cfg.num_blocks * 2 * k2 * w * w + w * channels)
    if cfg.global_context:
        macs += cfg.num_blocks * (4 * w * w + 2 * px * w)  # the MLP, and the statistics and the affine map
    return 2.0 * macs
