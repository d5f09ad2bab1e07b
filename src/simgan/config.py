"""Typed configuration of a SimGAN run.

A run's configuration is a :class:`SimGANConfig` of five sections (``image``, ``refiner``,
``discriminator``, ``loss``, ``train``). It is built from a preset (a YAML recipe shipped in
:mod:`simgan.presets`: the paper's §3.1 ``eyes`` and §3.2 ``hands``, ``generic`` for any other
shape, and the demos' recipes), then a YAML file (``--config``), then command-line flags and
``--set section.key=value``, each overriding the last; the result is written to
``RUN/config.yaml`` in full.

Every setting is declared once, below, with :func:`setting`: its default, a one-line help, its
allowed values, and (for the settings most runs change) its ``simgan train`` flag. Checks, flags
and ``--help`` all derive from that declaration.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import operator
from dataclasses import asdict, dataclass, field, fields
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from .errors import SimganError
from .files import atomic_write_bytes
from .presets import PRESET_NAMES, merge_settings, preset_settings

FEATURES = ("identity", "channel-mean", "gradients", "standardized", "features")
OPTIMIZERS = ("sgd", "adam")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
REDUCTIONS = ("sum", "mean")
ADVERSARIAL = ("cross-entropy", "least-squares", "hinge")
PADDINGS = ("zeros", "reflect", "replicate")
AUGMENTS = ("color", "translation", "cutout")
SECTIONS = ("image", "refiner", "discriminator", "loss", "task", "temporal", "train")
DEFAULT_PRESET = "eyes"


def setting(default: Any = None, help: str = "", *, flag: str | None = None, choices: tuple | None = None,
            ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
            flag_value: Any = None, metavar: str | None = None, factory=None):
    """A config field with its help, its allowed values and, optionally, its ``simgan train`` flag.

    ``choices``: the allowed values; ``ge``/``gt``/``le``/``lt``: bounds of a number (of each
    element of a tuple). ``flag``: the flag's name; a bool gets ``--x/--no-x``, and with
    ``flag_value`` the flag is a switch that sets that value."""
    meta = {"help": help, "flag": flag, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt,
            "flag_value": flag_value, "metavar": metavar}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ImageConfig:
    """Shape of the images R and D are built for (``None``: taken from the data)."""

    height: int | None = setting(None, "image height in pixels", ge=1)
    width: int | None = setting(None, "image width in pixels", ge=1)
    channels: int | None = setting(None, "1 (gray) or 3 (RGB)", choices=(None, 1, 3))
    bit_depth: int | None = setting(None, "8 or 16 bits per channel", choices=(None, 8, 16))


@dataclass
class RefinerConfig:
    """Refiner R (§2.1, §3.1): a fully convolutional ResNet with no striding or pooling
    (:mod:`simgan.models.refiner`)."""

    kernel_size: int = setting(3, "k: size of R's k x k filters (odd)", ge=1, le=31)
    width: int = setting(64, "feature maps of R's convolutions", ge=1, le=4096)
    num_blocks: int = setting(4, "ResNet blocks of two k x k convolutions", ge=0, le=256)
    norm: str = setting("none", "normalisation inside R's ResNet blocks", choices=("none", "batch"))
    residual: bool = setting(True, "R(x) = x + r(x) from a zero-initialised head (false: the paper's tanh output)")
    padding: str = setting("zeros", "padding of R's convolutions (reflect: no frame at the border)",
                           flag="--refiner-padding", choices=PADDINGS)
    noise_channels: int = setting(0, "channels of a per-image N(0, 1) code given to R with its input (§5's future "
                                     "work); `simgan refine --variants` draws several", flag="--noise-channels", ge=0)
    global_context: bool = setting(False, "R also sees per-image feature statistics (per-image tone and contrast)",
                                   flag="--global-context")
    inward_clamp: bool = setting(True, "R's clamp to the pixel range passes a gradient that brings a saturated pixel "
                                       "back; false: a plain clamp (no gradient past the range)")
    texture_noise: bool = setting(False, "per-pixel noise added to every block's maps with learned strengths "
                                         "(StyleGAN's noise inputs): R can draw texture", flag="--texture-noise")
    equalize: bool = setting(False, "histogram-equalise R's output per image (for real images equalised per image, "
                                    "as MPIIGaze's eye crops are)", flag="--equalize")


@dataclass
class LayerSpec:
    """One layer of the discriminator's convolutional trunk."""

    kind: str = setting(dataclasses.MISSING, "conv or maxpool", choices=("conv", "maxpool"))
    kernel: int = setting(dataclasses.MISSING, "kernel size", ge=1)
    stride: int = setting(1, "stride", ge=1)
    channels: int = setting(0, "output maps (conv only)", ge=0)


