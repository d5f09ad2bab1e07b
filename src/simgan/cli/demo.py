"""``simgan demo``: the paper's gaze experiment end to end on built-in data."""

from __future__ import annotations

import time

import click

from .common import device_option


@click.command()
@click.argument("name", type=click.Choice(["eyes", "digits"]), default="eyes", required=False)
@click.option("--quick", is_flag=True, default=False, help="Small data and few steps: under 5 minutes on a 2-core CPU.")
@click.option("--out", type=click.Path(), default=None, help="Folder to create (default: simgan-demo-DATE-TIME).")
@device_option
@click.option("--seed", type=int, default=0, show_default=True)
def demo(name, quick, out, device, seed):
    """NAME eyes (default): simulate synthetic and webcam-like eyes, train SimGAN (eyes preset)
    with unlabelled target images, refine the synthetic set, train gaze estimators on synthetic /
    refined / target and test them on held-out target images; write OUT/report.html and print the
    table.

    NAME digits: clean handwritten digits (scikit-learn) against other digits blended into real
    photographs (scikit-image), MNIST-M style; SimGAN with the generic preset's defaults; digit
    classifiers trained on synthetic / refined / labelled real images, tested on held-out blended
    digits; write OUT/report.html and OUT/metrics.json. Runs offline."""
    out = out or f"simgan-demo{'-digits' if name == 'digits' else ''}-{time.strftime('%Y%m%d-%H%M%S')}"
    if name == "digits":
        from ..demo_digits import run_digits_demo
        run_digits_demo(out, quick=quick, device=device or "auto", seed=seed, echo=click.echo)
        return
    from ..demo import run_demo

    run_demo(out, quick=quick, device=device or "auto", seed=seed, echo=click.echo)
