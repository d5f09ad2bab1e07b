"""``simgan demo``: the paper's gaze experiment (§3.1) end to end, on built-in data.

1. simulate labelled synthetic eyes (our UnityEyes stand-in), unlabelled target-domain eyes
   (our MPIIGaze stand-in: the same kind of scenes through a webcam), labelled target eyes for the
   upper bound, and a held-out labelled target test set;
2. train SimGAN with the ``eyes-demo`` preset (Algorithm 1; the real set's labels are never read);
3. refine the whole synthetic training set, labels kept;
4. train the §3.1 gaze estimator on synthetic, on refined and on labelled target images, and test
   all three on the held-out target images (Tables 2-3, Figure 7);
5. measure realism (a classifier two-sample test and a kernel distance, synthetic vs refined
   against real), label preservation (pupil shift, gaze-prediction change; §3.1) and artifacts;
6. write ``report.html`` (self-contained) and print the table.

The data sizes of the default and ``--quick`` runs are data (:data:`DEMO_SETTINGS`); what SimGAN
trains is the ``eyes-demo`` preset (``simgan presets eyes-demo``), shortened for ``--quick``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import report
from ..datasets import LABELS_FILE, ImageFolder, atomic_write_bytes
from .common import DemoRun, check_new_out, check_seed, demo_config


@dataclass
class DemoSettings:
    n_synthetic: int  # labelled synthetic training images (refined for the "refined" estimator)
    n_real: int  # unlabelled target images SimGAN learns from
    n_target_train: int  # labelled target images for the upper-bound estimator
    n_test: int  # held-out labelled target images every estimator is tested on
    gaze_epochs: float  # passes over the training set of each gaze estimator (early stopping may end sooner)
    preset: str = "eyes-demo"  # what SimGAN trains
    simgan: dict = field(default_factory=dict)  # overrides of the preset (nested: {"train": {...}})
    gaze: dict = field(default_factory=dict)  # other GazeTrainSettings fields
    realism_images: int = 2000  # images per side for the realism measures
    preservation_images: int = 1000  # pairs for the pupil-shift measure
    refine_batch: int = 256


DEMO_SETTINGS: dict[str, DemoSettings] = {
    "default": DemoSettings(n_synthetic=20000, n_real=20000, n_target_train=20000, n_test=2000, gaze_epochs=2.0),
    # every step on few images and few rounds: a smoke run, not a measurement
    "quick": DemoSettings(
        n_synthetic=1000, n_real=1000, n_target_train=1000, n_test=500, gaze_epochs=1.0,
        simgan={"train": {"disc_pretrain": 15, "steps": 30, "buffer_size": 640, "sample_every": 15,
                          "checkpoint_every": 15, "ema_decay": 0.9}},  # about the last sixth of R's updates
        gaze={"eval_every_images": 1024}, realism_images=500, preservation_images=300),
}

GAZE_HEADERS = ["trained on", "mean error (deg)", "median error (deg)", "% within 7 deg"]


@dataclass
class DemoResult:
    out: Path
    report: Path
    metrics: dict = field(default_factory=dict)


def gaze_rows(gaze: dict) -> list[list]:
    return [[name, f"{r['mean_deg']:.2f}", f"{r['median_deg']:.2f}", f"{r['within_pct']['7']:.1f}"]
            for name, r in gaze["results"].items()]


def run_demo(out: str | Path, *, quick: bool = False, device: str = "auto", seed: int = 0,
             echo=print, settings: DemoSettings | None = None, config_overrides: dict | None = None) -> DemoResult:
    """Run the demo into the new folder ``out``; returns the report path and every figure. The six
    numbered steps read top to bottom as the experiment of §3.1, each a call into the public API.
    ``config_overrides`` (nested dict) go over the demo's recipe: for measuring an option here."""
    from ..runtime import resolve_device
    from ..training import train

    out = check_new_out(out)
    resolve_device(device)  # a device that is not there is bad input: said before any work
    check_seed(seed)
    name = "quick" if quick else "default"
    s = settings or DEMO_SETTINGS[name]
    cfg = simgan_config(s, seed, device, config_overrides)
    run = DemoRun(out, echo)
    _simulate(run, s, seed)
    with run.step("train", f"2/6 training SimGAN ({s.preset} preset, Algorithm 1)"):
        trained = train(cfg, run.data / "synthetic", run.data / "real_unlabelled", out / "simgan", progress=True)
    _refine(run, trained.run, s, device)
    gaze = _gaze(run, s, seed, device)
    measures = _measure(run, s, cfg, seed, device)
    with run.step("report", "6/6 writing the report"):
        grid = _samples(run)
    minutes = run.finish()
    metrics = {"settings": {"demo": name, "seed": seed, "device": device, **asdict(s)},
               "simgan_config": cfg.to_dict(), "gaze": gaze, **measures, "timings_s": run.timings}
    atomic_write_bytes(out / "demo.json", json.dumps(metrics, indent=1, default=str).encode())
    page = write_report(out, metrics, grid, trained.run)
    echo(f"\nGaze error on held-out target images (seed {seed}, {name} demo, {minutes:.1f} min):\n"
         f"{report.text_table(GAZE_HEADERS, gaze_rows(gaze))}")
    echo(f"\nreport: {page}")
    return DemoResult(out, page, metrics)