@dataclass
class DiscriminatorConfig:
    """Discriminator D (§2.2, :mod:`simgan.models.discriminator`): ``local`` gives a map of
    per-patch decisions, ``global`` one decision per image (the §3.3 ablation). ``layers`` is the
    trunk (a ``1×1`` convolution to 2 maps is always added); ``layers: []`` derives it from the
    image shape when training starts (:func:`generic_discriminator_for_shape`)."""

    kind: str = setting("local", "local: a decision per patch (§2.2); global (--global-disc): one per image, "
                                 "the ablation",
                        flag="--global-disc", flag_value="global", choices=("local", "global"))
    layers: list[LayerSpec] = setting(help="D's trunk; [] derives it from the image shape", factory=list)
    norm: str = setting("batch", "normalisation after each trunk convolution (batch: the authors' blog)",
                        choices=("none", "batch"))
    padding: str = setting("valid", "padding of D's convolutions", choices=("valid", "same"))
    spectral_norm: bool = setting(False, "spectral normalisation of D's layers (Miyato et al. 2018)",
                                  flag="--spectral-norm")
    antialias: bool = setting(False, "D downsamples with a blur (Zhang 2019): no stride-periodic grid",
                              flag="--antialias")


@dataclass
class LossConfig:
    """Eq. 4, ``L_R = l_real + lambda ||psi(R(x)) - psi(x)||_1``, and Eq. 2 for D
    (:mod:`simgan.models.losses`)."""

    lambda_reg: float = setting(0.1, "lambda of Eq. 4", flag="--lambda-reg", ge=0)
    feature: str = setting("identity", "psi of the self-regularisation term", flag="--feature", choices=FEATURES)
    reduction: str = setting("sum", "sums over patches and pixels (the paper) or means (lambda means the same at every "
                                    "size)", flag="--loss-reduction", choices=REDUCTIONS)
    adversarial: str = setting("cross-entropy", "the paper's cross-entropy, least squares (Mao et al. 2017) or hinge",
                               flag="--adversarial", choices=ADVERSARIAL)
    r1_gamma: float = setting(0.0, "R1 penalty weight on real images (Mescheder et al. 2018); 0 disables",
                              flag="--r1-gamma", ge=0)
    diversity: float = setting(0.0, "weight of the diversity-sensitive term (Yang et al. 2019): R must use its noise; "
                                    "0 disables", flag="--diversity", ge=0)
    diversity_cap: float = setting(1.0, "the diversity term's cap: the mean pixel distance (range [-1, 1]) between two "
                                        "refinements of one image beyond which it rewards nothing", gt=0)


@dataclass
class TaskConfig:
    """Task consistency, beyond the paper (CyCADA's semantic consistency, Hoffman et al. ICML 2018;
    RetinaGAN's, Ho et al. 2021; :mod:`simgan.training.task_consistency`): a small task network
    learns the synthetic set's ``label`` before training and is frozen; R's loss gains
    ``weight`` times the change of that network's output from x to R(x)."""

    weight: float = setting(0.0, "weight of the task-consistency term in R's loss, against one patch's realism "
                                 "loss; 0 disables",
                            flag="--task-consistency", ge=0, metavar="W")
    label: str | None = setting(None, "the synthetic set's label key the task network learns (labels.jsonl)",
                                flag="--task-label", metavar="KEY")
    kind: str | None = setting(None, "the label's kind (null: inferred from its values)",
                               choices=(None, "class", "vector", "points"))
    steps: int = setting(800, "mini-batches of 64 that train the task network before R's training", ge=1)
    augment: bool = setting(False, "train the task network on synthetic images with random tone, contrast, polarity "
                                   "and noise, so that its output follows what the label describes, not the look R "
                                   "is meant to change")


