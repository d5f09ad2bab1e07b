"""``simgan demo [eyes|digits|hands]``: the paper's experiments end to end on built-in data.

``eyes`` (the default) is the gaze experiment (§3.1); ``digits`` an appearance gap on real data
(clean digits -> digits on real photographs); ``hands`` the hand pose experiment (§3.2, Table 4).
"""

from __future__ import annotations

import time

import click

from .common import device_option


@click.command()
@click.argument("name", type=click.Choice(["eyes", "digits", "hands"]), default="eyes", required=False)
@click.option("--quick", is_flag=True, default=False,
              help="Small data and few steps (eyes, digits: under 5 minutes on a 2-core CPU; hands: under 10).")
@click.option("--full", is_flag=True, default=False,
              help="hands only: the paper's settings (224x224, the hands preset, NYU's data sizes; for a GPU).")
@click.option("--out", type=click.Path(), default=None, help="Folder to create (default: simgan-demo[-NAME]-DATE-TIME).")
@device_option
@click.option("--seed", type=int, default=0, show_default=True)
def demo(name, quick, full, out, device, seed):
    """NAME eyes (default): simulate synthetic and webcam-like eyes, train SimGAN (eyes preset)
    with unlabelled target images, refine the synthetic set, train gaze estimators on synthetic /
    refined / target and test them on held-out target images; write OUT/report.html and print the
    table.

    NAME digits: clean handwritten digits (scikit-learn) against other digits blended into real
    photographs (scikit-image), MNIST-M style; SimGAN with the generic preset's defaults; digit
    classifiers trained on synthetic / refined / labelled real images, tested on held-out blended
    digits; write OUT/report.html and OUT/metrics.json. Runs offline.

    NAME hands: Table 4 end to end: simulate synthetic and Kinect-like depth hands, train SimGAN
    (hands preset) with unlabelled target images, refine the synthetic set, train stacked-hourglass
    pose estimators on synthetic / refined / real (and 3x views), test on held-out target images;
    write OUT/report.html and OUT/metrics.json. The default runs at 64x64 (see the report)."""
    from ..errors import SimganError

    if full and name != "hands":
        raise SimganError("--full is for `simgan demo hands` (the paper's 224x224 settings)")
    if quick and full:
        raise SimganError("--quick and --full contradict each other; give one")
    if seed < 0:
        raise SimganError(f"--seed must be >= 0, got {seed}")
    out = out or f"simgan-demo{'' if name == 'eyes' else '-' + name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if name == "digits":
        from ..experiments.demo_digits import run_digits_demo
        run_digits_demo(out, quick=quick, device=device or "auto", seed=seed, echo=click.echo)
    elif name == "hands":
        from ..experiments.demo_hands import run_hands_demo
        mode = "quick" if quick else "full" if full else "default"
        run_hands_demo(out, mode=mode, device=device or "auto", seed=seed, echo=click.echo)
    else:
        from ..experiments.demo_eyes import run_demo
        run_demo(out, quick=quick, device=device or "auto", seed=seed, echo=click.echo)
