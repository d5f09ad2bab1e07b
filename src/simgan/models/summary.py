"""What a preset builds, as ``simgan presets`` prints it: R's and D's layers, parameters, receptive
fields and patch map (§2.1, §2.2, Figure 3), Algorithm 1's settings, the options that are on
(noise, diversity, snapshots, stabilisers), and every setting that departs from the paper's, with
the reason its preset file gives."""

from __future__ import annotations

from ..config import DEFAULT_PRESET, PRESET_NAMES, SECTIONS, SimGANConfig, for_image_shape, preset, resolve_config
from ..presets import lineage, reasons, summary
from .discriminator import input_padding, patch_geometry, patches_per_pixel
from .refiner import Refiner, count_parameters, refiner_flops, refiner_receptive_field


def describe_settings(name: str | None = None, *, config_file=None, size: tuple[int, int] | None = None,
                      as_yaml: bool = False) -> list[str]:
    """Lines describing preset ``name`` (with a settings file applied, laid out for images of
    ``size`` = (width, height)); with neither ``name`` nor ``config_file``, one entry per preset."""
    if name is None and config_file is None:
        lines = []
        for n in PRESET_NAMES:
            chain = lineage(n)
            built = f" (builds on {chain[1]})" if len(chain) > 1 else ""
            lines += [f"{n}{built}: {summary(n)}", *departures(preset(n)), ""]
        return lines + ["`simgan presets NAME` shows a preset's networks and every setting."]
    cfg = resolve_config(name, config_file=config_file)
    if as_yaml:
        return [cfg.to_yaml()]
    return describe_config(cfg, size) + departures(cfg)


def describe_config(cfg: SimGANConfig, size: tuple[int, int] | None = None) -> list[str]:
    img = cfg.image
    w, h = size or (img.width, img.height)
    if h and w:
        cfg = for_image_shape(cfg, h, w)
    r, d, t, loss = cfg.refiner, cfg.discriminator, cfg.train, cfg.loss
    rf = refiner_receptive_field(r)
    ch = img.channels or 1
    params = count_parameters(Refiner(r, ch))
    shape = f"{w}x{h}, {ch} channel(s), {img.bit_depth or 8}-bit" if h else "any size (taken from the data)"
    lines = [f"{cfg.preset}: images {shape}",
             f"  refiner R: conv{r.kernel_size}x{r.kernel_size} {r.width}, {r.num_blocks} ResNet blocks, conv1x1 "
             f"{ch}{' + input' if r.residual else ', tanh'}; {params:,} parameters; receptive field {rf}x{rf} px"
             + (f"; {refiner_flops(r, ch, h, w) / 1e9:.2f} GFLOP per image" if h else "")]
    layers = _show([vars(layer) for layer in d.layers]) if d.layers else "derived from the image size (give --size)"
    lines.append(f"  discriminator D ({d.kind}): {layers}, conv1x1 2, softmax")
    if h:
        g = patch_geometry(d, h, w)
        lines.append(f"    one patch sees {g.receptive_field}x{g.receptive_field} px; map {g.map_width}x{g.map_height} "
                     f"= {g.patches} patches (stride {g.stride} px)")
        lines.append(f"    {coverage_line(d, h, w)}")
    lines.append(f"  Algorithm 1: R pretrain {t.refiner_pretrain}, D pretrain {t.disc_pretrain}, K_g {t.kg}, K_d {t.kd}, "
                 f"T {t.steps}; batch {t.batch_size}, history {t.buffer_size if t.history else 'off'}; "
                 f"{t.optimizer} lr {t.lr:g}; lambda {loss.lambda_reg:g} ({loss.reduction} over patches and "
                 f"pixels), psi {loss.feature}, {loss.adversarial} loss")
    lines.append(f"  options on: {', '.join(options_on(cfg)) or 'none (the paper method)'}")
    return lines


