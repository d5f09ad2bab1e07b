"""``simgan demo``: the paper's gaze experiment (§3.1) end to end, on built-in data.

1. simulate labelled synthetic eyes (our UnityEyes stand-in), unlabelled target-domain eyes
   (our MPIIGaze stand-in: the same kind of scenes through a webcam), labelled target eyes for the
   upper bound, and a held-out labelled target test set;
2. train SimGAN with the ``eyes`` preset (Algorithm 1; the real set's labels are never read);
3. refine the whole synthetic training set, labels kept;
4. train the §3.1 gaze estimator on synthetic, on refined and on labelled target images, and test
   all three on the held-out target images (Tables 2-3, Figure 7);
5. measure realism (a classifier two-sample test and a kernel distance, synthetic vs refined
   against real) and label preservation (pupil shift, gaze-prediction change; §3.1);
6. write ``report.html`` (self-contained) and print the table.

The settings of the default and ``--quick`` runs are data (:data:`DEMO_SETTINGS`).
"""

from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..datasets import LABELS_FILE, ImageFolder, atomic_write_bytes
from .. import tables
from ..config import PRESETS
from ..errors import SimganError


# The eyes preset's D trunk (§3.1) with its first convolution at stride 1 instead of 2.
_EYES_D = PRESETS["eyes"].discriminator.layers
EYE_DEMO_DISCRIMINATOR = [replace(_EYES_D[0], stride=1), *_EYES_D[1:]]


@dataclass
class DemoSettings:
    n_synthetic: int  # labelled synthetic training images (refined for the "refined" estimator)
    n_real: int  # unlabelled target images SimGAN learns from
    n_target_train: int  # labelled target images for the upper-bound estimator
    n_test: int  # held-out labelled target images every estimator is tested on
    simgan: dict  # overrides of the eyes preset (nested: {"train": {...}, "loss": {...}})
    gaze_epochs: float  # passes over the training set of each gaze estimator (early stopping may end sooner)
    gaze: dict = field(default_factory=dict)  # other GazeTrainSettings fields
    realism_images: int = 2000  # images per side for the realism measures
    preservation_images: int = 1000  # pairs for the pupil-shift measure
    refine_batch: int = 256


def _simgan(disc_pretrain: int, steps: int, buffer_size: int, every: int) -> dict:
    """The demo's overrides of the eyes preset: the same recipe, scaled (no refiner pre-training,
    K_g = 2, K_d = 1, batch 32, learning rate 2e-4, λ = 0.1); samples and checkpoints ``every`` steps.

    Departures from the paper's R, D and psi, because the demo's target domain, like MPIIGaze, is
    histogram-equalised per image (README, "Defaults on a new domain", has every figure):

    * R sees per-image context (``refiner.global_context``) and the self-regularisation compares
      standardized images (``loss.feature: standardized``), so R may change each image's tone and
      contrast but not its edges (gaze 8.30 / 8.69 deg against 9.18 / 10.89 without, seeds 0 / 1,
      bf16);
    * R's output is equalised per image, as the target's are (``refiner.equalize``), R pads by
      reflection (``refiner.padding: reflect``: no frame), and D's first convolution runs at
      stride 1 (the paper's trunk otherwise), so D sees the finest texture that the equaliser
      amplifies, which a stride-2 first layer aliases. With all three, the demo's SimGAN steps run
      one by one (one thread, bf16): two-sample accuracy refined vs target 85.45% / 87.10%
      against 98.0% / 99.3% without, KID x1e3 0.1 / 0.2 against 6.7 / 25.9 (seeds 0 / 1);
    * refining uses a running average of R's weights (``train.ema_decay``, Salimans et al.
      2016; Yazıcı et al., ICLR 2019), over the last eighth of R's updates or so (0.99 at 400
      rounds of K_g = 2): the same steps one by one gave 58.0% / 83.0% instead of 85.45% / 87.10%
      (seeds 0 / 1), with less of the fine texture that the equaliser amplifies; ``simgan demo``
      itself: 57.5% / 72.7% against 83.75% / 87.9%, gaze 7.47 / 7.42 deg (bf16).

    The eyes preset itself stays the paper's."""
    kg = 2
    return {"train": {"refiner_pretrain": 0, "disc_pretrain": disc_pretrain, "steps": steps, "kg": kg, "kd": 1,
                      "batch_size": 32, "buffer_size": buffer_size, "lr": 2e-4, "sample_every": every,
                      "checkpoint_every": every, "ema_decay": round(1.0 - 8.0 / (kg * steps), 6)},
            "refiner": {"global_context": True, "equalize": True, "padding": "reflect"},
            "discriminator": {"layers": [asdict(layer) for layer in EYE_DEMO_DISCRIMINATOR]},
            "loss": {"lambda_reg": 0.1, "feature": "standardized"}}


