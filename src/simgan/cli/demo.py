"""``simgan demo [eyes|digits|hands|video]``: the paper's experiments end to end on built-in data.

``eyes`` (the default) is the gaze experiment (§3.1); ``digits`` an appearance gap on real data
(clean digits -> digits on real photographs); ``hands`` the hand pose experiment (§3.2, Table 4);
``video`` refining eye sequences without flicker (§5's future work).
"""

from __future__ import annotations

import click

from ..experiments import DEMOS
from .common import device_option


@click.command()
@click.argument("name", type=click.Choice(DEMOS), default="eyes", required=False)
@click.option("--quick", is_flag=True, default=False,
              help="Small data and few steps (eyes, digits, video: under 5 minutes on a 2-core CPU; hands: under 10).")
@click.option("--full", is_flag=True, default=False,
              help="hands only: the paper's settings (224x224, the hands preset, NYU's data sizes; for a GPU).")
@click.option("--out", type=click.Path(), default=None, help="Folder to create (default: simgan-demo[-NAME]-DATE-TIME).")
@device_option
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the data, the training and the tests.")
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Change a setting of the demo's recipe (repeatable), e.g. --set task.weight=1.")
def demo(name, quick, full, out, device, seed, assignments):
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
    write OUT/report.html and OUT/metrics.json. The default runs at 64x64 (see the report).

    NAME video: refining eye sequences (the paper's future work): simulate moving eyes with their
    true flow and webcam-like target sequences, train SimGAN, refine the sequences per frame (a
    noise code per frame) and as sequences (one per sequence); measure flicker (warping error),
    pupil jitter, realism and gaze; write OUT/report.html (the sequences animated side by side)
    and OUT/metrics.json."""
    from ..config import parse_set
    from ..experiments import run_demo

    run_demo(name, out, quick=quick, full=full, device=device or "auto", seed=seed, echo=click.echo,
             config_overrides=parse_set(assignments) or None)