@dataclass
class TemporalConfig:
    """Temporal consistency, for refining videos (the paper's second future work, §5;
    :mod:`simgan.training.temporal`): R's loss gains terms that keep a sequence from flickering.
    Both are off in every recipe."""

    weight: float = setting(0.0, "weight of the flow term: R's change to frame t must match its change to frame t-1 "
                                 "moved by the simulator's flow, outside occlusions (Lai et al., ECCV 2018); needs a "
                                 "synthetic sequence set with flow.npy; 0 disables",
                            flag="--temporal-consistency", ge=0, metavar="W")
    shift: float = setting(0.0, "weight of the shift term: R of a slightly moved image (sub-pixel shift, turn, zoom) "
                                "must be the moved R of the image (Eilertsen et al., CVPR 2019); needs no sequences; "
                                "0 disables",
                           flag="--shift-consistency", ge=0, metavar="W")
    max_shift: float = setting(1.0, "largest shift of the shift term, pixels", gt=0, le=8)


@dataclass
class TrainConfig:
    """Algorithm 1 and its optimisation settings (:mod:`simgan.training`)."""

    steps: int = setting(10000, "T: adversarial rounds of Algorithm 1", flag="--steps", ge=0)
    refiner_pretrain: int = setting(0, "R steps with self-regularisation only", flag="--refiner-pretrain", ge=0)
    disc_pretrain: int = setting(200, "D steps before the adversarial rounds", flag="--disc-pretrain", ge=0)
    minutes: float | None = setting(None, "a time budget: the whole schedule (pre-training, rounds, snapshot span, "
                                          "R's running average) is scaled to end within about this many minutes on "
                                          "this device, measured before training starts", flag="--minutes", gt=0,
                                    le=7 * 24 * 60, metavar="M")
    kg: int = setting(50, "K_g: refiner updates per round", flag="--kg", ge=1)
    kd: int = setting(1, "K_d: discriminator updates per round", flag="--kd", ge=1)
    adaptive_kg: bool = setting(False, "raise K_g while D wins too easily (the authors' tip)", flag="--adaptive-kg")
    kg_max: int = setting(50, "the largest K_g adaptive_kg may reach", ge=1)
    batch_size: int = setting(64, "b: mini-batch size (even)", flag="--batch-size", ge=2)
    buffer_size: int = setting(12800, "B: history buffer size (§2.3)", flag="--buffer-size", ge=1)
    history: bool = setting(True, "D sees a history of refined images (§2.3; --no-history: the ablation)",
                            flag="--history")
    optimizer: str = setting("adam", "optimiser of R and D", flag="--optimizer", choices=OPTIMIZERS)
    lr: float = setting(1e-4, "learning rate", flag="--lr", gt=0)
    lr_disc: float | None = setting(None, "D's learning rate (null: lr)", gt=0)
    momentum: float = setting(0.9, "SGD momentum", ge=0)
    betas: tuple[float, float] = setting((0.5, 0.999), "Adam's betas", ge=0, lt=1)
    ema_decay: float = setting(0.0, "running average of R's weights (Salimans et al. 2016), used for refining; "
                                    "0 disables", flag="--ema-decay", ge=0, lt=1)
    snapshots: int = setting(0, "keep R at this many points of the end of training (snapshot ensemble); "
                                "`simgan refine --variants K` cycles through them", flag="--snapshots", ge=0, le=64)
    snapshot_span: float = setting(0.5, "the last fraction of the adversarial rounds the snapshots spread over",
                                   gt=0, le=1)
    diff_augment: str = setting("", "DiffAugment of D's inputs (Zhao et al. 2020), e.g. color,translation,cutout",
                                flag="--diff-augment", metavar="POLICY")
    health_patience: int | None = setting(None, "rounds a bad sign must last before a warning (null: max(50, T/10))",
                                          ge=1)
    log_every: int = setting(10, "steps between metric rows read from the device", ge=1)
    sample_every: int = setting(200, "steps between sample grids", flag="--sample-every", ge=1)
    checkpoint_every: int = setting(200, "steps between checkpoints", flag="--checkpoint-every", ge=1)
    seed: int = setting(0, "random seed", flag="--seed", ge=0, le=2 ** 32 - 1)
    device: str = setting("auto", "where to run (default: CUDA if present, else CPU)", flag="--device",
                          metavar="cpu|cuda[:N]")
    precision: str = setting("auto", "float format (auto: bf16 where the hardware has it natively, else fp32 on CPU, "
                                     "fp16 on older GPUs)", flag="--precision", choices=PRECISIONS)
    channels_last: bool = setting(True, "channels-last memory layout for R and D")
    compile: bool = setting(False, "torch.compile R and D", flag="--compile")