DEMO_SETTINGS: dict[str, DemoSettings] = {
    # About 35 minutes on a 2-core CPU.
    "default": DemoSettings(
        n_synthetic=20000, n_real=20000, n_target_train=20000, n_test=2000,
        simgan=_simgan(disc_pretrain=100, steps=400, buffer_size=3200, every=100), gaze_epochs=2.0,
    ),
    # Under 5 minutes on a 2-core CPU: every step runs, on few images and few iterations.
    "quick": DemoSettings(
        n_synthetic=2000, n_real=2000, n_target_train=2000, n_test=500,
        simgan=_simgan(disc_pretrain=20, steps=40, buffer_size=640, every=20), gaze_epochs=1.0, gaze={"eval_every_images": 1024},
        realism_images=500, preservation_images=300, refine_batch=256,
    ),
}


@dataclass
class DemoResult:
    out: Path
    report: Path
    metrics: dict = field(default_factory=dict)


def demo_config(preset: str, overrides: dict, *, seed: int, device: str, **sections: dict):
    """The ``preset`` with a demo's ``overrides`` (not modified), the run's seed and device, and
    any further ``sections`` (e.g. ``image={...}``) merged in."""
    from ..config import resolve_config

    merged = json.loads(json.dumps(overrides))
    merged.setdefault("train", {}).update({"seed": seed, "device": device})
    for section, values in sections.items():
        merged.setdefault(section, {}).update(values)
    return resolve_config(preset, overrides=merged)


class DemoSteps:
    """The numbered steps of a demo run: creates the new ``out`` folder, prints a heading per step
    (``step(label)`` returns the step's start time) and keeps the seconds each step took."""

    def __init__(self, out: Path, echo):
        out.mkdir(parents=True)
        self.echo = echo
        self.timings: dict[str, float] = {}
        self.t_all = time.perf_counter()

    def __call__(self, label: str) -> float:
        self.echo(f"\n== {label}")
        return time.perf_counter()


def _img_tag(path: Path, alt: str, width: str = "100%") -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="max-width:{width}">'


def _table(headers: list[str], rows: list[list]) -> str:
    """An HTML table for the report (:func:`simgan.tables.format_table`)."""
    return tables.format_table(headers, rows, style="html")


def gaze_rows(gaze: dict) -> list[list]:
    rows = []
    for name, r in gaze["results"].items():
        rows.append([name, f"{r['mean_deg']:.2f}", f"{r['median_deg']:.2f}", f"{r['within_pct']['7']:.1f}"])
    return rows


GAZE_HEADERS = ["trained on", "mean error (deg)", "median error (deg)", "% within 7 deg"]


def format_table(headers: list[str], rows: list[list]) -> str:
    """The demo's results as aligned text, every column left-aligned (:func:`simgan.tables.format_table`)."""
    return tables.format_table(headers, rows, align="l")


