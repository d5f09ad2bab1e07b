"""Typed configuration of a SimGAN run, and the paper's settings as presets.

A run's configuration is a :class:`SimGANConfig`; it is built from a preset (``eyes``, ``hands``,
``generic``), then a YAML file (``--config``), then command-line flags, each overriding the last,
and is written to ``RUN/config.yaml`` in full. The presets below are plain data: the paper's
§3.1 (eyes) and §3.2 (hands) settings, and a small generic network for any other image shape.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from .errors import SimganError

FEATURES = ("identity", "channel-mean", "gradients", "standardized", "equalized", "features")
OPTIMIZERS = ("sgd", "adam")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
REDUCTIONS = ("sum", "mean")
ADVERSARIAL = ("cross-entropy", "least-squares", "hinge")
PADDINGS = ("zeros", "reflect", "replicate")
AUGMENTS = ("color", "translation", "cutout")
NOISE_KINDS = ("pixel", "image")


@dataclass
class ImageConfig:
    """Shape of the images R and D are built for (``None``: taken from the data)."""

    height: int | None = None
    width: int | None = None
    channels: int | None = None
    bit_depth: int | None = None


@dataclass
class RefinerConfig:
    """Refiner R (§2.1, §3.1): a fully convolutional ResNet with no striding or pooling.

    ``conv k×k -> width maps``, ``num_blocks`` ResNet blocks of two ``k×k`` convolutions with
    ``width`` maps each, then a ``1×1`` convolution back to the image's channels.

    ``residual`` (default): the ``1×1`` map is added to the input, ``R(x) = clamp(x + r(x))``,
    and starts at zero, so R starts as the identity that the paper's self-regularised
    pretraining converges to, and the refined pixels carry the input's full precision (bf16
    inference then matches fp32). ``residual: false`` is the paper's literal output layer, the
    ``1×1`` map itself, through tanh.
    """

    kernel_size: int = 3
    width: int = 64
    num_blocks: int = 4
    norm: str = "none"  # "none" or "batch" (batch norm inside the ResNet blocks)
    residual: bool = True
    # How R's convolutions pad the border: "zeros" (the default of the paper's framework) or
    # "reflect" / "replicate", which give the border pixels real neighbours instead of a black
    # frame, the remedy for border artifacts in image-to-image networks (Johnson et al., ECCV
    # 2016, use reflection padding in their residual transformation networks).
    padding: str = "zeros"
    # Channels of N(0, 1) noise concatenated to R's input: the paper's future work ("model the
    # noise distribution", §5); a refiner that sees only its input maps every flat region to the
    # same output. Noise enters R only; self-regularisation still ties R(x, z) to x, and
    # `simgan refine --variants K` draws K noise maps per image (cf. Bousmalis et al., "Unsupervised
    # Pixel-Level Domain Adaptation with GANs", CVPR 2017, whose generator takes x and z).
    noise_channels: int = 0
    # Where the noise varies: "pixel" (one N(0, 1) draw per pixel) or "image" (one draw per image
    # and channel, the same at every pixel: a global code, as the z vector of Bousmalis et al.,
    # CVPR 2017, which their generator spreads over the image). A per-pixel map averages out over
    # R's receptive field, so it cannot choose one colour for a whole background; a per-image
    # code can.
    noise_kind: str = "pixel"
    # Per-image context (see simgan.models.refiner.GlobalContext): after every ResNet block, a
    # channel-wise scale and shift computed from the whole image's feature statistics, so R can
    # make the per-image tone and contrast changes that a fully convolutional R cannot (a target
    # domain normalised per image, e.g. histogram-equalised eye crops). Squeeze-and-excitation
    # (Hu et al., CVPR 2018) as FiLM (Perez et al., AAAI 2018). Off: the paper's local R.
    global_context: bool = False
    # Segments of a per-image monotone tone curve applied to R's output (see
    # simgan.models.refiner.ToneCurve), predicted from the input's histogram and R's features:
    # the camera response, gain or per-image equalisation between a renderer and a camera, which
    # a fully convolutional R cannot express. Learned curves as in Hu et al. (SIGGRAPH 2018) and
    # Moran et al. ("CURL", ICPR 2020). 0: off, the paper's R.
    tone_curve: int = 0
    # Sensor grain (see simgan.models.refiner.Grain): R's head also predicts a per-pixel noise
    # standard deviation s(x), and the output is R(x) + s(x) z with z ~ N(0, 1) per pixel, before
    # the tone curve (a camera's noise comes before its processing). The paper's future work,
    # "model the noise distribution" (§5), as an explicit noise model; self-regularisation applies
    # to the noise-free output (the grain has mean zero and moves no label). Off: the paper's R.
    grain: bool = False
    # Histogram equalisation of R's output, per image (see simgan.models.refiner.soft_equalize),
    # for a real domain that is equalised per image, as MPIIGaze's eye crops are (Zhang et al.,
    # CVPR 2015): equalisation is a fixed monotone per-image map, so R need not learn it and D
    # judges texture, not tone. It comes last (after grain and tone curve); self-regularisation
    # compares the output before it with the input. Off: the paper's R.
    equalize: bool = False


@dataclass
class LayerSpec:
    """One layer of the discriminator's convolutional trunk."""

    kind: str  # "conv" or "maxpool"
    kernel: int
    stride: int = 1
    channels: int = 0  # conv only


