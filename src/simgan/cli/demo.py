"""``simgan demo``: the paper's experiments end to end on built-in data.

``simgan demo`` is the gaze experiment (§3.1); ``simgan demo hands`` the hand pose experiment
(§3.2, Table 4).
"""

from __future__ import annotations

import time

import click

from .common import device_option


@click.group(invoke_without_command=True)
@click.option("--quick", is_flag=True, default=False, help="Small data and few steps: under 5 minutes on a 2-core CPU.")
@click.option("--out", type=click.Path(), default=None, help="Folder to create (default: simgan-demo-DATE-TIME).")
@device_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
def demo(ctx, quick, out, device, seed):
    """Simulate synthetic and webcam-like eyes, train SimGAN (eyes preset) with unlabelled target
    images, refine the synthetic set, train gaze estimators on synthetic / refined / target and
    test them on held-out target images; write OUT/report.html and print the table.

    `simgan demo hands` runs the hand pose experiment (§3.2) instead.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..demo import run_demo

    out = out or f"simgan-demo-{time.strftime('%Y%m%d-%H%M%S')}"
    run_demo(out, quick=quick, device=device or "auto", seed=seed, echo=click.echo)


@demo.command("hands")
@click.option("--quick", is_flag=True, default=False, help="Few images and steps (aim: under 10 minutes on a 2-core CPU).")
@click.option("--full", is_flag=True, default=False,
              help="The paper's settings: 224x224, the hands preset, NYU's data sizes (for a GPU).")
@click.option("--out", type=click.Path(), default=None, help="Folder to create (default: simgan-demo-hands-DATE-TIME).")
@device_option
@click.option("--seed", type=int, default=0, show_default=True)
def hands(quick, full, out, device, seed):
    """Table 4 end to end: simulate synthetic and Kinect-like depth hands, train SimGAN (hands
    preset) with unlabelled target images, refine the synthetic set, train stacked-hourglass pose
    estimators on synthetic / refined / real (and 3x views), test on held-out target images; write
    OUT/report.html and OUT/metrics.json. The default runs at 64x64 (see the report)."""
    from ..demo_hands import run_hands_demo
    from ..errors import SimganError

    if quick and full:
        raise SimganError("--quick and --full contradict each other; give one")
    if seed < 0:
        raise SimganError(f"--seed must be >= 0, got {seed}")
    mode = "quick" if quick else "full" if full else "default"
    out = out or f"simgan-demo-hands-{time.strftime('%Y%m%d-%H%M%S')}"
    run_hands_demo(out, mode=mode, device=device or "auto", seed=seed, echo=click.echo)