def simgan_config(s: DemoSettings, seed: int, device: str, config_overrides: dict | None = None):
    """What the demo trains: its preset with its overrides, the seed and the device."""
    return demo_config(s.preset, s.simgan, seed=seed, device=device, config_overrides=config_overrides)


def _simulate(run: DemoRun, s: DemoSettings, seed: int) -> None:
    from ..simulators.eyes import simulate_eyes

    data, base = run.data, seed * 10
    with run.step("simulate", "1/6 simulating eyes: synthetic (labelled), target (webcam-like; unlabelled for SimGAN)"):
        simulate_eyes(data / "synthetic", s.n_synthetic, seed=base + 1, domain="synthetic", progress=False)
        simulate_eyes(data / "real_unlabelled", s.n_real, seed=base + 2, domain="target", progress=False)
        (data / "real_unlabelled" / LABELS_FILE).unlink()  # S+U learning: no real label exists
        simulate_eyes(data / "target_train", s.n_target_train, seed=base + 3, domain="target", progress=False)
        simulate_eyes(data / "target_test", s.n_test, seed=base + 4, domain="target", progress=False)
    run.echo(f"   {s.n_synthetic} synthetic, {s.n_real} unlabelled target, {s.n_target_train} labelled target, "
             f"{s.n_test} target test images ({run.timings['simulate']:.0f} s)")


def _refine(run: DemoRun, trained: Path, s: DemoSettings, device: str) -> None:
    from ..pipelines.refine import refine_dataset

    with run.step("refine", "3/6 refining the synthetic training set"):
        res = refine_dataset(trained, run.data / "synthetic", run.data / "refined", batch_size=s.refine_batch,
                             device=device, progress=True)
    run.echo(f"   {res.images} images refined ({res.images_per_s:.0f} images/s)")


def _gaze(run: DemoRun, s: DemoSettings, seed: int, device: str) -> dict:
    from ..evaluation import GazeTrainSettings, evaluate_gaze

    data = run.data
    with run.step("gaze", "4/6 gaze estimators (§3.1): trained on synthetic, refined, target; tested on held-out "
                          "target"):
        # Batch 64 rather than the paper's 512: on a CPU, far more updates for the same images.
        settings = GazeTrainSettings.budget(None, max_epochs=s.gaze_epochs, **s.gaze)
        return evaluate_gaze({"synthetic": data / "synthetic", "refined": data / "refined",
                              "target (upper bound)": data / "target_train"},
                             data / "target_test", run.out / "gaze", device=device, seed=seed, settings=settings,
                             echo=run.echo)


def _measure(run: DemoRun, s: DemoSettings, cfg, seed: int, device: str) -> dict:
    """Realism against target images, label preservation and artifacts (step 5)."""
    from ..evaluation import (evaluate_preservation, evaluate_realism, format_preservation_table,
                              format_realism_table)
    from ..evaluation.artifacts import artifacts_for_run

    data, out, echo = run.data, run.out, run.echo
    with run.step("measure", "5/6 realism (vs target) and label preservation (synthetic -> refined)"):
        realism = evaluate_realism(data / "target_train", {"synthetic": data / "synthetic", "refined": data / "refined"},
                                   out / "realism", device=device, seed=seed, max_images=s.realism_images, echo=echo)
        echo(format_realism_table(realism))
        preservation = evaluate_preservation(data / "synthetic", data / "refined", out / "preservation",
                                             device=device, seed=seed, max_pairs=s.preservation_images,
                                             estimator=out / "gaze" / "estimators" / "synthetic.pt", echo=echo)
        echo(format_preservation_table(preservation))
        idx = list(range(min(s.preservation_images, len(ImageFolder.open(data / "synthetic")))))
        artifacts = artifacts_for_run(cfg, ImageFolder.open(data / "synthetic").read_many(idx),
                                      ImageFolder.open(data / "refined").read_many(idx))
        echo(f"artifacts: periodic ratio {artifacts['periodic_ratio']:.2f} at D's stride {artifacts['stride']} px, "
             f"border ratio {artifacts['border_ratio']:.2f} (about 1: no grid, no frame)")
    return {"realism": realism, "preservation": preservation, "artifacts": artifacts}