def coverage_line(d, height: int, width: int) -> str:
    """How D's patches cover a ``width × height`` image: its input padding and the fewest and most
    patches a pixel lies in (none would mean a pixel R gets no adversarial signal for)."""
    counts = patches_per_pixel(d, height, width)
    left, right, top, bottom = input_padding(d, height, width)
    pad = (f"D pads its input by {left}/{right}/{top}/{bottom} px (left/right/top/bottom, replicate) so that "
           if any((left, right, top, bottom)) else "")
    return (f"{pad}every pixel lies in {counts.min()} to {counts.max()} patches" if counts.min() > 0 else
            f"{(counts == 0).sum()} of {counts.size} pixels lie in no patch")


def options_on(cfg: SimGANConfig) -> list[str]:
    """The options beyond the paper's method that ``cfg`` turns on, in words."""
    r, d, t, loss = cfg.refiner, cfg.discriminator, cfg.train, cfg.loss
    on = [(r.noise_channels, f"per-image noise code of {r.noise_channels} channels"),
          (loss.diversity, f"diversity term {loss.diversity:g} (cap {loss.diversity_cap:g})"),
          (cfg.task.weight, f"task consistency {cfg.task.weight:g} on {cfg.task.label!r}"),
          (cfg.temporal.weight, f"temporal consistency {cfg.temporal.weight:g} along the flow"),
          (cfg.temporal.shift, f"shift consistency {cfg.temporal.shift:g}"),
          (t.snapshots > 1, f"{t.snapshots} snapshots over the last {t.snapshot_span:g} of the rounds"),
          (t.ema_decay, f"running average of R (decay {t.ema_decay:g})"),
          (r.global_context, "R per-image context"), (r.texture_noise, "R texture noise"),
          (r.equalize, "R's output equalised per image"),
          (r.padding != "zeros", f"R {r.padding} padding"), (r.norm != "none", f"R {r.norm} norm"),
          (d.spectral_norm, "spectral norm in D"), (d.antialias, "anti-aliased D"),
          (loss.r1_gamma, f"R1 penalty {loss.r1_gamma:g}"), (t.diff_augment, f"DiffAugment {t.diff_augment}"),
          (t.adaptive_kg, f"adaptive K_g up to {t.kg_max}")]
    return [text for flag, text in on if flag]


def departures(cfg: SimGANConfig) -> list[str]:
    """Every setting of ``cfg`` that differs from the paper preset its preset builds on, with the
    reason the preset files give; for the paper presets themselves, where simgan departs from the
    paper's text."""
    chain = lineage(cfg.preset) if cfg.preset in PRESET_NAMES else [DEFAULT_PRESET]
    root = chain[-1]
    why: dict[str, str] = {}
    for n in reversed(chain):
        why.update(reasons(n))
    base, mine = preset(root).to_dict(), cfg.to_dict()
    lines = []
    for section in SECTIONS:
        for key, value in mine[section].items():
            name = f"{section}.{key}"
            if value != base[section][key]:
                note = f"  # {why[name]}" if name in why else ""
                lines.append(f"    {name}: {_show(value, section)} ({root}: {_show(base[section][key], section)}){note}")
            elif why.get(name, "").startswith("paper:") and root == cfg.preset:
                lines.append(f"    {name}: {_show(value, section)}  # {why[name]}")
    if not lines:
        return [f"  the paper's settings ({root} preset)"]
    return [f"  departs from the paper's {root} settings in:"] + lines


def _show(value, section: str = "") -> str:
    """A setting's value in a short form (D's layers as ``conv3x3 s2 96, ...``)."""
    if isinstance(value, list) and value and all(isinstance(v, dict) and "kind" in v for v in value):
        return ", ".join(f"{v['kind']}{v['kernel']}x{v['kernel']} s{v['stride']}"
                         + (f" {v['channels']}" if v["kind"] == "conv" else "") for v in value)
    if value is None:
        return "from the data" if section == "image" else "none"
    return "[] (derived from the image shape)" if value == [] else str(value)
