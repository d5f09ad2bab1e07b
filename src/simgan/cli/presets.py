"""``simgan presets``: the paper's settings as data, with the networks' receptive fields."""

from __future__ import annotations

import click


@click.command()
@click.argument("name", required=False)
@click.option("--config", "config_file", type=click.Path(), default=None,
              help="Show the effect of a YAML settings file on the preset.")
@click.option("--size", default=None, metavar="WxH", help="Image size to lay out D's patch map for (generic preset).")
@click.option("--yaml", "as_yaml", is_flag=True, default=False, help="Print the full settings as YAML.")
def presets(name, config_file, size, as_yaml):
    """List the presets (eyes: §3.1, hands: §3.2, generic), or show one in detail."""
    from ..config import PRESETS, resolve_config
    from ..models.discriminator import patch_geometry
    from ..errors import SimganError
    from ..models.refiner import Refiner, count_parameters, refiner_flops, refiner_receptive_field

    size_wh = None
    if size:
        try:
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise SimganError(f"--size must look like 55x35, got {size!r}") from None
        if not (1 <= w <= 65535 and 1 <= h <= 65535):
            raise SimganError(f"--size {size}: width and height must be whole numbers from 1 to 65535")
        size_wh = (w, h)
    names = [name] if name else ([None] if config_file else list(PRESETS))
    for n in names:
        cfg = resolve_config(n, config_file=config_file)
        n = cfg.preset
        if as_yaml:
            click.echo(cfg.to_yaml())
            continue
        img = cfg.image
        h, w = img.height, img.width
        if size_wh:
            w, h = size_wh
        if h and w:
            from ..config import for_image_shape
            cfg = for_image_shape(cfg, h, w)
        r, d, t = cfg.refiner, cfg.discriminator, cfg.train
        rf = refiner_receptive_field(r)
        ch = img.channels or 1
        params = count_parameters(Refiner(r, ch))
        shape = f"{w}x{h}, {ch} channel(s), {img.bit_depth or 8}-bit" if h else "any size (taken from the data)"
        click.echo(f"{n}: images {shape}")
        click.echo(f"  refiner R: conv{r.kernel_size}x{r.kernel_size} {r.width}, {r.num_blocks} ResNet blocks, conv1x1 "
                   f"{ch}{' + input' if r.residual else ', tanh'}; {params:,} parameters; receptive field {rf}x{rf} px"
                   + (f"; {refiner_flops(r, ch, h, w) / 1e9:.2f} GFLOP per image" if h else ""))
        layers = ", ".join(f"{l.kind}{l.kernel}x{l.kernel} s{l.stride}" + (f" {l.channels}" if l.kind == "conv" else "")
                           for l in d.layers) or "derived from the image size (give --size)"
        click.echo(f"  discriminator D ({d.kind}): {layers}, conv1x1 2, softmax")
        if h:
            g = patch_geometry(d, h, w)
            click.echo(f"    one patch sees {g.receptive_field}x{g.receptive_field} px; map {g.map_width}x{g.map_height} "
                       f"= {g.patches} patches (stride {g.stride} px)")
        click.echo(f"  Algorithm 1: R pretrain {t.refiner_pretrain}, D pretrain {t.disc_pretrain}, K_g {t.kg}, K_d {t.kd}, "
                   f"T {t.steps}; batch {t.batch_size}, history {t.buffer_size if t.history else 'off'}; "
                   f"{t.optimizer} lr {t.lr:g}; lambda {cfg.loss.lambda_reg:g} ({cfg.loss.reduction} over patches and "
                   f"pixels), psi {cfg.loss.feature}")