@dataclass
class DiscriminatorConfig:
    """Discriminator D (§2.2). ``local``: fully convolutional, a w×h map of real/refined
    probabilities, one per receptive-field patch; ``global``: the same trunk with a fully
    connected head, one decision per image (the ablation of §3.3).

    ``layers`` is the trunk; a final ``1×1`` convolution to 2 maps (softmax) is always added.

    ``layers: []`` (the generic preset) derives the trunk from the image shape when training
    starts (:func:`generic_discriminator_for_shape`).
    """

    kind: str = "local"
    layers: list[LayerSpec] = field(default_factory=list)
    norm: str = "batch"  # batch norm after each trunk convolution, as the authors' blog notes
    padding: str = "valid"  # "valid" (no padding, as in the paper's layer list) or "same"
    # Spectral normalisation of every trunk and output convolution (Miyato et al., "Spectral
    # Normalization for Generative Adversarial Networks", ICLR 2018).
    spectral_norm: bool = False
    # Anti-aliased downsampling: every strided convolution runs at stride 1 and is followed by a
    # 3x3 binomial blur subsampled by the stride (Zhang, "Making Convolutional Networks
    # Shift-Invariant Again", ICML 2019), so D's decisions (and R's gradients) carry no
    # stride-periodic grid.
    antialias: bool = False
    # Local D only: a GlobalContext (the refiner's, models/refiner.py) between the trunk and the
    # 1x1 classifier, so every patch's decision also sees the whole image's feature statistics
    # (per-image tone and contrast, which a 23x23 patch of a histogram-equalised image barely shows).
    global_context: bool = False
    # Local D only: bins of a soft histogram of the whole image (per channel) whose two-layer MLP
    # adds a real/refined logit to every patch's decision (simgan.models.discriminator.
    # HistogramHead), so D judges each image's grey-level distribution directly, the statistic
    # that per-image normalisation (histogram equalisation) fixes. 0: off, the paper's D.
    histogram_bins: int = 0


@dataclass
class LossConfig:
    """Eq. 4: ``L_R = sum_patches -log(1 - D(R(x))) + lambda_reg * ||psi(R(x)) - psi(x)||_1``.

    ``reduction`` (see :mod:`simgan.models.losses`): ``sum`` over patches and feature elements (the
    paper's literal Eq. 2/4; eyes and hands presets), or ``mean`` over both, so that lambda_reg
    means the same at every image size and patch count (the generic preset).
    ``adversarial``: ``cross-entropy`` (the paper), ``least-squares`` (Mao et al., ICCV 2017) or
    ``hinge`` (Lim & Ye 2017). ``r1_gamma``: weight gamma of the R1 penalty
    ``gamma/2 ||grad D(y)||²`` on real images (Mescheder et al., ICML 2018); 0 disables.
    """

    lambda_reg: float = 0.1
    feature: str = "identity"  # psi: identity | channel-mean | gradients | standardized | equalized | features
    reduction: str = "sum"
    adversarial: str = "cross-entropy"
    r1_gamma: float = 0.0
    # Diversity-sensitive term for a refiner with noise (Yang et al., "Diversity-Sensitive
    # Conditional Generative Adversarial Networks", ICLR 2019; Mao et al., "Mode Seeking GANs",
    # CVPR 2019): R's loss gains ``- diversity * min(|R(x, z1) - R(x, z2)| / |z1 - z2|, diversity_cap)``
    # on pairs of the same image with two noise draws, so R cannot ignore its noise (a conditional
    # generator otherwise does). 0 disables; needs refiner.noise_channels > 0.
    diversity: float = 0.0
    diversity_cap: float = 1.0


