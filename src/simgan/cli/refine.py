"""``simgan refine``: refine a whole dataset with a trained run."""

from __future__ import annotations

import click

from .common import device_option, is_main_process, precision_option


@click.command()
@click.option("--run", "run_dir", required=True, type=click.Path(), help="A run directory written by `simgan train`.")
@click.option("--input", "input_dir", required=True, type=click.Path(), help="Dataset to refine (interchange format).")
@click.option("--out", required=True, type=click.Path(), help="Folder to create for the refined dataset.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@device_option
@precision_option
@click.option("--threads", type=click.IntRange(min=1), default=4, show_default=True, help="Image decode/encode threads.")
@click.option("--variants", type=click.IntRange(min=1), default=1, show_default=True,
              help="K refinements per image (NAME_v0.png ...), each with the image's labels; they differ when the "
                   "refiner takes noise (refiner.noise_channels).")
@click.option("--quiet", is_flag=True, default=False, help="No progress bar.")
def refine(run_dir, input_dir, out, batch_size, device, precision, threads, variants, quiet):
    """Refine every image of a dataset; labels.jsonl lines are copied byte for byte.

    The output appears only when complete (work goes to OUT.partial). If interrupted, run the
    same command again to continue. Under torchrun the batches are split across processes.
    """
    from ..refine import refine_dataset

    res = refine_dataset(run_dir, input_dir, out, batch_size=batch_size, device=device or "auto",
                         precision=precision or "auto", threads=threads, progress=not quiet,
                         echo=lambda m: click.echo(m, err=True), variants=variants)
    if res.images and is_main_process():
        click.echo(f"refined {res.images} images{f' x {variants} variants' if variants > 1 else ''} into {res.out} ({res.images_per_s:.0f} images/s, "
                   f"peak memory {res.peak_rss_mib:.0f} MiB)")
