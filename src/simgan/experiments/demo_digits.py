"""``simgan demo digits``: SimGAN on real data with an appearance gap, end to end, offline.

The domains (:mod:`simgan.simulators.digits`): clean handwritten digits (synthetic, labelled)
against other digits blended into real photographs (real, unlabelled), MNIST -> MNIST-M style
(Ganin & Lempitsky 2015). SimGAN changes appearance, not shape, and this is such a gap.

1. build the three sets (synthetic, real unlabelled, held-out test) from scikit-learn's digits
   and scikit-image's photographs;
2. train SimGAN with the ``generic`` preset's defaults (only the run length is set here);
3. refine the synthetic set, labels kept (``refine_variants`` noise draws per image);
4. train one digit classifier (:class:`DigitNet`) on synthetic, on refined and on labelled real
   images (the upper bound), and test each on the held-out blended digits;
5. measure realism with the classifier two-sample test of :mod:`simgan.evaluation.realism`;
6. write ``OUT/report.html`` and ``OUT/metrics.json``.

``gap_closed = (acc_refined - acc_synthetic) / (acc_real - acc_synthetic)``: 0 when refining
changed nothing, 1 when refined images train as well as labelled real ones.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..datasets import ImageFolder, atomic_write_bytes, to_model, write_dataset
from ..errors import SimganError


@dataclass
class DigitsDemoSettings:
    simgan: dict  # overrides of the generic preset: the run length and batch only
    classifier_steps: int = 800
    classifier_batch: int = 64
    limit: int | None = None  # digits used (None: all 1,797)
    c2st_images: int = 1000
    c2st: dict = field(default_factory=dict)  # C2STSettings fields
    # Refinements per synthetic image for the refined-trained classifier (`simgan refine
    # --variants K`; the paper's "several refined images per synthetic image"): with the generic
    # preset's noise input each draws another appearance. The two-sample test, the change and
    # the artifact measures use the first refinement of each image.
    refine_variants: int = 4


DIGITS_DEMO_SETTINGS: dict[str, DigitsDemoSettings] = {
    "default": DigitsDemoSettings(
        simgan={"train": {"disc_pretrain": 50, "steps": 150, "batch_size": 32, "buffer_size": 3200,
                          "sample_every": 50, "checkpoint_every": 50}}),
    "quick": DigitsDemoSettings(
        simgan={"train": {"disc_pretrain": 30, "steps": 60, "batch_size": 32, "buffer_size": 640,
                          "sample_every": 30, "checkpoint_every": 30}},
        classifier_steps=300, c2st={"max_steps": 300}),
}


class DigitNet(nn.Module):
    """Small digit classifier: two 3×3 conv/ReLU/2×2-max-pool stages (32, 64 maps), a 3×3 conv
    of 64 maps, global average pooling, one hidden layer of 128 units and 10 logits."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_and_test_classifier(images: np.ndarray, labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray,
                              *, steps: int = 800, batch: int = 64, seed: int = 0, device="cpu") -> float:
    """Train :class:`DigitNet` (Adam 1e-3, ``steps`` mini-batches) on ``images`` and return its
    accuracy on ``test`` (uint8 ``N×H×W×C`` arrays)."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitNet(images.shape[3]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.from_numpy(images)
    y = torch.from_numpy(labels.astype(np.int64))
    lossf = nn.CrossEntropyLoss()
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (min(batch, len(x)),), generator=g)
        loss = lossf(model(to_model(x[idx], 255, device=device)), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        t = torch.from_numpy(test)
        pred = torch.cat([model(to_model(t[i:i + 512], 255, device=device)).argmax(1).cpu()
                          for i in range(0, len(t), 512)])
    return float((pred.numpy() == test_labels).mean())


def run_digits_demo(out: str | Path, *, quick: bool = False, device: str = "auto", seed: int = 0, echo=print,
                    settings: DigitsDemoSettings | None = None, config_overrides: dict | None = None) -> dict:
    """Run the digits demo into the new folder ``out``; returns the metrics written to
    ``OUT/metrics.json``. ``config_overrides`` (nested dict) go over the generic preset after the
    demo's run length: for measuring options on this domain, not for the demo itself.

    One function on purpose, as :func:`simgan.experiments.demo_eyes.run_demo`: the numbered steps
    read top to bottom as the experiment, each a call into the public API."""
    from ..config import resolve_config
    from .demo_eyes import _img_tag, _table, format_table
    from ..runtime import resolve_device
    from ..evaluation.realism import C2STSettings, classifier_two_sample_test
    from ..plots import save_grid
    from ..pipelines.refine import refine_dataset
    from ..training.rundir import RunDir
    from ..simulators.digits import WORKING_SIZE, make_digits_domains
    from ..training import train

    out = Path(out)
    if out.exists():
        raise SimganError(f"--out {out} already exists; choose a new folder")
    name = "quick" if quick else "default"
    s = settings or DIGITS_DEMO_SETTINGS[name]
    dev = resolve_device(device)
    overrides = json.loads(json.dumps(s.simgan))
    overrides.setdefault("train", {}).update({"seed": seed, "device": device})
    cfg = resolve_config("generic", overrides=overrides)
    if config_overrides:
        cfg = cfg.override(config_overrides).validate()
    out.mkdir(parents=True)
    data = out / "data"
    t_all = time.perf_counter()
    timings: dict[str, float] = {}

    echo("\n== 1/5 building the digits domains (scikit-learn digits, scikit-image photographs)")
    t = time.perf_counter()
    d = make_digits_domains(seed, limit=s.limit)
    write_dataset(data / "synthetic", d.synthetic, [{"label": int(v)} for v in d.synthetic_labels])
    write_dataset(data / "real_unlabelled", d.real)  # S+U learning: no label is written
    timings["data"] = time.perf_counter() - t
    echo(f"   {len(d.synthetic)} synthetic, {len(d.real)} real (unlabelled), {len(d.test)} held-out test images, "
         f"{WORKING_SIZE}x{WORKING_SIZE} RGB")

    echo("\n== 2/5 training SimGAN (generic preset defaults)")
    t = time.perf_counter()
    run = train(cfg, data / "synthetic", data / "real_unlabelled", out / "simgan", progress=False, echo=echo)
    timings["train"] = time.perf_counter() - t

    echo("\n== 3/5 refining the synthetic set")
    t = time.perf_counter()
    K = max(1, s.refine_variants)
    refine_dataset(run.run, data / "synthetic", data / "refined", device=device, progress=False, echo=echo,
                   variants=K)
    refined_all = ImageFolder.open(data / "refined").load()  # K refinements of each image, adjacent
    refined = refined_all[::K]
    timings["refine"] = time.perf_counter() - t

    echo("\n== 4/5 digit classifiers trained on synthetic / refined / labelled real, tested on held-out real")
    t = time.perf_counter()
    acc = {}
    for key, (imgs, labels) in {"synthetic": (d.synthetic, d.synthetic_labels),
                                "refined": (refined_all, np.repeat(d.synthetic_labels, K)),
                                "real": (d.real, d.real_labels)}.items():
        acc[key] = train_and_test_classifier(imgs, labels, d.test, d.test_labels, steps=s.classifier_steps,
                                             batch=s.classifier_batch, seed=seed, device=dev)
        echo(f"   trained on {key}: {100 * acc[key]:.1f}% on held-out real digits")
    gap = acc["real"] - acc["synthetic"]
    gap_closed = (acc["refined"] - acc["synthetic"]) / gap if abs(gap) > 1e-9 else float("nan")
    timings["classifiers"] = time.perf_counter() - t

    echo("\n== 5/5 realism: classifier two-sample test against the real set")
    t = time.perf_counter()
    c2s = C2STSettings(**s.c2st)
    c2st = {}
    rng = np.random.default_rng(seed)
    real_s = d.real[rng.permutation(len(d.real))[:s.c2st_images]]
    for key, imgs in (("synthetic", d.synthetic), ("refined", refined)):
        c2st[key] = classifier_two_sample_test(real_s, imgs[:s.c2st_images], settings=c2s, seed=seed, device=dev,
                                               name=key)
    timings["realism"] = time.perf_counter() - t
    change = float(np.abs(refined.astype(np.float32) - d.synthetic.astype(np.float32)).mean() / 127.5)
    from .demo_eyes import _artifact_rows
    from ..config import for_image_shape
    from ..evaluation.artifacts import artifact_measures
    from ..models.discriminator import patch_geometry
    geom = patch_geometry(for_image_shape(cfg, WORKING_SIZE, WORKING_SIZE).discriminator, WORKING_SIZE, WORKING_SIZE)
    artifacts = artifact_measures(d.synthetic, refined, geom.stride, max_value=255)
    timings["total"] = time.perf_counter() - t_all

    summary = {}
    if (run.run / "summary.json").exists():
        summary = json.loads((run.run / "summary.json").read_text())
    metrics = {
        "accuracy": acc, "gap_closed": gap_closed,
        "c2st": {k: v["accuracy"] for k, v in c2st.items()},
        "c2st_detail": c2st,
        "mean_abs_change": change, "artifacts": artifacts,
        "seconds": timings["total"], "timings_s": timings,
        "settings": {"demo": name, "seed": seed, "device": str(dev), "working_size": WORKING_SIZE,
                     "n_synthetic": len(d.synthetic), "n_real": len(d.real), "n_test": len(d.test), **asdict(s)},
        "simgan_config": RunDir(run.run).saved_config().to_dict(),
        "verdict": summary.get("verdict"),
    }
    atomic_write_bytes(out / "metrics.json", json.dumps(metrics, indent=1, default=str).encode())

    show = list(range(0, len(d.synthetic), max(1, len(d.synthetic) // 12)))[:12]
    grid = save_grid([d.synthetic[show], refined[show], d.real[:12], d.test[:12]],
                     ["synthetic", "refined", "real", "test"], out / "samples.png", scale=4)
    rows = [[k, f"{100 * acc[k]:.1f}%"] for k in ("synthetic", "refined", "real")]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>simgan demo digits</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}",
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}",
        "th{background:#f3f3f3}td:first-child{text-align:left}.note{color:#555}</style></head><body>",
        "<h1>simgan demo digits: clean digits -> digits on real photographs</h1>",
        f"<p class='note'>{name} settings, seed {seed}, {timings['total'] / 60:.1f} min. Synthetic: scikit-learn's "
        f"handwritten digits, white on black, upsampled to {WORKING_SIZE}x{WORKING_SIZE}. Real (unlabelled for "
        "SimGAN): other digits blended into random patches of scikit-image's photographs (|patch - digit| per "
        "channel, as MNIST-M). Test: blended digits from a held-out third of the digits. SimGAN: generic preset "
        "defaults.</p>",
        "<h2>Digit classification on held-out real images</h2>",
        _table(["trained on", "accuracy"], rows),
        f"<p>Gap closed by refining: <b>{100 * gap_closed:.1f}%</b> of the synthetic -> real accuracy gap.</p>",
        "<h2>Realism (classifier two-sample test against real images)</h2>",
        _table(["images", "two-sample accuracy", "95% interval", "n per class"],
               [[k, f"{100 * v['accuracy']:.1f}%", f"{100 * v['ci95'][0]:.1f}-{100 * v['ci95'][1]:.1f}%",
                 v["n_per_class"]] for k, v in c2st.items()]),
        f"<p class='note'>50% means a fresh CNN cannot tell the set from real images. Mean |refined - synthetic| "
        f"= {change:.3f} in [-1, 1].</p>",
        "<h2>Artifacts of refinement</h2>", _table(["measure", "value"], _artifact_rows(artifacts)),
        f"<p><b>Verdict:</b> {html.escape(str(summary.get('verdict', '')))}</p>",
        "<h2>Samples</h2><p class='note'>Rows: synthetic, the same images refined, real (other digits), test.</p>",
        _img_tag(grid, "samples"),
    ]
    loss_png = run.run / "samples" / "loss_curves.png"
    if loss_png.exists():
        parts += ["<h2>SimGAN training</h2>", _img_tag(loss_png, "loss curves")]
    parts.append("</body></html>")
    atomic_write_bytes(out / "report.html", "\n".join(parts).encode())
    echo("\n" + format_table(["trained on", "held-out accuracy"], rows))
    echo(f"gap closed {100 * gap_closed:.1f}%; two-sample accuracy synthetic {100 * c2st['synthetic']['accuracy']:.1f}%"
         f", refined {100 * c2st['refined']['accuracy']:.1f}%; {timings['total'] / 60:.1f} min")
    echo(f"report: {out / 'report.html'}")
    return metrics
