"""What a preset builds: R's and D's layers, parameters, receptive fields and patch map (§2.1,
§2.2, Figure 3), and Algorithm 1's settings, as ``simgan presets`` prints them."""

from __future__ import annotations

from ..config import PRESETS, SimGANConfig, for_image_shape, resolve_config
from .discriminator import patch_geometry
from .refiner import Refiner, count_parameters, refiner_flops, refiner_receptive_field


def describe_settings(name: str | None = None, *, config_file=None, size: tuple[int, int] | None = None,
                      as_yaml: bool = False) -> list[str]:
    """Lines describing preset ``name`` (all presets when neither ``name`` nor ``config_file`` is
    given), with a settings file applied, laid out for images of ``size`` = (width, height)."""
    names = [name] if name else ([None] if config_file else list(PRESETS))
    lines: list[str] = []
    for n in names:
        cfg = resolve_config(n, config_file=config_file)
        lines += [cfg.to_yaml()] if as_yaml else describe_config(cfg, size)
    return lines


def describe_config(cfg: SimGANConfig, size: tuple[int, int] | None = None) -> list[str]:
    img = cfg.image
    w, h = size or (img.width, img.height)
    if h and w:
        cfg = for_image_shape(cfg, h, w)
    r, d, t = cfg.refiner, cfg.discriminator, cfg.train
    rf = refiner_receptive_field(r)
    ch = img.channels or 1
    params = count_parameters(Refiner(r, ch))
    shape = f"{w}x{h}, {ch} channel(s), {img.bit_depth or 8}-bit" if h else "any size (taken from the data)"
    lines = [f"{cfg.preset}: images {shape}",
             f"  refiner R: conv{r.kernel_size}x{r.kernel_size} {r.width}, {r.num_blocks} ResNet blocks, conv1x1 "
             f"{ch}{' + input' if r.residual else ', tanh'}; {params:,} parameters; receptive field {rf}x{rf} px"
             + (f"; {refiner_flops(r, ch, h, w) / 1e9:.2f} GFLOP per image" if h else "")]
    layers = ", ".join(f"{l.kind}{l.kernel}x{l.kernel} s{l.stride}" + (f" {l.channels}" if l.kind == "conv" else "")
                       for l in d.layers) or "derived from the image size (give --size)"
    lines.append(f"  discriminator D ({d.kind}): {layers}, conv1x1 2, softmax")
    if h:
        g = patch_geometry(d, h, w)
        lines.append(f"    one patch sees {g.receptive_field}x{g.receptive_field} px; map {g.map_width}x{g.map_height} "
                     f"= {g.patches} patches (stride {g.stride} px)")
    lines.append(f"  Algorithm 1: R pretrain {t.refiner_pretrain}, D pretrain {t.disc_pretrain}, K_g {t.kg}, K_d {t.kd}, "
                 f"T {t.steps}; batch {t.batch_size}, history {t.buffer_size if t.history else 'off'}; "
                 f"{t.optimizer} lr {t.lr:g}; lambda {cfg.loss.lambda_reg:g} ({cfg.loss.reduction} over patches and "
                 f"pixels), psi {cfg.loss.feature}")
    return lines