@dataclass
class SimGANConfig:
    preset: str = DEFAULT_PRESET
    image: ImageConfig = field(default_factory=ImageConfig)
    refiner: RefinerConfig = field(default_factory=RefinerConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
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
        return _build(cls, drop_retired(data), "config")

    def override(self, data: dict) -> "SimGANConfig":
        """A copy with the (possibly partial, nested) values of ``data`` applied."""
        base = self.to_dict()
        return SimGANConfig.from_dict(merge(base, drop_retired(data, base), "config"))

    def validate(self) -> "SimGANConfig":
        """Every declared bound of every setting, then the checks that involve several."""
        for section in SECTIONS:
            _check_declared(getattr(self, section), section)
        for i, layer in enumerate(self.discriminator.layers):
            _check_declared(layer, f"discriminator.layers[{i}]")
        t, r = self.train, self.refiner
        checks = [
            (t.batch_size % 2 == 0, "train.batch_size must be even (half of D's refined batch comes from the history)"),
            (t.buffer_size >= t.batch_size // 2 or not t.history, "train.buffer_size must be at least half the batch"),
            (r.kernel_size % 2 == 1, f"refiner.kernel_size must be odd, got {r.kernel_size}"),
            (self.task.weight == 0 or bool(self.task.label),
             "task.weight > 0 needs task.label, the synthetic set's label key (--task-label KEY)"),
            (self.loss.diversity == 0 or r.noise_channels > 0,
             "loss.diversity needs refiner.noise_channels > 0 (R must take noise)"),
            (all(p.strip() in AUGMENTS for p in t.diff_augment.split(",") if p.strip()),
             f"train.diff_augment must be a comma-separated list of {', '.join(AUGMENTS)}, got {t.diff_augment!r}"),
            (all(layer.kind != "conv" or layer.channels >= 1 for layer in self.discriminator.layers),
             "every discriminator conv layer needs channels >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise SimganError(f"bad configuration: {msg}")
        return self

    def save(self, path: Path) -> None:
        atomic_write_bytes(Path(path), self.to_yaml().encode())


BOUNDS = {"ge": (operator.ge, ">="), "gt": (operator.gt, ">"), "le": (operator.le, "<="), "lt": (operator.lt, "<")}


# Settings an earlier simgan had, with the values that meant "off" (or that every recipe used):
# a run or a settings file holding those still loads; any other value is refused with a pointer
# to the measurements that removed it.
RETIRED = {
    ("refiner", "tone_curve"): (0,), ("refiner", "grain"): (False,), ("refiner", "noise_kind"): ("image", None),
    ("discriminator", "global_context"): (False,), ("discriminator", "histogram_bins"): (0,),
    ("train", "lr_decay"): (0, 0.0), ("refiner", "noise_grid"): (1,), ("refiner", "code_film"): (False,),
    ("discriminator", "colour_stats"): (False,),
}


def drop_retired(data: Any, base: dict | None = None) -> Any:
    """``data`` without the :data:`RETIRED` settings it holds at an "off" value (``base``: the
    settings ``data`` will be merged over, if any)."""
    if not isinstance(data, dict):
        return data
    data = copy.deepcopy(data)
    for (section, key), off in RETIRED.items():
        values = data.get(section)
        if not isinstance(values, dict) or key not in values:
            continue
        value = values.pop(key)
        channels = values.get("noise_channels", ((base or {}).get(section) or {}).get("noise_channels"))
        if key == "noise_kind" and value == "pixel" and not channels:
            continue  # per-pixel noise of a refiner without noise: nothing to keep
        if value not in off or isinstance(value, bool) != isinstance(off[0], bool):
            raise SimganError(f"config: {section}.{key} was removed from simgan (it helped on no domain measured: "
                              f"docs/results/negative.md); remove it from the settings")
    return data


def _check_declared(obj, where: str) -> None:
    """The ``choices`` and bounds that :func:`setting` declared for each field of ``obj``."""
    for f in fields(obj):
        m, value = f.metadata, getattr(obj, f.name)
        if not m:
            continue
        name = f"{where}.{f.name}"
        if m["choices"] is not None and value not in m["choices"]:
            shown = ", ".join(str(c) for c in m["choices"] if c is not None)
            raise SimganError(f"bad configuration: {name} must be one of {shown}, got {value!r}")
        numbers = [v for v in (value if isinstance(value, tuple) else (value,))
                   if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for key, (compare, word) in BOUNDS.items():
            if m[key] is not None and not all(compare(v, m[key]) for v in numbers):
                raise SimganError(f"bad configuration: {name} must be {word} {m[key]}, got {value!r}")


def config_fields(section: str) -> list[dataclasses.Field]:
    """The declared fields of one section (``"train"``, ...), in order."""
    return list(fields(get_type_hints(SimGANConfig)[section]))


# ----------------------------------------------------------------------------------------------
# settings files


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
    return parse_settings(text, f"config file {p}")


def parse_settings(text: str, where: str) -> dict:
    """A YAML mapping of settings; a one-line error (with the line number) otherwise."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise SimganError(f"{where} is not valid YAML{at}: {str(exc).splitlines()[0]}") from None
    except (ValueError, RecursionError) as exc:
        raise SimganError(f"{where} cannot be read as YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SimganError(f"{where} must hold a mapping of settings")
    return data


def parse_set(assignments: tuple[str, ...] | list[str]) -> dict:
    """``--set section.key=value`` pairs as a nested dict; each value is read as YAML
    (``--set train.lr=2e-4``, ``--set refiner.padding=reflect``, ``--set train.betas=[0.5,0.9]``)."""
    out: dict = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise SimganError(f"--set {item!r}: expected section.key=value, e.g. train.lr=2e-4")
        parsed = parse_settings(f"v: {value}" if value.strip() else "v: ''", f"--set {item!r}")["v"]
        out.setdefault(parts[0], {})[parts[1]] = parsed
    return out


# ----------------------------------------------------------------------------------------------
# the discriminator derived from the image shape


def conv(kernel: int, stride: int, channels: int) -> LayerSpec:
    return LayerSpec("conv", kernel, stride, channels)


def maxpool(kernel: int, stride: int) -> LayerSpec:
    return LayerSpec("maxpool", kernel, stride)


def generic_discriminator_for_shape(height: int, width: int) -> list[LayerSpec]:
    """D for ``height × width`` images when a preset leaves ``layers`` empty: as many stride-2
    ``3×3`` convolutions as keep D's map at least about 3 patches on the short side
    (``floor(log2(min(h, w) / 6))``, 1 to 6), then the stride-1 and ``1×1`` layers of the paper's
    eyes D."""
    depth = int(math.floor(math.log2(max(1, min(height, width)) / 6))) if min(height, width) >= 6 else 1
    return generic_discriminator_layers(depth=max(1, min(6, depth)), width=64, kernel=3)


def generic_discriminator_layers(depth: int = 2, width: int = 64, kernel: int = 3) -> list[LayerSpec]:
    """D from a few numbers (``discriminator: {generic: {depth, width, kernel}}`` in a settings
    file): ``depth`` stride-2 ``kernel×kernel`` convolutions of ``width`` maps, one stride-1
    convolution of ``width // 2`` maps, and a ``1×1`` convolution (the pattern of the paper's two
    discriminators)."""
    for name, v in (("depth", depth), ("width", width), ("kernel", kernel)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SimganError(f"config: discriminator.generic.{name} must be an integer >= 1, got {v!r}")
    return ([conv(kernel, 2, width) for _ in range(depth)]
            + [conv(kernel, 1, max(1, width // 2)), conv(1, 1, max(1, width // 2))])


def for_image_shape(cfg: SimGANConfig, height: int, width: int) -> SimGANConfig:
    """``cfg`` with the settings that derive from the image shape filled in: an empty D trunk
    becomes :func:`generic_discriminator_for_shape`."""
    if cfg.discriminator.layers:
        return cfg
    cfg = copy.deepcopy(cfg)
    cfg.discriminator.layers = generic_discriminator_for_shape(height, width)
    return cfg


# ----------------------------------------------------------------------------------------------
# presets, files and flags, in that order


def preset(name: str) -> SimGANConfig:
    """The preset ``name`` (a recipe of :mod:`simgan.presets`) as a config."""
    return settings_to_config(preset_settings(name), name)


class _Presets(Mapping):
    """``name -> SimGANConfig`` of every preset, read from its YAML file (a fresh copy each time)."""

    def __getitem__(self, name: str) -> SimGANConfig:
        if name not in PRESET_NAMES:
            raise KeyError(name)
        return preset(name)

    def __iter__(self):
        return iter(PRESET_NAMES)

    def __len__(self) -> int:
        return len(PRESET_NAMES)


PRESETS = _Presets()


def settings_to_config(data: dict, preset_name: str) -> SimGANConfig:
    """A nested settings dict (a recipe, with ``discriminator.generic`` shorthand allowed) as a config."""
    data = copy.deepcopy(data)
    gen = data.get("discriminator", {}).pop("generic", None) if isinstance(data.get("discriminator"), dict) else None
    cfg = SimGANConfig(preset=preset_name).override(data)
    if gen is not None:
        if not isinstance(gen, dict) or set(gen) - {"depth", "width", "kernel"}:
            raise SimganError("config: discriminator.generic must be a mapping of depth, width and kernel")
        cfg.discriminator.layers = generic_discriminator_layers(**gen)
    return cfg


def resolve_config(preset_name: str | None, *, config_file: str | Path | None = None,
                   overrides: dict | None = None) -> SimGANConfig:
    """Preset, then ``--config`` file, then flags (``overrides``, a nested dict).

    The preset is ``preset_name`` (``--preset``), else the file's ``preset:``, else ``eyes``; a
    file whose ``preset:`` contradicts ``--preset`` is refused."""
    data: dict = {}
    if config_file is not None:
        data = load_config_file(config_file)
        file_preset = data.pop("preset", None)
        if file_preset is not None:
            if not isinstance(file_preset, str) or file_preset not in PRESET_NAMES:
                raise SimganError(f"config file {config_file}: unknown preset {file_preset!r}; choose one of "
                                  f"{', '.join(PRESET_NAMES)}")
            if preset_name is not None and preset_name != file_preset:
                raise SimganError(f"--preset {preset_name} contradicts 'preset: {file_preset}' in {config_file}; "
                                  f"give one of them")
            preset_name = file_preset
    preset_name = preset_name or DEFAULT_PRESET
    base = preset_settings(preset_name)
    cfg = settings_to_config(merge_settings(base, data), preset_name)
    if overrides:
        cfg = cfg.override(overrides)
    return cfg.validate()


# ----------------------------------------------------------------------------------------------
# dict <-> dataclass with type checks


def merge(base: dict, new: dict, where: str) -> dict:
    """``new`` over ``base``, refusing keys ``base`` does not have (a misspelt setting)."""
    if not isinstance(new, dict):
        raise SimganError(f"{where}: expected a mapping, got {new!r}")
    out = copy.deepcopy(base)
    for key, value in new.items():
        if key not in out:
            raise SimganError(f"{where}: unknown setting {key!r} (known: {', '.join(map(str, out))})")
        if isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = merge(out[key], value, f"{where}.{key}")
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
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else _build(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise SimganError(f"{where}: expected a list")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise SimganError(f"{where}: expected a list of {len(args)} numbers")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value))
    if args and type(None) in args:  # Optional[X]
        return None if value is None else _coerce([a for a in args if a is not type(None)][0], value, where)
    return _coerce_scalar(tp, value, where)


def _coerce_scalar(tp, value, where: str):
    if tp is bool and not isinstance(value, bool):
        raise SimganError(f"{where}: expected true or false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise SimganError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise SimganError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SimganError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise SimganError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str and not isinstance(value, str):
        raise SimganError(f"{where}: expected a string, got {value!r}")
    return value
