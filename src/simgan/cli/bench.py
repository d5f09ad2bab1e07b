"""``simgan bench``: training and refining speed against this machine's roofline."""

from __future__ import annotations

import click

from .common import device_option


@click.command()
@device_option
@click.option("--precisions", default=None, metavar="LIST",
              help="Comma-separated precisions to time (default: fp32, plus bf16/fp16 where native).")
@click.option("--quick", is_flag=True, default=False, help="Small counts: a smoke run of every measurement.")
@click.option("--with-compile", is_flag=True, default=False, help="Also time training with torch.compile.")
@click.option("--json", "json_out", type=click.Path(), default=None, help="Also write the figures to this JSON file.")
def bench(device, precisions, quick, with_compile, json_out):
    """Measure the roofline, simulator, training and refining speed, and refine memory at 10k and
    100k images (eyes preset). Takes about 20 minutes on a 2-core CPU (--quick: about 2)."""
    from ..experiments.bench import main_bench

    main_bench(json_out, device=device or "auto", quick=quick, with_compile=with_compile,
               precisions=[p.strip() for p in precisions.split(",")] if precisions else None, echo=click.echo)