def run_demo(out: str | Path, *, quick: bool = False, device: str = "auto", seed: int = 0,
             echo=print, settings: DemoSettings | None = None) -> DemoResult:
    """Run the demo into the new folder ``out``; returns the report path and every figure.

    One function on purpose, like nanoGPT's training script: the six numbered steps read top to
    bottom as the experiment of §3.1, each a call into the public API."""
    from ..evaluation import (GazeTrainSettings, evaluate_gaze, evaluate_preservation, evaluate_realism,
                             format_preservation_table, format_realism_table)
    from ..plots import save_grid
    from ..pipelines.refine import refine_dataset
    from ..simulators.eyes import simulate_eyes
    from ..training import train

    from ..runtime import resolve_device

    out = Path(out)
    if out.exists():
        raise SimganError(f"--out {out} already exists; choose a new folder")
    resolve_device(device)  # a device that is not there is bad input: said before any work
    if not 0 <= seed < 2 ** 32:
        raise SimganError(f"--seed must be in 0 .. 2**32 - 1, got {seed}")
    name = "quick" if quick else "default"
    s = settings or DEMO_SETTINGS[name]
    step = DemoSteps(out, echo)
    data, timings, t_all = out / "data", step.timings, step.t_all

    # 1. data -----------------------------------------------------------------------------------
    t = step("1/6 simulating eyes: synthetic (labelled), target (webcam-like; unlabelled for SimGAN)")
    base = seed * 10
    simulate_eyes(data / "synthetic", s.n_synthetic, seed=base + 1, domain="synthetic", progress=False)
    simulate_eyes(data / "real_unlabelled", s.n_real, seed=base + 2, domain="target", progress=False)
    (data / "real_unlabelled" / LABELS_FILE).unlink()  # S+U learning: no real label exists
    simulate_eyes(data / "target_train", s.n_target_train, seed=base + 3, domain="target", progress=False)
    simulate_eyes(data / "target_test", s.n_test, seed=base + 4, domain="target", progress=False)
    timings["simulate"] = time.perf_counter() - t
    echo(f"   {s.n_synthetic} synthetic, {s.n_real} unlabelled target, {s.n_target_train} labelled target, "
         f"{s.n_test} target test images ({timings['simulate']:.0f} s)")

    # 2. SimGAN ------------------------------------------------------------------------------------
    t = step("2/6 training SimGAN (eyes preset, Algorithm 1)")
    cfg = demo_config("eyes", s.simgan, seed=seed, device=device)
    run = train(cfg, data / "synthetic", data / "real_unlabelled", out / "simgan", progress=True)
    timings["train"] = time.perf_counter() - t

    # 3. refine -----------------------------------------------------------------------------------
    t = step("3/6 refining the synthetic training set")
    res = refine_dataset(run.run, data / "synthetic", data / "refined", batch_size=s.refine_batch, device=device,
                         progress=True)
    timings["refine"] = time.perf_counter() - t
    echo(f"   {res.images} images refined ({res.images_per_s:.0f} images/s)")

    # 4. gaze -------------------------------------------------------------------------------------
    t = step("4/6 gaze estimators (§3.1): trained on synthetic, refined, target; tested on held-out target")
    # Batch 64 rather than the paper's 512: on a CPU, far more updates for the same images.
    gsettings = GazeTrainSettings.budget(None, max_epochs=s.gaze_epochs, **s.gaze)
    gaze = evaluate_gaze({"synthetic": data / "synthetic", "refined": data / "refined",
                          "target (upper bound)": data / "target_train"},
                         data / "target_test", out / "gaze", device=device, seed=seed, settings=gsettings,
                         echo=echo)
    timings["gaze"] = time.perf_counter() - t

    # 5. realism and preservation ---------------------------------------------------------------------
    t = step("5/6 realism (vs target) and label preservation (synthetic -> refined)")
    realism = evaluate_realism(data / "target_train", {"synthetic": data / "synthetic", "refined": data / "refined"},
                               out / "realism", device=device, seed=seed, max_images=s.realism_images, echo=echo)
    echo(format_realism_table(realism))
    preservation = evaluate_preservation(data / "synthetic", data / "refined", out / "preservation", device=device,
                                         seed=seed, max_pairs=s.preservation_images,
                                         estimator=out / "gaze" / "estimators" / "synthetic.pt", echo=echo)
    echo(format_preservation_table(preservation))
    artifacts = measure_artifacts(data / "synthetic", data / "refined", cfg, s.preservation_images)
    echo(f"artifacts: periodic ratio {artifacts['periodic_ratio']:.2f} at D's stride {artifacts['stride']} px, "
         f"border ratio {artifacts['border_ratio']:.2f} (about 1: no grid, no frame)")
    timings["measure"] = time.perf_counter() - t

    # 6. report ------------------------------------------------------------------------------------
    t = step("6/6 writing the report")
    syn_ds, ref_ds = ImageFolder.open(data / "synthetic"), ImageFolder.open(data / "refined")
    tgt_ds = ImageFolder.open(data / "target_test")
    show = list(range(10))
    grid = save_grid([syn_ds.read_many(show), ref_ds.read_many(show), tgt_ds.read_many(show)],
                     ["synthetic", "refined", "target"], out / "samples.png", scale=4)
    timings["total"] = time.perf_counter() - t_all
    metrics = {"settings": {"demo": name, "seed": seed, "device": device, **asdict(s)},
               "simgan_config": cfg.to_dict(), "gaze": gaze, "realism": realism, "preservation": preservation,
               "artifacts": artifacts, "timings_s": timings}
    atomic_write_bytes(out / "demo.json", json.dumps(metrics, indent=1, default=str).encode())
    report = write_report(out, metrics, grid, run.run)
    table = format_table(GAZE_HEADERS, gaze_rows(gaze))
    echo(f"\nGaze error on held-out target images (seed {seed}, {name} demo, {timings['total'] / 60:.1f} min):\n{table}")
    echo(f"\nreport: {report}")
    return DemoResult(out, report, metrics)


