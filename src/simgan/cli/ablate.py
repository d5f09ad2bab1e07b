"""``simgan ablate``: the paper's ablation variants (§3.3) with equal budgets."""

from __future__ import annotations

import click

from ..config import PRESET_NAMES
from .common import device_option, set_nested


@click.command()
@click.option("--synthetic", required=True, type=click.Path(), help="Labelled synthetic images.")
@click.option("--real", required=True, type=click.Path(), help="Unlabelled real images.")
@click.option("--test", "test_dir", required=True, type=click.Path(), help="Labelled real images to test gaze on.")
@click.option("--out", required=True, type=click.Path(), help="Folder to create.")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default="eyes", show_default=True)
@click.option("--config", "config_file", type=click.Path(), default=None, help="YAML settings over the preset.")
@click.option("--steps", type=click.IntRange(min=0), default=None, help="T for every variant.")
@click.option("--variants", default=None, metavar="LIST",
              help="Comma-separated subset of: full, no-history, global-disc, lambda-x0.1, lambda-x10, psi-gradients.")
@click.option("--gaze-max-seconds", type=click.FloatRange(min=1), default=None,
              help="Training-time budget of each gaze estimator.")
@click.option("--seed", type=int, default=0, show_default=True)
@device_option
def ablate(synthetic, real, test_dir, out, preset, config_file, steps, variants, gaze_max_seconds, seed, device):
    """Train the full method and its ablations with the same data, steps and seed; refine with
    each; write a table of realism and downstream gaze error, and each variant's sample grid."""
    from ..experiments.ablation import run_ablation
    from ..config import resolve_config
    from ..evaluation import GazeTrainSettings

    overrides: dict = {}
    if steps is not None:
        set_nested(overrides, "train", "steps", steps)
    base = resolve_config(preset, config_file=config_file, overrides=overrides)
    gs = GazeTrainSettings(max_seconds=gaze_max_seconds) if gaze_max_seconds else None
    run_ablation(synthetic, real, test_dir, out, base=base,
                 variants=[v.strip() for v in variants.split(",")] if variants else None,
                 gaze_settings=gs, seed=seed, device=device or "auto", echo=click.echo)