def _samples(run: DemoRun) -> Path:
    from ..plots import save_grid

    show = list(range(10))
    sets = [ImageFolder.open(run.data / name).read_many(show) for name in ("synthetic", "refined", "target_test")]
    return save_grid(sets, ["synthetic", "refined", "target"], run.out / "samples.png", scale=4)


def write_report(out: Path, m: dict, grid: Path, trained: Path) -> Path:
    """``OUT/report.html``, self-contained (images inlined), in the order of the paper's §3.1."""
    s, t, cfg = m["settings"], m["simgan_config"]["train"], m["simgan_config"]
    smoke = (" These are a smoke run's figures (few images and rounds); `simgan demo` gives the experiment's."
             if s["demo"] == "quick" else "")
    return report.write_page(out / "report.html", "simgan demo",
                             "simgan demo: the gaze experiment of Shrivastava et al. (CVPR 2017, §3.1)", [
        report.note(f"{s['demo']} settings, seed {s['seed']}, total {m['timings_s']['total'] / 60:.1f} min. Synthetic "
                    "eyes come from simgan's simulator (clean renders, like UnityEyes); the target domain is the same "
                    "kind of scenes seen by a simulated laptop webcam (our stand-in for MPIIGaze). SimGAN learned from "
                    f"unlabelled target images only.{smoke}"),
        report.section("Gaze estimation on held-out target images (Tables 2-3)",
                       report.table(GAZE_HEADERS, gaze_rows(m["gaze"])),
                       report.note("The paper: synthetic 11.2 deg, refined 7.8 deg mean error on MPIIGaze; 62.3% vs "
                                   "69.4% within 7 deg."),
                       report.img(out / "gaze" / "gaze_cdf.png", "cumulative error curves", "700px")),
        report.section("Samples (Figure 5)", report.note("Rows: synthetic, the same images refined, and target "
                                                         "images (not the same scenes)."),
                       report.img(grid, "synthetic / refined / target")),
        report.section("Realism against target images", report.table(report.REALISM_HEADERS,
                                                                      report.realism_rows(m["realism"])),
                       report.note(report.REALISM_NOTE)),
        report.section("Label preservation (§3.1)",
                       report.table(["measure", "mean", "std", "pairs"], _preservation_rows(m["preservation"])),
                       report.note("The paper: pupil centre moved 1.1 +- 0.8 px (eye width 55 px).")),
        report.section("Artifacts of refinement", report.table(["measure", "value"],
                                                               report.artifact_rows(m["artifacts"])),
                       report.note(report.ARTIFACT_NOTE)),
        report.training_section(trained),
        report.section("Settings", report.table(["setting", "value"], [
            ["synthetic / unlabelled target / labelled target / test images",
             f"{s['n_synthetic']} / {s['n_real']} / {s['n_target_train']} / {s['n_test']}"],
            ["SimGAN", f"{cfg['preset']} preset; R pretrain {t['refiner_pretrain']}, D pretrain {t['disc_pretrain']}, "
                       f"T {t['steps']}, K_g {t['kg']}, K_d {t['kd']}, batch {t['batch_size']}, history "
                       f"{t['buffer_size']}, {t['optimizer']} lr {t['lr']}, lambda {cfg['loss']['lambda_reg']}, psi "
                       f"{cfg['loss']['feature']}"],
            ["gaze estimator", f"§3.1 network, batch 64, Adam lr 1e-3, early stopping, at most {s['gaze_epochs']:g} "
                               f"epochs each {json.dumps(s['gaze']) if s['gaze'] else ''}"],
            ["timings (s)", ", ".join(f"{k} {v:.0f}" for k, v in m["timings_s"].items())]])),
    ])


def _preservation_rows(p: dict) -> list[list]:
    rows = []
    pupil = p.get("pupil") or {}
    if pupil.get("n_eligible"):
        rows.append(["pupil shift, censored median (failures as inf) (px)", f"{pupil['median_px_censored']:.2f}",
                     f"{100 * pupil['failure_rate']:.1f}% failed or beyond {pupil['search_radius_px']:.0f} px",
                     pupil["n_eligible"]])
    if pupil.get("n_measured"):
        rows.append(["pupil centre shift over fitted pairs (px)", f"{pupil['mean_px']:.2f}", f"{pupil['std_px']:.2f}",
                     pupil["n_measured"]])
    g = p.get("gaze") or {}
    if g:
        rows.append(["gaze prediction change (deg)", f"{g['change_mean_deg']:.2f}", f"{g['change_std_deg']:.2f}",
                     p.get("n_pairs", "")])
    return rows
