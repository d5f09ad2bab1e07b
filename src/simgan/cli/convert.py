"""``simgan convert``: UnityEyes, MPIIGaze, NYU hand pose, HDF5 or NPZ -> the interchange format or
the array format; and between the interchange format and the array format, both ways."""

from __future__ import annotations

import os

import click

from ..errors import SimganError


def _size(ctx, param, value):
    """``--size``: ``"default"`` when absent, else ``(w, h)`` or ``None`` for native."""
    if value is None:
        return "default"
    from ..datasets.common import parse_size

    try:
        return parse_size(value)
    except SimganError as exc:
        raise SimganError(f"--size: {exc}") from None


@click.command("convert")
@click.argument("src", type=click.Path(path_type=str))
@click.option("--out", "-o", required=True, type=click.Path(path_type=str),
              help="New folder to write (PNG images + labels.jsonl, or the array format for a name ending in "
                   ".shards); must not exist.")
@click.option("--to", type=click.Choice(["auto", "png", "shards"]), default="auto", show_default=True,
              help="Output format: a PNG folder, or the array format (.npy shards + labels.jsonl); auto: shards "
                   "when OUT ends in .shards.")
@click.option("--shard-size", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Array format: images per shard.")
@click.option("--format", "fmt", type=click.Choice(["auto", "unityeyes", "mpiigaze", "nyu", "hdf5", "npz", "shards"]),
              default="auto", show_default=True, help="Input format; auto recognises it.")
@click.option("--size", callback=_size, metavar="WxH|native",
              help="Output size. Default: 55x35 for UnityEyes and MPIIGaze (the paper's eye images), "
                   "224x224 hand crops for NYU, the stored size for HDF5/NPZ; 'native' keeps the stored size.")
@click.option("--gray/--keep-channels", default=None,
              help="One gray channel, or keep RGB. Default: gray for UnityEyes/MPIIGaze, kept for HDF5/NPZ.")
@click.option("--limit", type=click.IntRange(min=1), help="Convert only the first N images.")
@click.option("--crop-scale", type=click.FloatRange(min=0, min_open=True), default=1.5, show_default=True,
              help="UnityEyes: crop width over the distance between the eye corners.")
@click.option("--landmarks/--no-landmarks", default=True, show_default=True,
              help="UnityEyes: keep eyelid, caruncle and iris landmarks (crop pixels) in the labels.")
@click.option("--eyes", type=click.Choice(["both", "left", "right"]), default="both", show_default=True,
              help="MPIIGaze: which eyes to read.")
@click.option("--flip", type=click.Choice(["right", "left", "none"]), default="right", show_default=True,
              help="MPIIGaze: mirror these eyes (with their labels); 'right' makes every image a left "
                   "eye like UnityEyes' renders.")
@click.option("--images-key", help="HDF5/NPZ: the images array (default: 'images' or the only image-like array).")
@click.option("--nyu-kind", type=click.Choice(["real", "synthetic"]), default="real", show_default=True,
              help="NYU: the Kinect frames (depth_*.png) or the synthetic renders (synthdepth_*.png).")
@click.option("--camera", "cameras", type=click.IntRange(1, 3), multiple=True,
              help="NYU: camera(s) to read (repeat; default all three: 1 frontal, 2 and 3 side views).")
@click.option("--threads", type=click.IntRange(min=1), default=min(4, os.cpu_count() or 1), show_default=True,
              help="Threads decoding and encoding images.")
def convert(src, out, to, shard_size, fmt, size, gray, limit, crop_scale, landmarks, eyes, flip, images_key, nyu_kind,
            cameras, threads):
    """Convert SRC (UnityEyes, MPIIGaze, NYU hand pose, HDF5, NPZ, or the array format) to the
    interchange format in OUT; with OUT.shards (or --to shards), to the array format, from any of
    those or from a PNG folder. Between the two, labels.jsonl lines are kept byte for byte.

    UnityEyes renders are cropped around the eye and their gaze converted to camera coordinates
    (x right, y down, z away); MPIIGaze normalized eyes keep their gaze and head pose, with right
    eyes mirrored by default. NYU hand pose (a folder with joint_data.mat and depth PNGs): square
    crops around the hand resized to 224x224 (§3.2), 16-bit depth in mm, the 14 evaluation joints
    in crop pixels. HDF5/NPZ: an images array plus per-image label arrays.
    Every command also reads these formats directly; converting once saves decoding work.
    """
    from ..datasets import open_dataset
    from ..datasets.conversion import convert as run

    path = run(src, out, format=fmt, size=size, gray=gray, limit=limit, crop_scale=crop_scale,
               landmarks=landmarks, eyes=eyes, flip=flip, images_key=images_key, threads=threads,
               progress=True, nyu_kind=nyu_kind, cameras=cameras or None, to=to, shard_size=shard_size)
    ds = open_dataset(path)
    labels = "with labels" if ds.labelled else "without labels"
    click.echo(f"wrote {len(ds)} images ({ds.spec.describe()}) {labels} to {path}")
