"""``simgan evaluate``: gaze accuracy, realism and label preservation of refined images (§3.1).

Each subcommand wraps one function of :mod:`simgan.evaluation`, writes ``OUT/metrics.json``
(refusing to replace an existing one without ``--overwrite``) and prints a table. Progress goes
to stderr, the table to stdout.
"""

from __future__ import annotations

import click

from .common import options

from ..errors import SimganError

DEVICE_HELP = "auto (CUDA if present), cpu, cuda or cuda:N."
SEED_HELP = "Random seed of the models trained here and of the images drawn."


def _echo(quiet: bool):
    if quiet:
        return lambda _msg: None
    return lambda msg: click.echo(msg, err=True)


def _separate(inputs: dict, out) -> None:
    from ..paths import check_no_overlap
    check_no_overlap(inputs, {"--out": out}, partial=False)


def _per_training_set(train_help: str, test_help: str, out_help: str):
    """The options of a command that trains one task model per --train set and tests on --test."""
    return options(
        click.option("--train", "train", multiple=True, required=True, metavar="DIR", help=train_help),
        click.option("--test", required=True, metavar="DIR", help=test_help),
        click.option("--out", required=True, metavar="DIR", help=out_help),
        click.option("--name", "names", multiple=True, metavar="NAME",
                     help="Name of each training set, in --train order (default: folder names)."),
        click.option("--device", default="auto", show_default=True, metavar="cpu|cuda[:N]", help=DEVICE_HELP),
        click.option("--seed", default=0, show_default=True, type=int, help=SEED_HELP),
    )


@click.group("evaluate", context_settings={"help_option_names": ["-h", "--help"]})
def evaluate():
    """Measure refinement: gaze accuracy, realism, label preservation (§3.1), hand pose (§3.2), any label's task."""
    # The API leaves torch's thread count to its caller; the command uses every core.
    from ..runtime import set_threads

    set_threads()


@evaluate.command("gaze")
@_per_training_set("Labelled training set (repeat: one gaze estimator per set).",
                   "Labelled test set, e.g. real images.", "Folder for metrics.json, gaze_cdf.png, estimators/.")
