"""``simgan demo digits``: SimGAN on real data with an appearance gap, end to end, offline.

The domains (:mod:`simgan.simulators.digits`): clean handwritten digits (synthetic, labelled)
against other digits blended into real photographs (real, unlabelled), MNIST -> MNIST-M style
(Ganin & Lempitsky 2015). SimGAN changes appearance, not shape, and this is such a gap.

1. build the three sets (synthetic, real unlabelled, held-out test) from scikit-learn's digits
   and scikit-image's photographs;
2. train SimGAN with the ``generic`` preset's defaults (only the run length is set here);
3. refine the synthetic set, labels kept (``refine_variants`` noise draws per image);
4. train one digit classifier (:class:`simgan.evaluation.task.TaskNet`) on synthetic, on refined and
   on labelled real images (the upper bound), and test each on the held-out blended digits (what
   ``simgan evaluate task`` does with ``OUT/data/{synthetic,refined,real,test}``);
5. measure realism with the classifier two-sample test of :mod:`simgan.evaluation.realism`;
6. write ``OUT/report.html`` and ``OUT/metrics.json``.

``gap_closed = (acc_refined - acc_synthetic) / (acc_real - acc_synthetic)``: 0 when refining
changed nothing, 1 when refined images train as well as labelled real ones.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import report
from ..datasets import ImageFolder, write_dataset
from ..evaluation.common import write_metrics
from .common import DemoRun, check_new_out, demo_config


@dataclass
class DigitsDemoSettings:
    preset: str = "digits-demo"  # what SimGAN trains: the generic preset with a run length
    simgan: dict = field(default_factory=dict)  # overrides of the preset
    classifier_steps: int = 800
    classifier_batch: int = 64
    limit: int | None = None  # digits used (None: all 1,797)
    c2st_images: int = 1000
    c2st: dict = field(default_factory=dict)  # C2STSettings fields
    # Refinements per synthetic image for the refined-trained classifier (`simgan refine
    # --variants K`; the paper's "several refined images per synthetic image"): with the generic
    # preset's noise code and snapshots each draws another appearance. The two-sample test, the
    # change and the artifact measures use the first refinement of each image.
    refine_variants: int = 4


DIGITS_DEMO_SETTINGS: dict[str, DigitsDemoSettings] = {
    "default": DigitsDemoSettings(),
    # every step on fewer rounds: a smoke run, not a measurement
    "quick": DigitsDemoSettings(
        simgan={"train": {"disc_pretrain": 30, "steps": 60, "buffer_size": 640, "sample_every": 30,
                          "checkpoint_every": 30}},
        classifier_steps=300, c2st={"max_steps": 300}),
}


def run_digits_demo(out: str | Path, *, quick: bool = False, device: str = "auto", seed: int = 0, echo=print,
                    settings: DigitsDemoSettings | None = None, config_overrides: dict | None = None) -> dict:
    """Run the digits demo into the new folder ``out``; returns the metrics written to
    ``OUT/metrics.json``. ``config_overrides`` (nested dict) go over the demo's preset: for
    measuring options on this domain, not for the demo itself. The numbered steps read top to
    bottom as the experiment, each a call into the public API."""
    from ..runtime import resolve_device
    from ..simulators.digits import make_digits_domains
    from ..training import train

    out = check_new_out(out)
    name = "quick" if quick else "default"
    s = settings or DIGITS_DEMO_SETTINGS[name]
    dev = resolve_device(device)
    cfg = demo_config(s.preset, s.simgan, seed=seed, device=device, config_overrides=config_overrides)
    run = DemoRun(out, echo)
    with run.step("data", "1/5 building the digits domains (scikit-learn digits, scikit-image photographs)"):
        d = make_digits_domains(seed, limit=s.limit)
        write_dataset(run.data / "synthetic", d.synthetic, [{"label": int(v)} for v in d.synthetic_labels])
        write_dataset(run.data / "real_unlabelled", d.real)  # S+U learning: SimGAN reads no real label
        # the labelled real set (the upper bound) and the test set, for `simgan evaluate task`
        write_dataset(run.data / "real", d.real, [{"label": int(v)} for v in d.real_labels])
        write_dataset(run.data / "test", d.test, [{"label": int(v)} for v in d.test_labels])
    echo(f"   {len(d.synthetic)} synthetic, {len(d.real)} real (unlabelled), {len(d.test)} held-out test images, "
         f"{d.synthetic.shape[2]}x{d.synthetic.shape[1]} RGB")
    with run.step("train", f"2/5 training SimGAN ({s.preset} preset: the generic defaults)"):
        trained = train(cfg, run.data / "synthetic", run.data / "real_unlabelled", out / "simgan", progress=False,
                        echo=echo)
    refined_all = _refine(run, trained.run, s, device)
    refined = refined_all[::max(1, s.refine_variants)]
    acc, gap_closed = _classifiers(run, d, refined_all, s, seed, dev)
    c2st, looks = _realism(run, d, refined, s, seed, dev)
    metrics = _metrics(run, d, refined, acc, gap_closed, c2st, cfg, trained.run, s, name, seed, dev)
    metrics["looks"] = looks
    write_metrics(out, metrics)
    _report(run, d, refined, metrics, trained.run)
    return metrics


def _refine(run: DemoRun, trained: Path, s: DigitsDemoSettings, device: str) -> np.ndarray:
    """Every synthetic digit refined ``refine_variants`` times; the refinements of one image adjacent."""
    from ..pipelines.refine import refine_dataset

    with run.step("refine", "3/5 refining the synthetic set"):
        refine_dataset(trained, run.data / "synthetic", run.data / "refined", device=device, progress=False,
                       echo=run.echo, variants=max(1, s.refine_variants))
        return ImageFolder.open(run.data / "refined").load()


def _classifiers(run: DemoRun, d, refined_all: np.ndarray, s: DigitsDemoSettings, seed: int, dev) -> tuple[dict, float]:
    """Step 4: one classifier per training set, tested on the held-out real digits; the share of
    the synthetic -> real gap that refining closed."""
    from ..evaluation.task import TaskSettings, train_and_test

    K = max(1, s.refine_variants)
    task = TaskSettings(steps=s.classifier_steps, batch_size=s.classifier_batch)
    acc = {}
    with run.step("classifiers", "4/5 digit classifiers trained on synthetic / refined / labelled real, tested on "
                                 "held-out real"):
        for key, (imgs, labels) in {"synthetic": (d.synthetic, d.synthetic_labels),
                                    "refined": (refined_all, np.repeat(d.synthetic_labels, K)),
                                    "real": (d.real, d.real_labels)}.items():
            acc[key] = train_and_test(imgs, labels, d.test, d.test_labels, "class", outputs=10, settings=task,
                                      seed=seed, device=dev)["accuracy"]
            run.echo(f"   trained on {key}: {100 * acc[key]:.1f}% on held-out real digits")
    gap = acc["real"] - acc["synthetic"]
    return acc, (acc["refined"] - acc["synthetic"]) / gap if abs(gap) > 1e-9 else float("nan")


def _realism(run: DemoRun, d, refined: np.ndarray, s: DigitsDemoSettings, seed: int, dev) -> tuple[dict, dict]:
    """Step 5: the two-sample test of each set against the real digits, and the frame and looks
    measures (:func:`simgan.evaluation.artifacts.look_measures`)."""
    from ..evaluation.artifacts import look_measures
    from ..evaluation.realism import C2STSettings, classifier_two_sample_test

    with run.step("realism", "5/5 realism: classifier two-sample test against the real set"):
        rng = np.random.default_rng(seed)
        real_s = d.real[rng.permutation(len(d.real))[:s.c2st_images]]
        sets = (("synthetic", d.synthetic), ("refined", refined))
        c2st = {key: classifier_two_sample_test(real_s, imgs[:s.c2st_images], settings=C2STSettings(**s.c2st),
                                                seed=seed, device=dev, name=key) for key, imgs in sets}
        return c2st, {key: look_measures(imgs[:s.c2st_images], real_s) for key, imgs in sets}


def _metrics(run: DemoRun, d, refined, acc, gap_closed, c2st, cfg, trained: Path, s, name, seed, dev) -> dict:
    from ..evaluation.artifacts import artifacts_for_run
    from ..training.rundir import RunDir

    change = float(np.abs(refined.astype(np.float32) - d.synthetic.astype(np.float32)).mean() / 127.5)
    artifacts = artifacts_for_run(cfg, d.synthetic, refined)
    run.finish()
    summary = json.loads((trained / "summary.json").read_text()) if (trained / "summary.json").exists() else {}
    return {"accuracy": acc, "gap_closed": gap_closed, "c2st": {k: v["accuracy"] for k, v in c2st.items()},
            "c2st_detail": c2st, "mean_abs_change": change, "artifacts": artifacts,
            "seconds": run.timings["total"], "timings_s": run.timings,
            "settings": {"demo": name, "seed": seed, "device": str(dev), "working_size": d.synthetic.shape[1],
                         "n_synthetic": len(d.synthetic), "n_real": len(d.real), "n_test": len(d.test), **asdict(s)},
            "simgan_config": RunDir(trained).saved_config().to_dict(), "verdict": summary.get("verdict")}


def _report(run: DemoRun, d, refined: np.ndarray, m: dict, trained: Path) -> None:
    """``OUT/report.html`` and the console summary."""
    from ..plots import save_grid

    acc, c2st, s = m["accuracy"], m["c2st_detail"], m["settings"]
    show = list(range(0, len(d.synthetic), max(1, len(d.synthetic) // 12)))[:12]
    grid = save_grid([d.synthetic[show], refined[show], d.real[:12], d.test[:12]],
                     ["synthetic", "refined", "real", "test"], run.out / "samples.png", scale=4)
    rows = [[k, f"{100 * acc[k]:.1f}%"] for k in ("synthetic", "refined", "real")]
    size = s["working_size"]
    smoke = " A smoke run: `simgan demo digits` gives the experiment's figures." if s["demo"] == "quick" else ""
    page = report.write_page(run.out / "report.html", "simgan demo digits",
                             "simgan demo digits: clean digits -> digits on real photographs", [
        report.note(f"{s['demo']} settings, seed {s['seed']}, {m['seconds'] / 60:.1f} min. Synthetic: scikit-learn's "
                    f"handwritten digits, white on black, upsampled to {size}x{size}. Real (unlabelled for SimGAN): "
                    "other digits blended into random patches of scikit-image's photographs (|patch - digit| per "
                    "channel, as MNIST-M). Test: blended digits from a held-out third of the digits. SimGAN: the "
                    f"generic preset's defaults.{smoke}"),
        report.section("Digit classification on held-out real images", report.table(["trained on", "accuracy"], rows),
                       f"<p>Gap closed by refining: <b>{100 * m['gap_closed']:.1f}%</b> of the synthetic -> real "
                       "accuracy gap.</p>"),
        report.section("Realism (classifier two-sample test against real images)",
                       report.table(["images", "two-sample accuracy", "95% interval", "n per class", "frame (x real)",
                                     "looks' spacing (x real)"],
                                    [[k, f"{100 * v['accuracy']:.1f}%",
                                      f"{100 * v['ci95'][0]:.1f}-{100 * v['ci95'][1]:.1f}%", v["n_per_class"],
                                      f"{m['looks'][k]['frame_ratio']:.2f}", f"{m['looks'][k]['neighbour_ratio']:.2f}"]
                                     for k, v in c2st.items()]),
                       report.note(f"50% means a fresh CNN cannot tell the set from real images. Mean |refined - "
                                   f"synthetic| = {m['mean_abs_change']:.3f} in [-1, 1]. " + report.LOOKS_NOTE)),
        report.section("Artifacts of refinement", report.table(["measure", "value"],
                                                               report.artifact_rows(m["artifacts"]))),
        f"<p><b>Verdict:</b> {html.escape(str(m.get('verdict') or ''))}</p>",
        report.section("Samples", report.note("Rows: synthetic, the same images refined, real (other digits), test."),
                       report.img(grid, "samples")),
        report.training_section(trained, grids=0),
    ])
    run.echo("\n" + report.text_table(["trained on", "held-out accuracy"], rows))
    run.echo(f"gap closed {100 * m['gap_closed']:.1f}%; two-sample accuracy synthetic "
             f"{100 * c2st['synthetic']['accuracy']:.1f}%, refined {100 * c2st['refined']['accuracy']:.1f}%; "
             f"{m['seconds'] / 60:.1f} min")
    run.echo(f"report: {page}")
