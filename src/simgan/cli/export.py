"""``simgan export``: a run's refiner as one safetensors file to share."""

from __future__ import annotations

import click


@click.command()
@click.option("--run", "run_dir", required=True, type=click.Path(), help="A run directory written by `simgan train`.")
@click.option("--out", required=True, type=click.Path(), help="The file to write, FILE.safetensors (must not exist).")
@click.option("--trust-pickle", is_flag=True, default=False,
              help="Export an older run that has only a pickled refiner.pt (can run code: only runs you trust).")
def export(run_dir, out, trust_pickle):
    """Write the run's refiner (weights, config and step) as one .safetensors file.

    The file loads without pickle, so it is safe to share and to receive; `simgan refine --run
    FILE.safetensors` refines with it.
    """
    from ..paths import check_no_overlap
    from ..training.rundir import export_refiner

    check_no_overlap({"--run": run_dir}, {"--out": out}, partial=False)
    path = export_refiner(run_dir, out, trust_pickle=trust_pickle)
    click.echo(f"wrote {path}")
