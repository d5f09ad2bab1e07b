"""``simgan simulate``: render labelled images with a built-in simulator.

``simgan simulate eyes --n N --out DIR [--seed S] [--domain synthetic|target]
[--height H --width W]`` renders the gaze experiment's eyes (§3.1) into a new dataset folder in
the interchange format. ``synthetic`` are clean renders (the paper's UnityEyes side), ``target``
the same kind of scenes seen by a laptop webcam (the MPIIGaze side: use them as the unlabelled
real set, and a held-out part of them to test gaze estimators).

``simgan simulate hands --n N --out DIR [--seed S] [--domain synthetic|target] [--size 224]
[--views 1|3]`` renders the hand-pose experiment's depth images (§3.2): an articulated hand as
16-bit depth in millimetres, with the 14 NYU evaluation joints as labels; ``target`` is the same
kind of scenes through a structured-light (Kinect-like) sensor.
"""

from __future__ import annotations

import time

import click

from .common import options


@click.group()
def simulate():
    """Render labelled synthetic (or target-domain) images."""


def _render_options(n_help: str, domain_help: str, n_required: bool = True):
    """The options every simulator takes: how many, where, the seed and the domain."""
    return options(
        click.option("--n", "n", type=int, required=n_required, help=n_help),
        click.option("--out", "out", type=click.Path(file_okay=False), required=True,
                     help="New dataset folder (must not exist): PNG files, or the array format for a name "
                          "ending in .shards."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Random seed; the same seed gives the same images and labels."),
        click.option("--domain", type=click.Choice(["synthetic", "target"]), default="synthetic", show_default=True,
                     help=domain_help),
    )


@simulate.command()
@_render_options("Number of images to render (with --sequences: S x T, or leave it out).",
                 "synthetic: clean renders; target: webcam-like images of the same kind of scenes.", n_required=False)
@click.option("--height", type=int, default=35, show_default=True, help="Image height in pixels.")
@click.option("--width", type=int, default=55, show_default=True, help="Image width in pixels.")
@click.option("--sequences", type=int, default=None,
              help="Render S sequences of moving eyes instead (fixations, saccades, pursuit, blinks), with "
                   "'sequence' and 'frame' labels and the ground-truth flow.npy and occlusion.npy.")
@click.option("--frames", type=int, default=None, help="Frames per sequence, at 30 frames/s (with --sequences).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def eyes(n, out, seed, domain, height, width, sequences, frames, quiet):
    """Render N labelled gray eye images (gaze, head pose, pupil, iris, eyelids) into OUT.

    Labels go to OUT/labels.jsonl: "gaze" is a unit 3-vector in camera coordinates (x right,
    y down, z away from the camera), "pitch"/"yaw" are MPIIGaze's angles of it in radians.
    With --sequences S --frames T: S sequences of T frames of a moving eye, for refining videos.
    """
    from ..errors import SimganError
    from ..simulators.eyes import simulate_eyes

    if n is None and sequences is None and frames is None:
        raise SimganError("give --n N (images), or --sequences S and --frames T")
    t0 = time.perf_counter()
    path = simulate_eyes(out, n, seed=seed, domain=domain, height=height, width=width, progress=not quiet,
                         sequences=sequences, frames=frames)
    dt = time.perf_counter() - t0
    count = n if sequences is None or frames is None else sequences * frames
    what = f"{sequences} sequences of {frames} frames, " if sequences is not None else ""
    click.echo(f"rendered {what}{count} {domain} eye images ({width}x{height}) in {dt:.1f} s "
               f"({count / dt:.0f} images/s) -> {path}")


@simulate.command()
@_render_options("Number of hand poses to render (images: N x views; with --sequences: S x T, or leave it out).",
                 "synthetic: exact depth of the hand alone; target: the same kind of scenes through a "
                 "structured-light sensor (Kinect-like).", n_required=False)
@click.option("--size", type=int, default=224, show_default=True, help="Image width and height in pixels.")
@click.option("--views", type=click.Choice(["1", "3"]), default="1", show_default=True,
              help="3: every pose also from two side cameras (+-55 deg), as NYU's three Kinects.")
@click.option("--sequences", type=int, default=None,
              help="Render S sequences instead: poses blended from one grasp pose to another while the hand turns "
                   "and drifts slowly, with 'sequence' and 'frame' labels; a target sequence keeps its scene and "
                   "draws the sensor's noise and edge dropouts afresh per frame.")
@click.option("--frames", type=int, default=None, help="Frames per sequence (with --sequences).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def hands(n, out, seed, domain, size, views, sequences, frames, quiet):
    """Render N labelled depth images of a hand (16-bit PNG, millimetres, 0 = no reading) into OUT.

    Labels go to OUT/labels.jsonl: the 14 NYU evaluation joints as "uv" (pixels of the written
    image), "depth" (mm) and "xyz" (camera space, mm), the camera "intrinsics" and the "pose".
    With --sequences S --frames T: S sequences of T frames of a moving hand, for refining videos.
    """
    from ..errors import SimganError
    from ..simulators.hands import simulate_hands

    if n is None and sequences is None and frames is None:
        raise SimganError("give --n N (poses), or --sequences S and --frames T")
    t0 = time.perf_counter()
    path = simulate_hands(out, n, seed=seed, domain=domain, size=size, views=int(views), progress=not quiet,
                          sequences=sequences, frames=frames)
    dt = time.perf_counter() - t0
    total = n * int(views) if sequences is None else sequences * frames
    what = f"{sequences} sequences of {frames} frames, " if sequences is not None else ""
    click.echo(f"rendered {what}{total} {domain} hand depth images ({size}x{size}, {views} view(s)) in {dt:.1f} s "
               f"({total / dt:.0f} images/s, PNG writing included) -> {path}")