@dataclass
class TrainConfig:
    """Algorithm 1 and its optimisation settings."""

    steps: int = 10000  # T: rounds of K_g refiner updates then K_d discriminator updates
    refiner_pretrain: int = 0  # R steps with self-regularisation only (see PRESETS)
    disc_pretrain: int = 200  # D steps against the pretrained R
    kg: int = 50
    kd: int = 1
    adaptive_kg: bool = False  # the authors' tip: raise K_g while D wins too easily
    kg_max: int = 50
    batch_size: int = 64  # b: synthetic images per R step; D sees b refined (b/2 from history) + b real
    buffer_size: int = 12800  # B: history of refined images (§2.3)
    history: bool = True
    optimizer: str = "adam"
    lr: float = 1e-4
    lr_disc: float | None = None  # None: same as lr
    momentum: float = 0.9  # SGD
    betas: tuple[float, float] = (0.5, 0.999)  # Adam
    ema_decay: float = 0.0  # running average of R's weights (Salimans et al.); 0 disables
    # Linear learning-rate decay over the last ``lr_decay`` fraction of the adversarial steps, to 0
    # at the end, for R and D alike (CycleGAN's schedule, Zhu et al., ICCV 2017, §4: constant, then
    # linearly to zero). A GAN's refiner oscillates from round to round; decaying both learning
    # rates ends the run at a settled point rather than at a random phase. 0 disables.
    lr_decay: float = 0.0
    # Snapshot ensemble (Huang et al., ICLR 2017; see simgan.training.snapshots): keep R at
    # ``snapshots`` points evenly spaced over the last ``snapshot_span`` of the adversarial steps
    # (the last one is the final R); ``simgan refine --variants V`` refines variant v with
    # snapshot v mod ``snapshots``. 0 or 1: only the final R.
    snapshots: int = 0
    snapshot_span: float = 0.5
    # Differentiable augmentation of every image D sees, real and refined alike, in R's step too
    # (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training", NeurIPS 2020):
    # a comma-separated policy of "color", "translation", "cutout"; "" disables. For users with
    # few real images (hundreds).
    diff_augment: str = ""
    health_patience: int | None = None  # rounds a bad sign must last before a warning (None: max(50, T/10))
    log_every: int = 10  # metrics are read from the device every this many steps
    sample_every: int = 200  # sample grid and loss-curve PNG every this many steps
    checkpoint_every: int = 200
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = True
    compile: bool = False