@click.option("--max-epochs", type=float, default=None, help="Stop training after this many epochs (default 30).")
@click.option("--max-minutes", type=float, default=None, help="Wall-clock budget per estimator.")
@click.option("--batch-size", type=int, default=None,
              help="Training batch (default 512, as in §3.1). On a CPU, 64 converges in far fewer images.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT/metrics.json.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def gaze_cmd(train, test, out, names, device, seed, max_epochs, max_minutes, batch_size, overwrite, quiet):
    """Train the §3.1 gaze estimator on each --train set, test on --test (Figure 7, Tables 2-3).

    Labels: "gaze" [x, y, z] (camera coordinates), or "pitch" and "yaw" in radians.
    """
    from ..evaluation.common import default_names
    from ..evaluation.common import positive
    from ..evaluation.gaze import GazeTrainSettings, evaluate_gaze, format_gaze_table

    _separate({**{f"--train {t}": t for t in train}, "--test": test}, out)
    labels = default_names(list(train), list(names), "training set")
    metrics = evaluate_gaze(dict(zip(labels, train)), test, out, device=device, seed=seed,
                            settings=GazeTrainSettings.from_flags(max_minutes, batch_size),
                            max_epochs=positive(max_epochs, "--max-epochs"), overwrite=overwrite, echo=_echo(quiet))
    click.echo(format_gaze_table(metrics))


@evaluate.command("realism")
@click.option("--real", required=True, metavar="DIR", help="Real images (labels not needed).")
@click.option("--candidate", "candidates", multiple=True, required=True, metavar="DIR",
              help="Images to compare with the real ones (repeat: synthetic, refined, ...).")
@click.option("--out", required=True, metavar="DIR", help="Folder for metrics.json.")
@click.option("--name", "names", multiple=True, metavar="NAME",
              help="Name of each candidate set, in --candidate order (default: folder names).")
@click.option("--max-images", default=5000, show_default=True, type=int,
              help="Use at most this many random images of each set.")
@click.option("--no-c2st", is_flag=True, help="Skip the classifier two-sample test.")
@click.option("--no-kid", is_flag=True, help="Skip the kernel distance.")
@click.option("--fid/--no-fid", default=True, show_default=True,
              help="FID and KID on Inception-v3 features (needs `pip install simgan[fid]`; skipped with a note "
                   "without it). Slow on a CPU: about 0.1-0.5 s per image.")
@click.option("--reference", is_flag=True,
              help="Also compare two halves of the real set: what 'indistinguishable' measures as.")
@click.option("--device", default="auto", show_default=True, metavar="cpu|cuda[:N]", help=DEVICE_HELP)
@click.option("--seed", default=0, show_default=True, type=int, help=SEED_HELP)
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT/metrics.json.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def realism_cmd(real, candidates, out, names, max_images, no_c2st, no_kid, fid, reference, device, seed, overwrite,
                quiet):
    """How real each --candidate set looks: classifier two-sample test and kernel distance.

    The automated counterpart of the paper's visual Turing test (Table 1).
    """
    from ..evaluation.common import default_names
    from ..evaluation.realism import evaluate_realism, format_realism_table

    _separate({"--real": real, **{f"--candidate {c}": c for c in candidates}}, out)
    if max_images < 1:
        raise SimganError("--max-images must be >= 1")
    labels = default_names(list(candidates), list(names), "candidate set")
    metrics = evaluate_realism(real, dict(zip(labels, candidates)), out, device=device, seed=seed,
                               max_images=max_images, c2st=not no_c2st, kid=not no_kid, reference=reference,
                               overwrite=overwrite, inception=fid,
                               echo=_echo(quiet))
    click.echo(format_realism_table(metrics))


@evaluate.command("preservation")
@click.option("--synthetic", required=True, metavar="DIR", help="The synthetic images that were refined.")
@click.option("--refined", required=True, metavar="DIR", help="Their refined versions (same relative paths).")
@click.option("--out", required=True, metavar="DIR", help="Folder for metrics.json and pupil_shift_hist.png.")
@click.option("--estimator", default=None, metavar="PATH",
              help="Saved gaze estimator (OUT/estimators/NAME.pt of `evaluate gaze`); default: train one.")
@click.option("--no-gaze", is_flag=True, help="Skip the gaze-prediction check (no estimator training).")
@click.option("--no-pupil", is_flag=True, help="Skip the pupil ellipse fit (for images that are not eyes).")
@click.option("--max-pairs", default=2000, show_default=True, type=int, help="Measure at most this many pairs (0: all).")
@click.option("--max-epochs", type=float, default=None, help="Epoch budget when training an estimator.")
@click.option("--max-minutes", type=float, default=None, help="Wall-clock budget when training an estimator.")
@click.option("--batch-size", type=int, default=None, help="Batch when training an estimator (default 512).")
@click.option("--device", default="auto", show_default=True, metavar="cpu|cuda[:N]", help=DEVICE_HELP)
@click.option("--seed", default=0, show_default=True, type=int, help=SEED_HELP)
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT/metrics.json.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def preservation_cmd(synthetic, refined, out, estimator, no_gaze, no_pupil, max_pairs, max_epochs, max_minutes,
                     batch_size, device, seed, overwrite, quiet):
    """Label preservation: pupil-centre shift (ellipse fit) and gaze-prediction change per pair (§3.1)."""
    from ..evaluation.common import positive
    from ..evaluation.gaze import GazeTrainSettings
    from ..evaluation.preservation import evaluate_preservation, format_preservation_table

    _separate({"--synthetic": synthetic, "--refined": refined, "--estimator": estimator}, out)
    if max_pairs < 0:
        raise SimganError("--max-pairs must be >= 0 (0: all pairs)")
    if no_gaze and estimator is not None:
        raise SimganError("--no-gaze and --estimator contradict each other")
    metrics = evaluate_preservation(synthetic, refined, out, estimator=None if no_gaze else estimator,
                                    train_estimator=not no_gaze, max_pairs=max_pairs or None, pupil=not no_pupil,
                                    device=device, seed=seed, settings=GazeTrainSettings.from_flags(max_minutes, batch_size),
                                    max_epochs=positive(max_epochs, "--max-epochs"), overwrite=overwrite,
                                    echo=_echo(quiet))
    click.echo(format_preservation_table(metrics))


@evaluate.command("pose")
@_per_training_set("Labelled training set with \"uv\" joints (repeat: one pose estimator per set).",
                   "Labelled test set, e.g. real depth images.", "Folder for metrics.json, pose_pck.png, estimators/.")
@click.option("--epochs", type=float, default=None, help="Passes over each training set (default 30).")
@click.option("--max-minutes", type=float, default=None, help="Wall-clock budget per estimator.")
@click.option("--batch-size", type=int, default=None, help="Training batch (default 16).")
@click.option("--channels", type=int, default=None, help="Hourglass width (default 256, Newell et al.).")
@click.option("--heatmap", type=int, default=None, help="Heatmap size (default 64, §3.2).")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT/metrics.json.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def pose_cmd(train, test, out, names, device, seed, epochs, max_minutes, batch_size, channels, heatmap, overwrite,
             quiet):
    """Train the §3.2 stacked-hourglass hand pose estimator on each --train set, test on --test.

    Prints the percentage of joints within 5 pixels (Table 4; distances rescaled to a 224-pixel
    image) and writes the d = 0..20 curves (Figure 9). Labels: "uv", a list of [u, v] joint
    positions in pixels of the image (as written by `simgan simulate hands` and `simgan convert`).
    """
    from ..evaluation.common import default_names
    from ..evaluation.pose import PoseTrainSettings, evaluate_pose, format_pose_table

    s = PoseTrainSettings.from_flags(epochs, max_minutes, batch_size, channels, heatmap)
    labels = default_names(list(train), list(names), "training set")
    metrics = evaluate_pose(dict(zip(labels, train)), test, out, device=device, seed=seed, settings=s,
                            overwrite=overwrite, echo=_echo(quiet))
    click.echo(format_pose_table(metrics))


@evaluate.command("task")
@click.option("--train", "train", multiple=True, required=True, metavar="DIR",
              help="Labelled training set (repeat), in the order synthetic, refined, ..., real (the upper bound).")
@click.option("--test", required=True, metavar="DIR", help="Labelled test set, e.g. real images.")
@click.option("--label", required=True, metavar="KEY", help="The label to predict: a key of labels.jsonl.")
@click.option("--kind", type=click.Choice(["class", "vector", "points"]), default=None,
              help="class (accuracy), vector (mean error) or points ([[x, y], ...]: pixel error, PCK@5); "
                   "default: inferred from the labels, and said.")
@click.option("--out", required=True, metavar="DIR", help="Folder for metrics.json.")
@click.option("--name", "names", multiple=True, metavar="NAME",
              help="Name of each training set, in --train order (default: folder names).")
@click.option("--seeds", type=click.IntRange(min=1), default=2, show_default=True,
              help="Models trained per training set (seeds 0, 1, ...).")
@click.option("--steps", type=click.IntRange(min=1), default=800, show_default=True,
              help="Mini-batches of training per model.")
@click.option("--device", default="auto", show_default=True, metavar="cpu|cuda[:N]", help=DEVICE_HELP)
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT/metrics.json.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def task_cmd(train, test, label, kind, out, names, seeds, steps, device, overwrite, quiet):
    """Train the same small model on each --train set's --label and test it on --test: does
    training on refined images do better on real ones, for your own labels?

    Prints each set's figure (mean over the seeds and per seed), its gain over the first --train
    set, and, with three or more sets, the share of the gap between the first and the last it
    closes.
    """
    from ..evaluation.common import default_names
    from ..evaluation.task import TaskSettings, evaluate_task, format_task_table

    _separate({**{f"--train {t}": t for t in train}, "--test": test}, out)
    labels = default_names(list(train), list(names), "training set")
    metrics = evaluate_task(dict(zip(labels, train)), test, label, kind=kind, out=out, seeds=seeds,
                            settings=TaskSettings(steps=steps), device=device, overwrite=overwrite, echo=_echo(quiet))
    click.echo(format_task_table(metrics))
