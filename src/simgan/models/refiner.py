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

eyes (§3.1): k=3, 64 maps, 4 blocks.  hands (§3.2): k=7, 64 maps, 10 blocks.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from ..config import RefinerConfig


class ResnetBlock(nn.Module):
    """Two ``k×k`` convolutions with an identity shortcut (He et al., the paper's ref. [12])."""

    def __init__(self, width: int, kernel_size: int, norm: str = "none", padding: str = "zeros"):
        super().__init__()
        pad = kernel_size // 2
        bias = norm == "none"
        self.conv1 = nn.Conv2d(width, width, kernel_size, padding=pad, bias=bias, padding_mode=padding)
        self.conv2 = nn.Conv2d(width, width, kernel_size, padding=pad, bias=bias, padding_mode=padding)
        self.norm1 = nn.BatchNorm2d(width) if norm == "batch" else nn.Identity()
        self.norm2 = nn.BatchNorm2d(width) if norm == "batch" else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y)).to(x.dtype)
        # The shortcut stays in x's precision (float32 under autocast): only the block's own
        # contribution is rounded to bf16/fp16, so errors do not pile up along the stream. The
        # sum is formed in place in the convolution's fresh output (no third activation-sized
        # tensor per block: at batch 256 on a CPU that allocation cost ~9% of the forward pass).
        return self.act(y.add_(x))


def channel_stats(h: torch.Tensor) -> torch.Tensor:
    """Per-image spatial mean and standard deviation of each of ``h``'s maps: ``N×2C`` in fp32
    (the epsilon keeps the gradient finite where a map is constant, e.g. all ReLU zeros)."""
    var, mean = torch.var_mean(h.float(), dim=(2, 3), correction=0)
    return torch.cat([mean, (var + 1e-5).sqrt()], dim=1)


class GlobalContext(nn.Module):
    """A per-image, channel-wise affine change of R's feature maps computed from the whole image:
    the maps' spatial mean and standard deviation per channel, a two-layer MLP, then
    ``h * (1 + gamma) + beta``. The squeeze of Hu et al. ("Squeeze-and-Excitation Networks",
    CVPR 2018) feeding a FiLM-style modulation (Perez et al., AAAI 2018), as the global path of
    Gharbi et al.'s image-enhancement network (SIGGRAPH 2017) feeds its local one.

    Why R needs it: the paper's R is fully convolutional, so each output pixel sees only its
    receptive field. A target domain whose images are normalised per image (MPIIGaze's eye crops
    are histogram-equalised, the eye demo's webcam domain too) maps the same local patch to
    different grey levels in different images; only R's view of the whole image can learn that.
    The MLP's last layer starts at zero, so the block starts as the identity, like R itself. It
    changes no geometry: labels stay as they are."""

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