@dataclass
class SimGANConfig:
    preset: str = "generic"
    image: ImageConfig = field(default_factory=ImageConfig)
    refiner: RefinerConfig = field(default_factory=RefinerConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # -- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["train"]["betas"] = list(d["train"]["betas"])
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict) -> "SimGANConfig":
        return _build(cls, data, "config")

    def override(self, data: dict) -> "SimGANConfig":
        """A copy with the (possibly partial, nested) values of ``data`` applied."""
        merged = _merge(self.to_dict(), data, "config")
        return SimGANConfig.from_dict(merged)

    def validate(self) -> "SimGANConfig":
        t, l, r, d = self.train, self.loss, self.refiner, self.discriminator
        checks = [
            (l.feature in FEATURES, f"feature must be one of {', '.join(FEATURES)}, got {l.feature!r}"),
            (l.lambda_reg >= 0, "lambda_reg must be >= 0"),
            (t.optimizer in OPTIMIZERS, f"optimizer must be sgd or adam, got {t.optimizer!r}"),
            (t.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {t.precision!r}"),
            (t.batch_size >= 2 and t.batch_size % 2 == 0, "batch size must be an even number >= 2 (half of D's refined batch comes from the history)"),
            (t.buffer_size >= t.batch_size // 2 or not t.history, "buffer size must be at least half the batch size"),
            (t.kg >= 1 and t.kd >= 1, "kg and kd must be >= 1"),
            (t.steps >= 0 and t.refiner_pretrain >= 0 and t.disc_pretrain >= 0, "step counts must be >= 0"),
            (t.lr > 0 and (t.lr_disc is None or t.lr_disc > 0), "learning rates must be > 0"),
            (0.0 <= t.ema_decay < 1.0, "ema_decay must be in [0, 1)"),
            (0.0 <= t.lr_decay <= 1.0, "lr_decay must be in [0, 1] (the fraction of adversarial steps that decay)"),
            (0 <= t.snapshots <= 64, "snapshots must be in 0 .. 64"),
            (0.0 < t.snapshot_span <= 1.0, "snapshot_span must be in (0, 1] (the fraction of adversarial steps the snapshots spread over)"),
            (min(t.log_every, t.sample_every, t.checkpoint_every) >= 1, "log/sample/checkpoint intervals must be >= 1"),
            (r.kernel_size % 2 == 1 and r.kernel_size >= 1, "refiner kernel size must be odd"),
            (r.width >= 1 and r.num_blocks >= 0, "refiner width must be >= 1 and blocks >= 0"),
            (r.norm in ("none", "batch"), "refiner norm must be none or batch"),
            (d.kind in ("local", "global"), "discriminator kind must be local or global"),
            (not (d.global_context and d.kind == "global"),
             "discriminator global_context is for the local discriminator (the global one already sees the whole image)"),
            (not (d.histogram_bins and d.kind == "global"),
             "discriminator histogram_bins is for the local discriminator (the global one already sees the whole image)"),
            (d.histogram_bins == 0 or 2 <= d.histogram_bins <= 256,
             f"discriminator histogram_bins must be 0 (off) or 2 to 256, got {d.histogram_bins}"),
            (d.norm in ("none", "batch"), "discriminator norm must be none or batch"),
            (d.padding in ("valid", "same"), "discriminator padding must be valid or same"),
            (len(d.layers) >= 1 or self.preset == "generic", "discriminator needs at least one layer"),
            (l.reduction in REDUCTIONS, f"loss reduction must be one of {', '.join(REDUCTIONS)}, got {l.reduction!r}"),
            (l.adversarial in ADVERSARIAL, f"adversarial loss must be one of {', '.join(ADVERSARIAL)}, got {l.adversarial!r}"),
            (l.r1_gamma >= 0, "r1_gamma must be >= 0"),
            (l.diversity >= 0 and l.diversity_cap > 0 and math.isfinite(l.diversity) and math.isfinite(l.diversity_cap),
             "diversity must be a finite number >= 0 and diversity_cap a finite number > 0"),
            (l.diversity == 0 or r.noise_channels > 0, "loss.diversity needs refiner.noise_channels > 0 (R must take noise)"),
            (r.padding in PADDINGS, f"refiner padding must be one of {', '.join(PADDINGS)}, got {r.padding!r}"),
            (r.noise_channels >= 0, "refiner noise_channels must be >= 0"),
            (0 <= r.tone_curve <= 256, f"refiner tone_curve must be 0 (off) to 256 segments, got {r.tone_curve}"),
            (r.noise_kind in NOISE_KINDS, f"refiner noise_kind must be one of {', '.join(NOISE_KINDS)}, got {r.noise_kind!r}"),
            (all(p.strip() in AUGMENTS for p in t.diff_augment.split(",") if p.strip()),
             f"diff_augment must be a comma-separated list of {', '.join(AUGMENTS)}, got {t.diff_augment!r}"),
            (t.kg_max >= 1, f"kg_max must be >= 1, got {t.kg_max}"),
            (t.health_patience is None or t.health_patience >= 1,
             f"health_patience must be >= 1 (or null for the default), got {t.health_patience}"),
            (t.momentum >= 0 and math.isfinite(t.momentum), f"momentum must be a finite number >= 0, got {t.momentum}"),
            (all(0.0 <= b < 1.0 for b in t.betas), f"betas must both be in [0, 1), got {list(t.betas)}"),
            (0 <= t.seed < 2 ** 32, f"seed must be in 0 .. 2**32 - 1, got {t.seed}"),
            (all(math.isfinite(v) for v in (l.lambda_reg, t.lr, t.lr_disc or 1.0, t.ema_decay, t.lr_decay, t.snapshot_span)),
             "lambda_reg, lr, lr_disc, ema_decay, lr_decay and snapshot_span must be finite numbers"),
            (all(v is None or v >= 1 for v in (self.image.height, self.image.width, self.image.channels)),
             "image height, width and channels must be >= 1"),
            (self.image.channels in (None, 1, 3), "image channels must be 1 (gray) or 3 (RGB)"),
            (self.image.bit_depth in (None, 8, 16), "image bit_depth must be 8 or 16"),
            (r.kernel_size <= 31 and r.width <= 4096 and r.num_blocks <= 256, "refiner is implausibly large "
             "(kernel_size <= 31, width <= 4096, num_blocks <= 256)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise SimganError(f"bad configuration: {msg}")
        for layer in d.layers:
            if layer.kind not in ("conv", "maxpool") or layer.kernel < 1 or layer.stride < 1:
                raise SimganError(f"bad configuration: discriminator layer {layer} is not a conv/maxpool with kernel, stride >= 1")
            if layer.kind == "conv" and layer.channels < 1:
                raise SimganError(f"bad configuration: discriminator conv layer {layer} needs channels >= 1")
        return self

    def save(self, path: Path) -> None:
        from .datasets import atomic_write_bytes
        atomic_write_bytes(Path(path), self.to_yaml().encode())


def load_config_file(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise SimganError(f"config file not found: {p}")
    if not p.is_file():
        raise SimganError(f"config file {p} is not a file")
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise SimganError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SimganError(f"config file {p} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SimganError(f"config file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except (ValueError, RecursionError) as exc:
        raise SimganError(f"config file {p} cannot be read as YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SimganError(f"config file {p} must hold a mapping of settings")
    return data


# ----------------------------------------------------------------------------------------------
# presets (data)
#
# The paper pretrains R with the self-regularisation loss alone (1,000 steps for eyes, 500 for
# hands) so that it starts as a (blurry) identity. simgan's residual refiner starts as the exact
# identity, so that phase would be a no-op and the presets set it to 0; with
# ``refiner: {residual: false}`` (the paper's tanh output) set ``train.refiner_pretrain`` back.
# The paper gives no lambda; 0.1 is what worked for the eyes demo under this project's loss
# convention (sums over patches and pixels, mean over the batch).


def conv(kernel: int, stride: int, channels: int) -> LayerSpec:
    return LayerSpec("conv", kernel, stride, channels)


def maxpool(kernel: int, stride: int) -> LayerSpec:
    return LayerSpec("maxpool", kernel, stride)


PRESETS: dict[str, SimGANConfig] = {
    # §3.1: UnityEyes -> MPIIGaze, 55x35 gray.
    "eyes": SimGANConfig(
        preset="eyes",
        image=ImageConfig(height=35, width=55, channels=1, bit_depth=8),
        refiner=RefinerConfig(kernel_size=3, width=64, num_blocks=4),
        discriminator=DiscriminatorConfig(layers=[
            conv(3, 2, 96), conv(3, 2, 64), maxpool(3, 1), conv(3, 1, 32), conv(1, 1, 32)]),
        loss=LossConfig(lambda_reg=0.1, feature="identity"),
        train=TrainConfig(refiner_pretrain=0, disc_pretrain=200, kg=50, kd=1, batch_size=64,
                          buffer_size=12800),
    ),
    # §3.2: NYU hand depth images, 224x224, 16-bit depth.
    "hands": SimGANConfig(
        preset="hands",
        image=ImageConfig(height=224, width=224, channels=1, bit_depth=16),
        refiner=RefinerConfig(kernel_size=7, width=64, num_blocks=10),
        discriminator=DiscriminatorConfig(layers=[
            conv(7, 4, 96), conv(5, 2, 64), maxpool(3, 2), conv(3, 2, 32), conv(1, 1, 32)]),
        loss=LossConfig(lambda_reg=0.1, feature="identity"),
        train=TrainConfig(refiner_pretrain=0, disc_pretrain=200, kg=2, kd=1, batch_size=32,
                          buffer_size=2048),
    ),
    # Any other shape: a small R; D's trunk is derived from the image shape when training starts
    # (generic_discriminator_for_shape) and both loss terms are means (per patch, per pixel), so
    # lambda means the same at every size. The numbers were measured on the digits demo and the
    # eyes (README, "Defaults on a new domain").
    "generic": SimGANConfig(
        preset="generic",
        refiner=RefinerConfig(kernel_size=3, width=64, num_blocks=4, noise_channels=8, noise_kind="image"),
        discriminator=DiscriminatorConfig(layers=[]),
        loss=LossConfig(lambda_reg=0.3, feature="identity", reduction="mean", diversity=1.0),
        train=TrainConfig(refiner_pretrain=0, disc_pretrain=200, kg=2, kd=1, batch_size=64,
                          buffer_size=6400, snapshots=4),
    ),
}


def generic_discriminator_for_shape(height: int, width: int) -> list[LayerSpec]:
    """The generic preset's D for ``height × width`` images: as many stride-2 ``3×3``
    convolutions as keep D's map at least about 3 patches on the short side
    (``floor(log2(min(h, w) / 6))``, 1 to 6), then the stride-1 and ``1×1`` layers of the paper's
    eyes D. 24×24 -> 2 strided layers, 3×3 patches of 15×15 px; 55×35 -> 2, 11×6 patches;
    224×224 -> 5."""
    import math
    depth = int(math.floor(math.log2(max(1, min(height, width)) / 6))) if min(height, width) >= 6 else 1
    return generic_discriminator_layers(depth=max(1, min(6, depth)), width=64, kernel=3)


def generic_discriminator_layers(depth: int = 2, width: int = 64, kernel: int = 3) -> list[LayerSpec]:
    """The generic preset's D from a few numbers: ``depth`` stride-2 ``kernel×kernel``
    convolutions of ``width`` maps, one stride-1 convolution of ``width // 2`` maps, and a
    ``1×1`` convolution (the pattern of the paper's two discriminators)."""
    for name, v in (("depth", depth), ("width", width), ("kernel", kernel)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SimganError(f"config: discriminator.generic.{name} must be an integer >= 1, got {v!r}")
    return ([conv(kernel, 2, width) for _ in range(depth)]
            + [conv(kernel, 1, max(1, width // 2)), conv(1, 1, max(1, width // 2))])


def for_image_shape(cfg: SimGANConfig, height: int, width: int) -> SimGANConfig:
    """``cfg`` with the settings that derive from the image shape filled in: an empty D trunk
    (the generic preset) becomes :func:`generic_discriminator_for_shape`."""
    if cfg.discriminator.layers:
        return cfg
    cfg = copy.deepcopy(cfg)
    cfg.discriminator.layers = generic_discriminator_for_shape(height, width)
    return cfg


def preset(name: str) -> SimGANConfig:
    if name not in PRESETS:
        raise SimganError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def resolve_config(preset_name: str | None, *, config_file: str | Path | None = None,
                   overrides: dict | None = None) -> SimGANConfig:
    """Preset, then ``--config`` file, then flags (``overrides``, a nested dict).

    The preset is ``preset_name`` (``--preset``), else the file's ``preset:``, else ``eyes``; a
    file whose ``preset:`` contradicts ``--preset`` is refused."""
    data: dict = {}
    if config_file is not None:
        data = load_config_file(config_file)
        file_preset = data.get("preset")
        if file_preset is not None:
            if not isinstance(file_preset, str) or file_preset not in PRESETS:
                raise SimganError(f"config file {config_file}: unknown preset {file_preset!r}; choose one of "
                                  f"{', '.join(PRESETS)}")
            if preset_name is not None and preset_name != file_preset:
                raise SimganError(f"--preset {preset_name} contradicts 'preset: {file_preset}' in {config_file}; "
                                  f"give one of them")
            preset_name = file_preset
    preset_name = preset_name or "eyes"
    cfg = preset(preset_name)
    data = copy.deepcopy(data)
    data.pop("preset", None)
    gen = data.get("discriminator", {}).pop("generic", None) if isinstance(data.get("discriminator"), dict) else None
    if gen is not None:
        if not isinstance(gen, dict) or set(gen) - {"depth", "width", "kernel"}:
            raise SimganError("config: discriminator.generic must be a mapping of depth, width and kernel")
        cfg.discriminator.layers = generic_discriminator_layers(**gen)
    cfg = cfg.override(data)
    if overrides:
        cfg = cfg.override(overrides)
    return cfg.validate()


# ----------------------------------------------------------------------------------------------
# dict <-> dataclass with type checks


def _merge(base: dict, new: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in new.items():
        if key not in out:
            raise SimganError(f"{where}: unknown setting {key!r} (known: {', '.join(out)})")
        if isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = _merge(out[key], value, f"{where}.{key}")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise SimganError(f"{where}: expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise SimganError(f"{where}: unknown setting {sorted(map(str, unknown))[0]!r} (known: {', '.join(sorted(known))})")
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SimganError(f"{where}: missing setting {f.name!r}")
            continue
        kwargs[f.name] = _coerce(hints[f.name], data[f.name], f"{where}.{f.name}")
    return cls(**kwargs)


def _coerce(tp, value, where: str):
    origin = get_origin(tp)
    args = get_args(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise SimganError(f"{where}: expected a list")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise SimganError(f"{where}: expected a list of {len(args)} numbers")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value))
    if args and type(None) in args:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise SimganError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SimganError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SimganError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise SimganError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SimganError(f"{where}: expected a string, got {value!r}")
        return value
    return value
