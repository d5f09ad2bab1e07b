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
the experiment down: the ``hands-demo`` preset (64x64 images, a 3x3 refiner with 4 blocks of 32
maps, the preset's discriminator with smaller kernels and strides) and a 16-map hourglass with
32x32 heatmaps (:data:`HANDS_DEMO_SETTINGS`). ``--full`` is the paper's setting (224x224, the ``hands`` preset unchanged, 2-stack hourglass with 256 maps
and 64x64 heatmaps, NYU's numbers of frames), for a GPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import report
from ..datasets import LABELS_FILE, DatasetWriter, ImageFolder, decode_image, json_line
from ..errors import SimganError
from .common import DemoRun, check_new_out, check_seed, demo_config

CUBE_MM = 400.0


@dataclass
class HandsDemoSettings:
    size: int  # image width and height
    n_synthetic: int  # synthetic poses (the "3x" sets hold all 3 views of the same poses)
    n_real: int  # unlabelled target images SimGAN learns from
    n_target_train: int  # labelled target images (the "real" row of Table 4)
    n_test: int  # held-out labelled target images every estimator is tested on
    pose: dict  # PoseTrainSettings fields
    preset: str = "hands-demo"  # what SimGAN trains
    simgan: dict = field(default_factory=dict)  # overrides of the preset
    views3: bool = True  # also the "3x" rows (training on all views)
    realism_images: int = 2000
    refine_batch: int = 256
    render_size: int = 160  # render and apply the sensor at this size (one image pixel per Kinect pixel), then resize


HANDS_DEMO_SETTINGS: dict[str, HandsDemoSettings] = {
    # the hands preset scaled to 64x64 (`simgan presets hands-demo`)
    "default": HandsDemoSettings(size=64, n_synthetic=2000, n_real=4000, n_target_train=2000, n_test=1000,
                                 pose={"channels": 16, "heatmap": 32, "epochs": 4, "batch_size": 32}),
    # every step on few images and rounds: a smoke run, not a measurement
    "quick": HandsDemoSettings(
        size=64, n_synthetic=500, n_real=1000, n_target_train=500, n_test=300,
        simgan={"train": {"disc_pretrain": 20, "steps": 50, "buffer_size": 640, "sample_every": 25,
                          "checkpoint_every": 25}},
        pose={"channels": 16, "heatmap": 32, "epochs": 3, "batch_size": 32}, realism_images=500),
    # The paper's settings (§3.2): 224x224, the hands preset as it is, NYU's numbers of frames
    # (72,757 training frames = 24,252 poses x 3 views; 8,251 test frames). For a GPU.
    "full": HandsDemoSettings(
        size=224, n_synthetic=24252, n_real=72757, n_target_train=24252, n_test=8251, preset="hands",
        simgan={"train": {"steps": 10000, "sample_every": 500, "checkpoint_every": 500}},
        pose={"channels": 256, "heatmap": 64, "epochs": 30, "batch_size": 16}, realism_images=5000),
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
                   settings: HandsDemoSettings | None = None, config_overrides: dict | None = None) -> HandsDemoResult:
    """Run the hand demo into the new folder ``out``; returns the report path and every figure. The
    numbered steps read top to bottom as the experiment of §3.2 (Table 4), each a call into the
    public API."""
    from ..evaluation.common import write_metrics
    from ..training import train

    if mode not in HANDS_DEMO_SETTINGS:
        raise SimganError(f"unknown demo mode {mode!r}; choose one of {', '.join(HANDS_DEMO_SETTINGS)}")
    check_seed(seed)
    out = check_new_out(out)
    s = settings or HANDS_DEMO_SETTINGS[mode]
    cfg = demo_config(s.preset, s.simgan, seed=seed, device=device, config_overrides=config_overrides,
                      image={"height": s.size, "width": s.size, "channels": 1, "bit_depth": 16})
    run = DemoRun(out, echo)
    _simulate(run, s, seed)
    syn_for_gan = run.data / ("synthetic_3x" if s.views3 else "synthetic")
    with run.step("train", f"2/6 training SimGAN ({s.preset} preset, Algorithm 1)"):
        trained = train(cfg, syn_for_gan, run.data / "real_unlabelled", out / "simgan", progress=True)
    _refine(run, trained.run, syn_for_gan, s, device)
    pose = _pose(run, s, seed, device)
    measures = _measure(run, s, seed, device)
    with run.step("report", "6/6 writing the report"):
        grid, crops = _pictures(run, measures.pop("images"))
    minutes = run.finish()
    metrics = {"experiment": "hands (§3.2, Table 4)",
               "settings": {"demo": mode, "seed": seed, "device": device, "cube_mm": CUBE_MM, **asdict(s)},
               "image_size": s.size, **{key: {name: r[field] for name, r in pose["results"].items()}
                                        for key, field in (("pck5", "pck5"), ("pck5_224", "pck5_224"),
                                                           ("mean_error_px", "mean_px"))},
               "pose": pose, **measures, "simgan_config": cfg.to_dict(), "timings_s": run.timings}
    write_metrics(out, metrics)
    page = write_hands_report(out, metrics, grid, crops, trained.run)
    echo(f"\nHand pose on held-out target images (seed {seed}, {mode} demo, {s.size}x{s.size}, {minutes:.1f} min):\n"
         f"{report.text_table(POSE_HEADERS, _pose_rows(metrics)[0])}")
    echo(f"\nreport: {page}")
    return HandsDemoResult(out, page, metrics)


def _simulate(run: DemoRun, s: HandsDemoSettings, seed: int) -> None:
    from ..simulators.hands import write_hands

    data, base, S = run.data, seed * 10, s.size
    R = max(S, s.render_size)  # rendered (and seen by the sensor) at R, resized to S
    with run.step("simulate", f"1/6 simulating depth hands ({S}x{S}): synthetic, target (Kinect-like)"):
        write_hands(data / "synthetic", s.n_synthetic, seed=base + 1, size=S, cube_mm=CUBE_MM, render_size=R)
        if s.views3:
            write_hands(data / "synthetic_3x", s.n_synthetic, seed=base + 1, size=S, views=3, cube_mm=CUBE_MM,
                        render_size=R)
        write_hands(data / "real_unlabelled", s.n_real, seed=base + 2, size=S, domain="target", cube_mm=CUBE_MM,
                    labels=False, render_size=R)  # S+U learning: no real label exists
        write_hands(data / "target_train", s.n_target_train, seed=base + 3, size=S, domain="target",
                    cube_mm=CUBE_MM, render_size=R)
        write_hands(data / "target_test", s.n_test, seed=base + 4, size=S, domain="target", cube_mm=CUBE_MM,
                    render_size=R)
    run.echo(f"   {s.n_synthetic} synthetic poses ({'1 and 3 views' if s.views3 else '1 view'}), {s.n_real} "
             f"unlabelled target, {s.n_target_train} labelled target, {s.n_test} target test images "
             f"({run.timings['simulate']:.0f} s)")


def _refine(run: DemoRun, trained: Path, syn_for_gan: Path, s: HandsDemoSettings, device: str) -> None:
    from ..pipelines.refine import refine_dataset

    with run.step("refine", "3/6 refining the synthetic training set"):
        res = refine_dataset(trained, syn_for_gan, run.data / ("refined_3x" if s.views3 else "refined"),
                             batch_size=s.refine_batch, device=device, progress=True)
        if s.views3:
            _view0_subset(run.data / "refined_3x", run.data / "refined")
    run.echo(f"   {res.images} images refined ({res.images_per_s:.0f} images/s)")


def _pose(run: DemoRun, s: HandsDemoSettings, seed: int, device: str) -> dict:
    from ..evaluation.pose import PoseTrainSettings, evaluate_pose, format_pose_table

    data = run.data
    with run.step("pose", "4/6 hand pose estimators (§3.2): trained on synthetic, refined, real; tested on held-out "
                          "target"):
        sets = {"synthetic": data / "synthetic", "refined": data / "refined", "real": data / "target_train"}
        if s.views3:
            sets.update({"synthetic_3x": data / "synthetic_3x", "refined_3x": data / "refined_3x"})
        pose = evaluate_pose(sets, data / "target_test", run.out / "pose", device=device, seed=seed,
                             settings=PoseTrainSettings(**s.pose), echo=run.echo)
        run.echo(format_pose_table(pose))
    return pose


def _measure(run: DemoRun, s: HandsDemoSettings, seed: int, device: str) -> dict:
    """Step 5: realism against target images, depth-boundary statistics, and label preservation
    (the estimator trained on real images applied to synthetic and refined pairs)."""
    from ..evaluation.pose import joint_errors_px, joint_labels, load_estimator
    from ..evaluation.realism import evaluate_realism, format_realism_table

    data = run.data
    with run.step("measure", "5/6 realism (vs target) and label preservation (synthetic -> refined)"):
        realism = evaluate_realism(data / "target_train", {"synthetic": data / "synthetic",
                                                           "refined": data / "refined"},
                                   run.out / "realism", device=device, seed=seed, max_images=s.realism_images,
                                   echo=run.echo)
        run.echo(format_realism_table(realism))
        syn_ds, ref_ds, tgt_ds = (ImageFolder.open(data / n) for n in ("synthetic", "refined", "target_test"))
        k = min(len(syn_ds), s.realism_images)
        syn, ref = syn_ds.read_many(list(range(k))), ref_ds.read_many(list(range(k)))
        tgt = tgt_ds.read_many(list(range(min(len(tgt_ds), s.realism_images))))
        boundaries = {"synthetic": boundary_stats(syn), "refined": boundary_stats(ref), "target": boundary_stats(tgt)}
        est = load_estimator(run.out / "pose" / "estimators" / "real.pt", device="cpu")
        p_syn, p_ref = est.predict(syn), est.predict(ref)
        uv = joint_labels(syn_ds, "synthetic set")[:k]
        shift = joint_errors_px(p_syn, p_ref)
        preservation = {"estimator": "trained on real (labelled target) images", "n_pairs": int(k),
                        "prediction_shift_px_mean": float(shift.mean()), "prediction_shift_px_std": float(shift.std()),
                        "error_on_synthetic_px": float(joint_errors_px(p_syn, uv).mean()),
                        "error_on_refined_px": float(joint_errors_px(p_ref, uv).mean())}
    images = {"synthetic": syn, "refined": ref, "target": tgt, "uv": uv,
              "target_uv": joint_labels(tgt_ds, "target test set")}
    return {"realism": realism, "boundaries": boundaries, "preservation": preservation, "images": images}


def _pictures(run: DemoRun, im: dict) -> tuple[Path, Path]:
    """The sample grid and the full-resolution boundary windows around the index fingertip."""
    show = list(range(min(10, len(im["synthetic"]), len(im["target"]))))
    sets = [im["synthetic"][show], im["refined"][show], im["target"][show]]
    grid = depth_grid(sets, ["synthetic", "refined", "target"], run.out / "samples.png")
    tip = 6  # index fingertip (JOINT_NAMES)
    crops = boundary_crops(sets, ["synthetic", "refined", "target"], run.out / "boundaries.png",
                           [im["uv"][show, tip], im["uv"][show, tip], im["target_uv"][show, tip]])
    return grid, crops


POSE_HEADERS = ["trained on", "% joints within 5 px", "% within 5 px at 224", "mean error (px)"]
PAPER_TABLE4 = {"synthetic": 69.7, "refined": 72.4, "real": 74.5, "synthetic_3x": 77.7, "refined_3x": 83.3}


def _pose_rows(m: dict) -> tuple[list[list], list[list]]:
    """Table 4's rows without and with the paper's column."""
    rows = [[n, f"{m['pck5'][n]:.1f}", f"{m['pck5_224'][n]:.1f}", f"{m['mean_error_px'][n]:.2f}"] for n in m["pck5"]]
    return rows, [r + [f"{PAPER_TABLE4[r[0]]:.1f}" if r[0] in PAPER_TABLE4 else ""] for r in rows]


def write_hands_report(out: Path, m: dict, grid: Path, crops: Path, trained: Path) -> Path:
    """``OUT/report.html``, self-contained, in the order of the paper's §3.2."""
    s, S, cfg = m["settings"], m["image_size"], m["simgan_config"]
    t, r, p = cfg["train"], cfg["refiner"], m["preservation"]
    brows = [[n, f"{v['missing_pct']:.2f}", f"{v['missing_at_silhouette_pct']:.1f}", f"{v['flying_pct']:.2f}",
              f"{v['edge_roughness']:.2f}"] for n, v in m["boundaries"].items()]
    smoke = " A smoke run: `simgan demo hands` gives the experiment's figures." if s["demo"] == "quick" else ""
    return report.write_page(out / "report.html", "simgan demo hands",
                             "simgan demo: the hand pose experiment of Shrivastava et al. (CVPR 2017, §3.2)", [
        report.note(f"{s['demo']} settings at <b>{S}x{S}</b> pixels (the paper: 224x224), seed {s['seed']}, total "
                    f"{m['timings_s']['total'] / 60:.1f} min. Synthetic depth hands come from simgan's capsule-hand "
                    "simulator (exact depth, hand only, like NYU's synthetic renders); the target domain is the same "
                    "kind of scenes through a simulated structured-light sensor (our stand-in for NYU's Kinect frames)."
                    f" SimGAN learned from unlabelled target images only.{smoke}"),
        report.section("Hand pose on held-out target images (Table 4, Figure 9)",
                       report.table(POSE_HEADERS + ["paper (NYU, d=5 at 224)"], _pose_rows(m)[1]),
                       report.note(f"d is measured in pixels of the {S}x{S} test images; the column 'at 224' rescales "
                                   "the tolerance to the paper's 224-pixel crops (5 px at 224). Numbers are not "
                                   "comparable with the paper's in absolute terms (different data, smaller networks); "
                                   "the question is the ordering of the rows."),
                       report.img(out / "pose" / "pose_pck.png", "cumulative joint error curves", "700px")),
        report.section("Samples (Figure 8)", report.note(
            "Rows: synthetic, the same images refined, target images (other scenes). Colour: depth inside the 400 mm "
            "hand cube (yellow near, purple far); light grey: beyond the cube; <b>black: no reading</b>."),
            report.img(grid, "synthetic / refined / target")),
        report.section("Depth boundaries at full resolution", report.note(
            f"20x20-pixel windows around the index fingertip, each pixel of the {S}x{S} image drawn as an 8x8 block."),
            report.img(crops, "boundary detail"),
            report.table(["images", "no reading %", "no reading at silhouette %", "flying pixels %", "edge roughness"],
                         brows)),
        report.section("Realism against target images", report.table(report.REALISM_HEADERS,
                                                                      report.realism_rows(m["realism"])),
                       report.note(report.REALISM_NOTE)),
        report.section("Label preservation", report.table(["measure", "value"], [
            ["joint predictions, synthetic vs refined (px)",
             f"{p['prediction_shift_px_mean']:.2f} +- {p['prediction_shift_px_std']:.2f}"],
            ["error of the real-trained estimator on synthetic (px)", f"{p['error_on_synthetic_px']:.2f}"],
            ["error of the real-trained estimator on refined (px)", f"{p['error_on_refined_px']:.2f}"],
            ["pairs", p["n_pairs"]]])),
        report.training_section(trained, grids=0),
        report.section("Settings", report.table(["setting", "value"], [
            ["synthetic poses / unlabelled target / labelled target / test images",
             f"{s['n_synthetic']} / {s['n_real']} / {s['n_target_train']} / {s['n_test']}"],
            ["SimGAN", f"{cfg['preset']} preset at {S}x{S}; R {r['kernel_size']}x{r['kernel_size']}, {r['num_blocks']} "
                       f"blocks of {r['width']} maps; D pretrain {t['disc_pretrain']}, T {t['steps']}, K_g {t['kg']}, "
                       f"K_d {t['kd']}, batch {t['batch_size']}, lr {t['lr']}, lambda {cfg['loss']['lambda_reg']}"],
            ["pose estimator", json.dumps(s["pose"])],
            ["timings (s)", ", ".join(f"{k} {v:.0f}" for k, v in m["timings_s"].items())]])),
    ])
