"""``simgan ablate``: the paper's ablations (§3.3) with equal budgets.

Each variant changes one thing of the full method and keeps everything else — data, steps,
batch, learning rate, seed — the same:

* ``full``: local D, history buffer, lambda as configured, psi = identity;
* ``no-history``: D sees only the current R's images (§2.3; the paper: 12.2 deg vs 7.8 deg);
* ``global-disc``: an image-level D with a fully connected head instead of the local one (§2.2);
* ``lambda-x0.1``, ``lambda-x10``: a tenth and ten times the self-regularisation weight (Eq. 4);
* ``psi-gradients``: self-regularisation on image derivatives instead of pixels (§3.1).

Every variant is trained, refines the synthetic set, and is measured by realism (the classifier
two-sample test against the real set: 50% means indistinguishable) and by the downstream gaze
error of an estimator trained on its refined images and tested on the labelled test set. The
unrefined synthetic set is measured the same way as the reference row.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import SimGANConfig
from ..datasets import ImageFolder, atomic_write_bytes
from ..errors import SimganError
from ..report import format_table


@dataclass(frozen=True)
class Variant:
    description: str
    overrides: dict  # nested config overrides; "lambda_scale" multiplies loss.lambda_reg


VARIANTS: dict[str, Variant] = {
    "full": Variant("local D, history, lambda, psi = identity", {}),
    "no-history": Variant("D sees only the current refiner's images (§2.3)", {"train": {"history": False}}),
    "global-disc": Variant("image-level D with a fully connected head (§2.2)", {"discriminator": {"kind": "global"}}),
    "lambda-x0.1": Variant("a tenth of the self-regularisation weight", {"lambda_scale": 0.1}),
    "lambda-x10": Variant("ten times the self-regularisation weight", {"lambda_scale": 10.0}),
    "psi-gradients": Variant("self-regularisation on image derivatives (§3.1)", {"loss": {"feature": "gradients"}}),
}


def variant_config(base: SimGANConfig, name: str) -> SimGANConfig:
    if name not in VARIANTS:
        raise SimganError(f"unknown ablation variant {name!r}; choose from {', '.join(VARIANTS)}")
    over = json.loads(json.dumps(VARIANTS[name].overrides))
    scale = over.pop("lambda_scale", None)
    cfg = base.override(over)
    if scale is not None:
        cfg = cfg.override({"loss": {"lambda_reg": base.loss.lambda_reg * scale}})
    return cfg.validate()


def run_ablation(synthetic, real, test, out, *, base: SimGANConfig, variants: list[str] | None = None,
                 gaze_settings=None, realism_images: int = 2000, seed: int = 0, device: str = "auto",
                 echo=print) -> dict:
    """Train, refine and measure each variant; writes ``OUT/metrics.json``, ``OUT/table.md`` and
    ``OUT/VARIANT/{run,refined,samples.png}``. Returns the metrics."""
    from ..evaluation import GazeTrainSettings, evaluate_gaze, evaluate_realism
    from ..plots import save_grid
    from ..pipelines.refine import refine_dataset
    from ..training import train

    from ..paths import check_no_overlap

    out = Path(out)
    check_no_overlap({"--synthetic": synthetic, "--real": real, "--test": test}, {"--out": out}, partial=False)
    if out.exists():
        raise SimganError(f"--out {out} already exists; choose a new folder")
    names = variants or list(VARIANTS)
    for n in names:
        variant_config(base, n)  # validate every name before any work
    syn_ds = ImageFolder.open(synthetic, need_labels=True, what="synthetic set")
    ImageFolder.open(test, need_labels=True, what="test set")
    ImageFolder.open(real, what="real set")
    out.mkdir(parents=True)
    gs = gaze_settings or GazeTrainSettings()
    refined_sets: dict[str, Path] = {}
    timings: dict[str, float] = {}
    show = list(range(min(8, len(syn_ds))))
    for n in names:
        t = time.perf_counter()
        cfg = variant_config(base, n).override({"train": {"seed": seed, "device": device}})
        echo(f"\n== {n}: {VARIANTS[n].description}")
        run = train(cfg, synthetic, real, out / n / "run", progress=True)
        refined = out / n / "refined"
        refine_dataset(run.run, synthetic, refined, device=device, progress=False)
        refined_sets[n] = refined
        save_grid([syn_ds.read_many(show), ImageFolder.open(refined).read_many(show)], ["synthetic", n],
                  out / n / "samples.png", scale=4)
        timings[n] = time.perf_counter() - t

    echo("\n== realism of each variant against the real set")
    realism = evaluate_realism(real, {"synthetic": synthetic, **refined_sets}, out / "realism", device=device,
                               seed=seed, max_images=realism_images, echo=echo)
    echo("\n== downstream gaze error of an estimator trained on each variant's refined images")
    gaze = evaluate_gaze({"synthetic": synthetic, **refined_sets}, test, out / "gaze", device=device, seed=seed,
                         settings=gs, echo=echo)
    rows = []
    for n in ["synthetic", *names]:
        c = realism["results"][n].get("c2st") or {}
        g = gaze["results"][n]
        rows.append({"variant": n, "description": VARIANTS[n].description if n in VARIANTS else "no refinement",
                     "c2st_accuracy": c.get("accuracy"), "c2st_ci95": c.get("ci95"),
                     "kid": (realism["results"][n].get("kid") or {}).get("kid"),
                     "gaze_mean_deg": g["mean_deg"], "gaze_within_7_pct": g["within_pct"]["7"]})
    metrics = {"seed": seed, "base_config": base.to_dict(), "variants": names, "rows": rows,
               "timings_s": timings, "realism": realism, "gaze": gaze}
    atomic_write_bytes(out / "metrics.json", json.dumps(metrics, indent=1, default=str).encode())
    table = format_ablation_table(rows)
    atomic_write_bytes(out / "table.md", (table + "\n").encode())
    echo("\n" + table)
    return metrics


def format_ablation_table(rows: list[dict]) -> str:
    """The ablation's results as a markdown table (``OUT/table.md``)."""
    headers = ["variant", "realism: two-sample accuracy (50% = real)", "kernel distance x1000", "gaze mean error (deg)",
               "% within 7 deg"]
    return format_table(headers, [[r["variant"], f"{100 * r['c2st_accuracy']:.1f}%" if r["c2st_accuracy"] is not None else "-",
                                   f"{1000 * r['kid']:.2f}" if r["kid"] is not None else "-",
                                   f"{r['gaze_mean_deg']:.2f}", f"{r['gaze_within_7_pct']:.1f}"] for r in rows],
                        style="markdown")
