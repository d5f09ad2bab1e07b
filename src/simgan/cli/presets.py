"""``simgan presets``: the YAML recipes (:mod:`simgan.presets`), what departs from the paper in each, and
the networks a preset builds."""

from __future__ import annotations

import click


@click.command()
@click.argument("name", required=False)
@click.option("--config", "config_file", type=click.Path(), default=None,
              help="Show the effect of a YAML settings file on the preset.")
@click.option("--size", default=None, metavar="WxH", help="Image size to lay out D's patch map for (generic preset).")
@click.option("--yaml", "as_yaml", is_flag=True, default=False, help="Print the full settings as YAML.")
def presets(name, config_file, size, as_yaml):
    """List the presets and every setting that departs from the paper's, or show one in detail:
    its networks, receptive fields, patch map and options (eyes: §3.1, hands: §3.2, generic: any
    shape, eyes-demo / hands-demo / digits-demo / video-demo: what the demos train)."""
    from ..errors import SimganError
    from ..models.summary import describe_settings

    size_wh = None
    if size:
        try:
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise SimganError(f"--size must look like 55x35, got {size!r}") from None
        if not (1 <= w <= 65535 and 1 <= h <= 65535):
            raise SimganError(f"--size {size}: width and height must be whole numbers from 1 to 65535")
        size_wh = (w, h)
    for line in describe_settings(name, config_file=config_file, size=size_wh, as_yaml=as_yaml):
        click.echo(line)
