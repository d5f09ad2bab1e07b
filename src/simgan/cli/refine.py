"""``simgan refine``: refine a whole dataset with a trained run."""

from __future__ import annotations

import click

from .common import device_option, is_main_process, precision_option


@click.command()
@click.option("--run", "run_dir", required=True, type=click.Path(),
              help="A run directory written by `simgan train`, or a refiner exported by `simgan export`.")
@click.option("--input", "input_dir", required=True, type=click.Path(),
              help="Dataset to refine: a PNG folder, or the array format (DIR.shards), HDF5 or NPZ.")
@click.option("--out", required=True, type=click.Path(),
              help="Folder to create for the refined dataset (OUT.shards: the array format).")
@click.option("--format", "fmt", type=click.Choice(["auto", "png", "shards"]), default="auto", show_default=True,
              help="Output format: PNG files, or the array format (.npy shards, no codec per image); auto: shards "
                   "when OUT ends in .shards.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Images per batch (default: 16 on a CPU, 4096 on a GPU).")
@device_option
@precision_option
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Processes that decode and encode the image files (default: 0 on a CPU, where the model "
                   "needs the cores; all cores but one on a GPU). 0: in this process, in turn with the model.")
@click.option("--variants", type=click.IntRange(min=1), default=1, show_default=True,
              help="K refinements per image (NAME_v0.png ...), each with the image's labels; they differ when the "
                   "refiner takes a noise code (refiner.noise_channels) and, for a run with snapshots (train.snapshots), "
                   "variant v is refined by snapshot v mod their number (v = 0: the final refiner).")
@click.option("--trust-pickle", is_flag=True, default=False,
              help="Load an older run's pickled refiner.pt (can run code: only files you trust).")
@click.option("--quiet", is_flag=True, default=False, help="No progress bar.")
@click.option("--shard-size", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Array format: input images per shard (rounded to whole batches); a rerun resumes at shards.")
@click.option("--shard", metavar="I/N", default=None,
              help="Task I of a job array of N (counted from 0; SLURM: --array=0-{N-1} and "
                   "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT): refine every N-th batch into the shared "
                   "OUT.partial; the last task to finish publishes OUT. Together the tasks write what one process writes.")
def refine(run_dir, input_dir, out, fmt, shard_size, shard, batch_size, device, precision, workers, variants,
           trust_pickle, quiet):
    """Refine every image of a dataset; labels.jsonl lines are copied byte for byte.

    The output appears only when complete (work goes to OUT.partial). If interrupted, run the
    same command again to continue. Under torchrun the batches are split across processes; with
    --shard I/N, across the tasks of a job array.
    """
    from ..pipelines.refine import refine_dataset

    res = refine_dataset(run_dir, input_dir, out, batch_size=batch_size, device=device or "auto",
                         precision=precision or "auto", workers=workers, progress=not quiet, trust_pickle=trust_pickle,
                         echo=lambda m: click.echo(m, err=True), variants=variants, format=fmt,
                         shard_size=shard_size, shard=shard)
    if shard is not None:
        task = shard.replace(" ", "")
        click.echo(f"task {task} refined {res.images} images ({res.images_per_s:.0f} images/s, peak memory "
                   f"{res.peak_rss_mib:.0f} MiB); " + (f"{res.tasks_left} task{'s' if res.tasks_left > 1 else ''} of the job array not done "
                   f"yet: {res.out} appears when the last one finishes" if res.tasks_left else
                   f"every task is done: {res.out}"))
    elif res.images and is_main_process():
        click.echo(f"refined {res.images} images{f' x {variants} variants' if variants > 1 else ''} into {res.out} ({res.images_per_s:.0f} images/s, "
                   f"peak memory {res.peak_rss_mib:.0f} MiB)")
