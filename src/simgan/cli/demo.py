"""``simgan demo``: the paper's gaze experiment end to end on built-in data."""

from __future__ import annotations

import time

import click

from .common import device_option


@click.command()
@click.option("--quick", is_flag=True, default=False, help="Small data and few steps: under 5 minutes on a 2-core CPU.")
@click.option("--out", type=click.Path(), default=None, help="Folder to create (default: simgan-demo-DATE-TIME).")
@device_option
@click.option("--seed", type=int, default=0, show_default=True)
def demo(quick, out, device, seed):
    """Simulate synthetic and webcam-like eyes, train SimGAN (eyes preset) with unlabelled target
    images, refine the synthetic set, train gaze estimators on synthetic / refined / target and
    test them on held-out target images; write OUT/report.html and print the table."""
    from ..demo import run_demo

    out = out or f"simgan-demo-{time.strftime('%Y%m%d-%H%M%S')}"
    run_demo(out, quick=quick, device=device or "auto", seed=seed, echo=click.echo)