class ToneCurve(nn.Module):
    """A per-image, per-channel monotone tone curve applied to R's output: the camera response
    curve that a fully convolutional R cannot express, because it depends on the whole image.

    The curve is piecewise linear with ``knots`` segments of equal width over [-1, 1]. Its start
    and the (positive) rise of each segment come from a two-layer MLP that reads the input image's
    histogram (``knots`` bins per channel) and the spatial mean and standard deviation of R's last
    feature maps. Histogram equalisation is such a curve (the image's cumulative histogram), as are
    gain, gamma and auto-contrast: the per-image tone changes between a renderer and a camera
    (learned curves as in Hu et al., "Exposure: A White-Box Photo Post-Processing Framework",
    SIGGRAPH 2018, and Moran et al., "CURL: Neural Curve Layers for Global Image Enhancement",
    ICPR 2020). The MLP's last layer starts at zero, where the curve is the identity, like R
    itself. A monotone curve moves no edge: labels stay as they are. The curve is evaluated in
    float32 (a bf16 knot would be off by up to a grey level)."""

    def __init__(self, channels: int, knots: int, width: int):
        super().__init__()
        self.channels, self.knots = channels, knots
        self.fc1 = nn.Linear(channels * knots + 2 * width, width)
        self.fc2 = nn.Linear(width, channels * (knots + 1))
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def histogram(self, x: torch.Tensor) -> torch.Tensor:
        """Share of each image's pixels in each of ``knots`` equal bins of [-1, 1]: ``N×C×knots``."""
        n, c = x.shape[:2]
        idx = ((x.detach().float() + 1.0) * (self.knots / 2)).long().clamp_(0, self.knots - 1).reshape(n * c, -1)
        ones = torch.ones_like(idx, dtype=torch.float32)
        hist = torch.zeros(n * c, self.knots, device=x.device).scatter_add_(1, idx, ones)
        return (hist / idx.shape[1]).reshape(n, c, self.knots)

    def forward(self, y: torch.Tensor, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        n, c, k = y.shape[0], self.channels, self.knots
        desc = torch.cat([self.histogram(x).reshape(n, c * k), channel_stats(h)], dim=1)
        a = self.fc2(torch.relu(self.fc1(desc.to(self.fc1.weight.dtype)))).float().reshape(n, c, k + 1)
        # rises: softplus scaled so that a = 0 gives 2 / knots per segment (the identity)
        rise = nn.functional.softplus(a[:, :, 1:]) * ((2.0 / k) / math.log(2.0))
        values = torch.cat([a[:, :, :1] - 1.0, rise], dim=2).cumsum(dim=2)  # N×C×(k+1) at -1, ..., 1
        u = (y.float() + 1.0) * (k / 2)
        i = u.detach().floor().clamp_(0, k - 1)
        frac = u - i
        flat = values.reshape(n * c, k + 1)
        i = i.long().reshape(n * c, -1)
        lo, hi = flat.gather(1, i), flat.gather(1, i + 1)
        out = lo + frac.reshape(n * c, -1) * (hi - lo)
        return out.reshape(y.shape).clamp(-1.0, 1.0)


def soft_equalize(y: torch.Tensor, bins: int = 256, *, unit_range: bool = True) -> torch.Tensor:
    """Per-image, per-channel histogram equalisation of ``y`` (N×C×H×W in [-1, 1]), differentiable.

    ``unit_range=False``: ``y`` may have any range; each image is first stretched from its own
    minimum to its maximum (which changes no rank), so no pixel is clamped.

    Each image's histogram is taken with linear interpolation between ``bins`` equal bins of
    [-1, 1] (so it moves smoothly with every pixel), its cumulative share is read back at each
    pixel the same way, and the result is stretched as OpenCV's ``equalizeHist`` stretches it
    (the darkest pixel to -1, the brightest to 1): ``(cdf(v) - cdf_min) / (cdf_max - cdf_min)``,
    where ``cdf_max`` is 1 on 8-bit images and a little less between the bins. On
    8-bit images it lands within about a grey level of the exact equalisation (a test holds it to
    that), and its gradient reaches every pixel through both the histogram and the read-back."""
    n, c = y.shape[:2]
    flat = y.float().reshape(n * c, -1)
    if not 8 <= bins <= 65536:
        raise ValueError(f"soft_equalize: bins must be 8 .. 65536, got {bins}")
    if unit_range:
        u = (flat.clamp(-1.0, 1.0) + 1.0) * ((bins - 1) / 2)
    else:  # any range: stretched to the bins first (equalisation does not see an affine map)
        lo_v, hi_v = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
        u = (flat - lo_v) / (hi_v - lo_v).clamp_min(1e-6) * (bins - 1)
    i0 = u.detach().floor().clamp_(0, bins - 2)
    f = u - i0
    i0 = i0.long()
    hist = torch.zeros(n * c, bins, device=y.device).scatter_add(1, i0, 1.0 - f).scatter_add(1, i0 + 1, f)
    cdf = hist.cumsum(1) / flat.shape[1]
    e = cdf.gather(1, i0) * (1.0 - f) + cdf.gather(1, i0 + 1) * f
    lo, hi = e.min(dim=1, keepdim=True).values, e.max(dim=1, keepdim=True).values
    out = (e - lo) / (hi - lo).clamp_min(1e-6)
    return (out * 2.0 - 1.0).reshape(y.shape)


class Grain(nn.Module):
    """Sensor grain: a per-pixel noise standard deviation ``s(x) = softplus(conv1x1(h))``
    predicted from R's last feature maps, and the noise ``s(x) * z`` with ``z ~ N(0, 1)`` per
    pixel and channel. The paper's future work, "model the noise distribution" (§5), as an
    explicit noise model: a convolutional R fed noise channels can only average them over its
    receptive field (blotches), while a camera's shot and read noise is white and its strength
    depends on the signal (shot noise grows with brightness), which ``s(x)`` can express. The
    ``1×1`` map starts with zero weights and a bias of -6, so R starts with grain of std
    ``softplus(-6) = 0.0025`` (0.3 grey levels of 8 bits): nearly the identity, with a gradient.

    The strength is bounded: ``s = MAX_STD * tanh(softplus(a) / MAX_STD)``, about ``softplus(a)``
    below a third of the bound. Self-regularisation compares the output without the grain, so
    nothing else holds it, and on the eye demo (seed 1, with a tone curve and D context) an
    unbounded grain ran away to a std of 400 in 400 rounds: every refined eye was pure noise.
    The bound, 0.1 in [-1, 1] units (13 grey levels before the tone curve), is twice the 99th
    percentile of the grain of a run that worked (seed 0: median 0.015)."""

    INIT_BIAS = -6.0
    MAX_STD = 0.1

    def __init__(self, width: int, channels: int):
        super().__init__()
        self.std_head = nn.Conv2d(width, channels, 1)
        nn.init.zeros_(self.std_head.weight)
        nn.init.constant_(self.std_head.bias, self.INIT_BIAS)

    def std(self, h: torch.Tensor) -> torch.Tensor:
        """``s(x)``, N×C×H×W in fp32 (in the models' [-1, 1] units)."""
        return torch.tanh(nn.functional.softplus(self.std_head(h).float()) / self.MAX_STD) * self.MAX_STD

    def forward(self, h: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        s = self.std(h)
        if generator is None:
            z = torch.randn_like(s)
        else:
            z = torch.randn(s.shape, generator=generator).to(s.device)
        return s * z


class Refiner(nn.Module):
    """R: synthetic image ``x`` (N×C×H×W in [-1, 1]) -> refined image ``x~`` of the same shape.

    With ``cfg.noise_channels = k > 0``, R also takes ``k`` maps of N(0, 1) noise (drawn anew per
    call unless ``noise`` is given), concatenated to ``x`` at the stem; the output is still
    ``x`` plus a correction, tied to ``x`` by the self-regularisation term.

    With ``cfg.global_context``, a :class:`GlobalContext` follows every ResNet block, so R can
    make per-image changes (tone, contrast) that depend on the whole image. With
    ``cfg.tone_curve = k > 0``, a :class:`ToneCurve` of ``k`` segments maps R's output last. With
    ``cfg.grain``, a :class:`Grain` adds per-pixel noise of a predicted strength before the tone
    curve; ``forward(..., with_clean=True)`` also returns the output without it (what
    self-regularisation compares with ``x``). With ``cfg.equalize``, the output is histogram-
    equalised per image last (:func:`soft_equalize`), as MPIIGaze's crops are; the output
    before it is what self-regularisation compares with ``x``.

    ``generator``: where the noise (input noise not given as ``noise``, and grain) is drawn from,
    for a reproducible refine."""

    def __init__(self, cfg: RefinerConfig, channels: int):
        super().__init__()
        self.cfg = cfg
        self.channels = channels
        self.noise_channels = cfg.noise_channels
        self.noise_kind = cfg.noise_kind
        k = cfg.kernel_size
        self.stem = nn.Sequential(nn.Conv2d(channels + cfg.noise_channels, cfg.width, k, padding=k // 2,
                                            padding_mode=cfg.padding), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[ResnetBlock(cfg.width, k, cfg.norm, cfg.padding) for _ in range(cfg.num_blocks)])
        # (only built when asked for: refiners without it keep their parameters and state dicts)
        self.context = (nn.ModuleList([GlobalContext(cfg.width) for _ in range(cfg.num_blocks)])
                        if cfg.global_context else None)
        self.head = nn.Conv2d(cfg.width, channels, 1)
        self.tone = ToneCurve(channels, cfg.tone_curve, cfg.width) if cfg.tone_curve else None
        self.grain = Grain(cfg.width, channels) if cfg.grain else None
        self.residual = cfg.residual
        if self.residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, *,
                generator: torch.Generator | None = None, with_clean: bool = False):
        inp = x
        if self.noise_channels:
            if noise is None:
                noise = self.sample_noise(x.shape[0], *x.shape[2:], generator=generator, device=x.device, dtype=x.dtype)
            inp = torch.cat([x, noise.to(x.dtype).expand(-1, -1, *x.shape[2:])], dim=1)
        weights = self.head.weight.dtype
        h = self.stem(inp.to(weights))
        if weights == torch.float32:
            h = h.float()  # under autocast: the residual stream stays in fp32 (see ResnetBlock)
        if self.context is None:
            h = self.blocks(h)
        else:
            for block, context in zip(self.blocks, self.context):
                h = context(block(h))
        r = self.head(h)
        if self.cfg.equalize and self.residual:
            # not clamped: the equaliser maps any range to [-1, 1], and a clamp would let R reach
            # a saturated image, which equalises to one grey level and passes no gradient back
            # (seen: R collapsed to all-black eyes, seed 0 of the eye demo with reflect padding)
            y = x + r.float()
        else:
            y = (x + r.float()).clamp(-1.0, 1.0) if self.residual else torch.tanh(r.float())
        tone = (lambda v: v) if self.tone is None else (lambda v: self.tone(v, x, h))
        last = partial(soft_equalize, unit_range=False) if self.cfg.equalize else (lambda v: v)
        if self.grain is None:
            clean = tone(y)
            out = last(clean)
        else:
            noisy = y + self.grain(h, generator=generator)
            out = last(tone(noisy if self.cfg.equalize else noisy.clamp(-1.0, 1.0)))
            clean = tone(y) if with_clean else None
        return (out, clean) if with_clean else out

    def sample_noise(self, n: int, height: int, width: int, *, generator: torch.Generator | None = None,
                     device=None, dtype=torch.float32) -> torch.Tensor:
        """N(0, 1) noise for ``n`` images: ``n×k×H×W`` (``noise_kind`` "pixel") or ``n×k×1×1``
        ("image", broadcast over the pixels by :meth:`forward`)."""
        shape = (n, self.noise_channels) + ((height, width) if self.noise_kind == "pixel" else (1, 1))
        if generator is None:
            return torch.randn(shape, device=device, dtype=dtype)
        return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)

    def for_inference(self, precision: str) -> "Refiner":
        """This refiner for refining on a CPU in ``precision``, in place: the stem and the ResNet
        blocks fused with their ReLUs and shortcut sums (:func:`simgan.models.fused.fuse_for_cpu`;
        on a 2-core AMX CPU R ran 2.3x faster in bf16), and for bf16 the whole body cast to bf16
        (the stream too), with only the final ``x + r`` in fp32. The bf16 body ran 1.4x faster
        than autocast's fp32 stream on a 2-core AVX512-BF16 CPU (550 vs 397 images/s at batch
        32), whose casts around every block are memory passes the fast bf16 convolutions then
        wait on, with the same 8-bit pixels (99.2% equal to fp32's in both)."""
        from .fused import fuse_for_cpu

        fuse_for_cpu(self.eval(), torch.bfloat16 if precision == "bf16" else torch.float32)
        return self.to(torch.bfloat16) if precision == "bf16" else self

    @property
    def receptive_field(self) -> int:
        return refiner_receptive_field(self.cfg)


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
    macs = px * (k2 * channels * w + cfg.num_blocks * 2 * k2 * w * w + w * channels)
    if cfg.global_context:
        macs += cfg.num_blocks * (4 * w * w + 2 * px * w)  # the MLP, and the statistics and the affine map
    if cfg.grain:
        macs += px * w * channels
    if cfg.tone_curve:
        macs += px * w + (channels * cfg.tone_curve + 2 * w) * w + w * channels * (cfg.tone_curve + 1) + 2 * px * channels
    return 2.0 * macs
