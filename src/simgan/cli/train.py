"""``simgan train``: Algorithm 1 on a synthetic set and an unlabelled real set.

The settings flags are derived from the config's declarations (:func:`simgan.config.setting`):
each field declared with a ``flag`` becomes one option, its type and range checked by click, its
help the declared one. Every other setting is reachable with ``--set section.key=value``.
"""

from __future__ import annotations

import click

from ..config import PRESET_NAMES, config_fields, parse_set
from ..errors import Interrupted
from .common import is_main_process, set_nested


def _option(section: str, f) -> tuple[str, click.Option]:
    """The click option of one declared config field, and the parameter name it fills."""
    m = f.metadata
    dest = f"{section}__{f.name}"
    kwargs = {"default": None, "help": m["help"]}
    if m["flag_value"] is not None:
        return dest, click.Option([m["flag"], dest], flag_value=m["flag_value"], is_flag=True, default=None,
                                  help=m["help"])
    if f.type in ("bool", bool):
        name = m["flag"][2:]
        return dest, click.Option([f"--{name}/--no-{name}", dest], **kwargs)
    if m["choices"] is not None:
        kwargs["type"] = click.Choice([c for c in m["choices"] if c is not None])
    elif "int" in str(f.type):
        kwargs["type"] = click.IntRange(min=m["ge"], max=m["le"])
    elif "float" in str(f.type):
        low, low_open = (m["gt"], True) if m["gt"] is not None else (m["ge"], False)
        high, high_open = (m["lt"], True) if m["lt"] is not None else (m["le"], False)
        kwargs["type"] = click.FloatRange(min=low, max=high, min_open=low_open, max_open=high_open)
    if m["metavar"]:
        kwargs["metavar"] = m["metavar"]
    return dest, click.Option([m["flag"], dest], **kwargs)


# the sections in the order --help lists their flags: the run first, the networks last
FLAG_SECTIONS = ("train", "loss", "task", "temporal", "refiner", "discriminator")
SETTING_OPTIONS = dict(_option(section, f) for section in FLAG_SECTIONS for f in config_fields(section)
                       if f.metadata.get("flag"))


def with_setting_flags(command):
    """Add one option per flagged config field to ``command``, after ``--set``, in declaration order."""
    at = [p.name for p in command.params].index("assignments") + 1
    command.params[at:at] = list(SETTING_OPTIONS.values())
    return command


def overrides_from(values: dict) -> dict:
    """The nested settings the flags given on the command line set (None: not given)."""
    out: dict = {}
    for dest, value in values.items():
        if value is not None:
            section, key = dest.split("__", 1)
            set_nested(out, section, key, value)
    return out


def where_it_stopped(out, checkpoint_every: int) -> str:
    """Where an interrupted run can go on from, and the command that does it."""
    import json
    from pathlib import Path

    info = Path(out) / "refiner.json"
    if info.is_file():
        step = json.loads(info.read_text()).get("step")
        return f"{out} keeps its checkpoint of step {step}; go on with the same command and --resume"
    if (Path(out) / "config.yaml").is_file():
        return (f"{out} has no checkpoint yet (the first comes at step {checkpoint_every}); the same command with "
                f"--resume starts it over")
    return f"{out} was not created"


@click.command()
@click.option("--synthetic", required=True, type=click.Path(), help="Labelled synthetic images (labels are not read).")
@click.option("--real", required=True, type=click.Path(), help="Unlabelled real images.")
@click.option("--out", required=True, type=click.Path(), help="Run directory to create (or to continue with --resume).")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default=None,
              help="The recipe to start from (`simgan presets` lists them): eyes (§3.1), hands (§3.2), generic "
                   "(any shape), or a demo's recipe. Default: eyes.")
@click.option("--config", "config_file", type=click.Path(), default=None, help="YAML file of settings over the preset.")
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Any setting, e.g. --set train.lr_disc=5e-5 (repeatable; applied last).")
@click.option("--resume", is_flag=True, default=False, help="Continue the run in --out exactly where it stopped.")
@click.option("--trust-pickle", is_flag=True, default=False,
              help="Resume a checkpoint of an older simgan that needs pickle (can run code: only files you trust).")
@click.option("--tensorboard/--no-tensorboard", default=None,
              help="Also write RUN/tb/ for `tensorboard --logdir RUN` (default: when the tensorboard package is installed).")
@click.option("--quiet", is_flag=True, default=False, help="No progress bar.")
def train(synthetic, real, out, preset, config_file, assignments, resume, trust_pickle, tensorboard, quiet,
          **settings):
    """Train a refiner R against a local discriminator D (Algorithm 1).

    Settings come from the preset, then --config, then the flags below, then --set. Writes
    RUN/config.yaml, RUN/metrics.jsonl, RUN/samples/ (grids of synthetic / refined / real and loss
    curves), RUN/checkpoints/last.pt and RUN/refiner.safetensors (+ refiner.json). For several
    processes (DDP): `torchrun --nproc_per_node N -m simgan -- train ...`.
    """
    from ..presets import merge_settings
    from ..training import resolve_train_config, train as train_api

    overrides = merge_settings(overrides_from(settings), parse_set(assignments))
    cfg = resolve_train_config(out, preset_name=preset, config_file=config_file, overrides=overrides, resume=resume)
    try:
        result = train_api(cfg, synthetic, real, out, resume=resume, progress=not quiet, trust_pickle=trust_pickle,
                           tensorboard=tensorboard)
    except KeyboardInterrupt:
        raise Interrupted(where_it_stopped(out, cfg.train.checkpoint_every)) from None
    if is_main_process():
        click.echo(f"trained to step {result.step}: {result.run}/refiner.safetensors "
                   f"(samples in {result.run}/samples, metrics in {result.run}/metrics.jsonl, verdict in "
                   f"{result.run}/summary.json)")


train = with_setting_flags(train)