def write_report(out: Path, m: dict, grid: Path, run: Path) -> Path:
    """``OUT/report.html``, self-contained (images inlined). Long because it is the page's
    template written out, section by section, in the order the page shows them."""
    s = m["settings"]
    gaze, realism, pres = m["gaze"], m["realism"], m["preservation"]
    loss_png = run / "samples" / "loss_curves.png"
    training_grids = sorted((run / "samples").glob("step_*.png"))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>simgan demo</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}",
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}",
        "th{background:#f3f3f3}td:first-child{text-align:left}h2{margin-top:2em}.note{color:#555}",
        "</style></head><body>",
        "<h1>simgan demo: the gaze experiment of Shrivastava et al. (CVPR 2017, §3.1)</h1>",
        f"<p class='note'>{s['demo']} settings, seed {s['seed']}, total {m['timings_s']['total'] / 60:.1f} min. "
        "Synthetic eyes come from simgan's simulator (clean renders, like UnityEyes); the target domain is the same "
        "kind of scenes seen by a simulated laptop webcam (our stand-in for MPIIGaze). SimGAN learned from unlabelled "
        "target images only.</p>",
        "<h2>Gaze estimation on held-out target images (Tables 2-3)</h2>",
        _table(GAZE_HEADERS, gaze_rows(gaze)),
        "<p class='note'>The paper: synthetic 11.2 deg, refined 7.8 deg mean error on MPIIGaze; 62.3% vs 69.4% within "
        "7 deg.</p>",
        _img_tag(out / "gaze" / "gaze_cdf.png", "cumulative error curves", "700px"),
        "<h2>Samples (Figure 5)</h2>",
        "<p class='note'>Rows: synthetic, the same images refined, and target images (not the same scenes).</p>",
        _img_tag(grid, "synthetic / refined / target"),
        "<h2>Realism against target images</h2>",
        _table(["images", "two-sample test accuracy", "95% interval", "p (vs 50%)", "kernel distance x1000"],
               _realism_rows(realism)),
        "<p class='note'>A fresh CNN is trained to tell each set from target images; 50% accuracy means it cannot "
        "(the automated counterpart of the visual Turing test, Table 1). The kernel distance is an unbiased "
        "KID-style estimate on frozen CNN features; 0 means the same distribution.</p>",
        "<h2>Label preservation (§3.1)</h2>",
        _table(["measure", "mean", "std", "pairs"], _preservation_rows(pres)),
        "<p class='note'>The paper: pupil centre moved 1.1 +- 0.8 px (eye width 55 px).</p>",
        "<h2>Artifacts of refinement</h2>",
        _table(["measure", "value"], _artifact_rows(m.get("artifacts") or {})),
        "<p class='note'>On the residual refined - synthetic. Periodic ratio: power at D's stride frequencies over "
        "the mean power (about 1: no grid). Border ratio: mean |residual| in the 2-px border over the inside "
        "(about 1: no frame).</p>",
        "<h2>SimGAN training</h2>",
        _img_tag(loss_png, "loss curves") if loss_png.exists() else "",
    ]
    if training_grids:
        parts.append("<p class='note'>Samples during training (rows: synthetic, refined, target):</p>")
        for g in training_grids[:: max(1, len(training_grids) // 4)]:
            parts.append(f"<p>{html.escape(g.stem)}<br>{_img_tag(g, g.stem)}</p>")
    cfg = m["simgan_config"]
    t = cfg["train"]
    parts += [
        "<h2>Settings</h2>",
        _table(["setting", "value"], [
            ["synthetic / unlabelled target / labelled target / test images",
             f"{s['n_synthetic']} / {s['n_real']} / {s['n_target_train']} / {s['n_test']}"],
            ["SimGAN", f"eyes preset; R pretrain {t['refiner_pretrain']}, D pretrain {t['disc_pretrain']}, "
                       f"T {t['steps']}, K_g {t['kg']}, K_d {t['kd']}, batch {t['batch_size']}, history {t['buffer_size']}, "
                       f"{t['optimizer']} lr {t['lr']}, lambda {cfg['loss']['lambda_reg']}, psi {cfg['loss']['feature']}"],
            ["gaze estimator", f"§3.1 network, batch 64, Adam lr 1e-3, early stopping, at most {s['gaze_epochs']:g} "
                               f"epochs each {json.dumps(s['gaze']) if s['gaze'] else ''}"],
            ["timings (s)", ", ".join(f"{k} {v:.0f}" for k, v in m["timings_s"].items())],
        ]),
        "</body></html>",
    ]
    path = out / "report.html"
    atomic_write_bytes(path, "\n".join(parts).encode())
    return path


def measure_artifacts(synthetic, refined, cfg, n: int) -> dict:
    """:func:`simgan.evaluation.artifacts.artifact_measures` on the first ``n`` synthetic/refined
    pairs, at the stride of the run's D."""
    from ..config import for_image_shape
    from ..models.discriminator import patch_geometry
    from ..evaluation.artifacts import artifact_measures
    syn_ds, ref_ds = ImageFolder.open(synthetic), ImageFolder.open(refined)
    idx = list(range(min(n, len(syn_ds))))
    spec = syn_ds.spec
    geom = patch_geometry(for_image_shape(cfg, spec.height, spec.width).discriminator, spec.height, spec.width)
    return artifact_measures(syn_ds.read_many(idx), ref_ds.read_many(idx), geom.stride, max_value=spec.max_value)


def _artifact_rows(a: dict) -> list[list]:
    if not a:
        return []
    return [["periodic ratio at D's stride frequencies", f"{a['periodic_ratio']:.2f} (stride {a['stride']} px)"],
            ["border ratio (2-px band / inside)", f"{a['border_ratio']:.2f}"],
            ["mean |refined - synthetic| in [-1, 1]", f"{a['mean_abs_residual']:.4f}"],
            ["image pairs", a["n"]]]


def _realism_rows(realism: dict) -> list[list]:
    rows = []
    for name, r in realism.get("results", {}).items():
        c, k = r.get("c2st") or {}, r.get("kid") or {}
        ci = c.get("ci95")
        rows.append([name, f"{100 * c['accuracy']:.1f}%" if c else "",
                     f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%" if ci else "",
                     f"{c['p_value']:.2g}" if c else "",
                     f"{1000 * k['kid']:.2f} +- {1000 * k['kid_se']:.2f}" if k else ""])
    return rows


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
