"""``simgan demo video``: refining eye *sequences* without flicker (the paper's second future
work, §5: "investigate refining videos rather than images"), end to end on built-in data.

1. simulate labelled synthetic eye sequences (fixations, saccades, pursuit, blinks) with the
   renderer's ground-truth flow, unlabelled target-domain sequences (the webcam: the scene's look
   stays, the sensor noise is new in every frame), and held-out sequences of both for testing;
2. train SimGAN on the synthetic frames against the target frames (the ``video-demo`` recipe);
3. refine the synthetic sequences twice: **per frame**, as a refine of single images does (a
   noise code drawn for every frame), and **temporal** (one noise code per sequence, what
   ``simgan refine`` does for a sequence set, with the recipe's temporal terms in training);
4. flicker: the warping error (Lai et al. 2018) of synthetic, per-frame, temporal and target test
   sequences with the true flow, and the frame-to-frame jitter of the fitted pupil centre;
5. realism (classifier two-sample test against target frames), gaze (an estimator trained on
   each refined training set, tested on labelled target frames), and the frame-to-frame jitter of
   a gaze prediction on each rendering of the test sequences;
6. write ``OUT/report.html`` (the sequences side by side as animated images, flicker over time)
   and ``OUT/metrics.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import report
from ..evaluation.common import write_metrics
from .common import DemoRun, check_new_out, check_seed, demo_config


@dataclass
class VideoDemoSettings:
    sequences: int  # synthetic training sequences (as many target ones: SimGAN's real set)
    frames: int  # frames per training sequence
    test_sequences: int  # held-out synthetic and target sequences for flicker, realism and gaze
    test_frames: int
    gaze_epochs: float  # passes over each refined training set of the gaze estimators
    preset: str = "video-demo"
    simgan: dict = field(default_factory=dict)  # overrides of the recipe
    gaze: dict = field(default_factory=dict)  # other GazeTrainSettings fields
    c2st: dict = field(default_factory=dict)  # C2STSettings fields
    animated: int = 4  # sequences shown side by side in the report


VIDEO_DEMO_SETTINGS: dict[str, VideoDemoSettings] = {
    # 1,200 training frames are few for a gaze estimator: small batches and more passes, as many as the
    # demo's time allows (docs/results/video.md)
    "default": VideoDemoSettings(sequences=80, frames=15, test_sequences=16, test_frames=25, gaze_epochs=15.0,
                                 gaze={"batch_size": 128, "eval_every_images": 4096}),
    # every step on few frames and few rounds: a smoke run, not a measurement
    "quick": VideoDemoSettings(
        sequences=24, frames=10, test_sequences=6, test_frames=12, gaze_epochs=1.0,
        simgan={"train": {"disc_pretrain": 10, "steps": 15, "buffer_size": 320, "sample_every": 15,
                          "checkpoint_every": 15}},
        gaze={"eval_every_images": 256}, c2st={"max_steps": 150}),
}

SETS = ("synthetic", "per_frame", "temporal", "target")


def run_video_demo(out: str | Path, *, quick: bool = False, device: str = "auto", seed: int = 0, echo=print,
                   settings: VideoDemoSettings | None = None, config_overrides: dict | None = None) -> dict:
    """Run the video demo into the new folder ``out``; returns the metrics written to
    ``OUT/metrics.json``. The numbered steps read top to bottom as the experiment."""
    from ..runtime import resolve_device
    from ..training import train

    out = check_new_out(out)
    seed = check_seed(seed)
    name = "quick" if quick else "default"
    s = settings or VIDEO_DEMO_SETTINGS[name]
    dev = resolve_device(device)
    cfg = demo_config(s.preset, s.simgan, seed=seed, device=device, config_overrides=config_overrides)
    run = DemoRun(out, echo)
    with run.step("data", "1/6 simulating eye sequences: synthetic with their flow, target (webcam) ones"):
        _simulate(run.data, s, seed)
    echo(f"   {s.sequences} synthetic and {s.sequences} target sequences of {s.frames} frames for SimGAN; "
         f"{s.test_sequences} held-out sequences of {s.test_frames} frames of each for the tests")
    with run.step("train", f"2/6 training SimGAN ({s.preset} recipe) on synthetic frames against target frames"):
        trained = train(cfg, run.data / "synthetic", run.data / "real", out / "simgan", progress=False, echo=echo)
    _refine(run, trained.run, device)
    flicker = _flicker(run, s)
    c2st, gaze, gaze_jitter = _realism_and_gaze(run, s, seed, dev)
    run.finish()
    metrics = {
        "warping_error": flicker["warping_error"], "warping_error_x1e3": {k: v * 1e3 for k, v in flicker["warping_error"].items()},
        "pupil_jitter_px": flicker["pupil_jitter_px"], "c2st": {k: v["accuracy"] for k, v in c2st.items()},
        "c2st_detail": c2st, "gaze_mean_deg": {k: v["mean_deg"] for k, v in gaze.items()},
        "gaze_jitter_deg": gaze_jitter, "gaze_train": {k: v["train"] for k, v in gaze.items()},
        "seconds": run.timings["total"], "timings_s": run.timings,
        "settings": {"demo": name, "seed": seed, "device": str(dev), **asdict(s)},
        "simgan_config": cfg.to_dict(),
    }
    write_metrics(out, metrics)
    _report(run, s, metrics, flicker["per_frame_curve"], trained.run)
    return metrics


def _simulate(data: Path, s: VideoDemoSettings, seed: int) -> None:
    """The sequence sets, and per-frame copies (labels without ``sequence`` and ``frame``) that
    ``simgan refine`` refines as single images."""
    from ..datasets import open_dataset, write_dataset
    from ..simulators.eyes import simulate_eyes

    base = 1000 * seed
    simulate_eyes(data / "synthetic", None, sequences=s.sequences, frames=s.frames, seed=base + 1, progress=False)
    simulate_eyes(data / "real", None, sequences=s.sequences, frames=s.frames, seed=base + 2, domain="target",
                  progress=False)
    simulate_eyes(data / "test", None, sequences=s.test_sequences, frames=s.test_frames, seed=base + 3,
                  progress=False)
    simulate_eyes(data / "test_target", None, sequences=s.test_sequences, frames=s.test_frames, seed=base + 4,
                  domain="target", progress=False)
    for name in ("synthetic", "test"):
        ds = open_dataset(data / name)
        labels = [{k: v for k, v in ds.labels(i).items() if k not in ("sequence", "frame")} for i in range(len(ds))]
        write_dataset(data / f"{name}_frames", ds.load(), labels)


def _refine(run: DemoRun, trained: Path, device: str) -> None:
    from ..pipelines.refine import refine_dataset

    with run.step("refine", "3/6 refining per frame (a code per frame) and as sequences (a code per sequence)"):
        for src, dst in (("synthetic_frames", "refined_per_frame"), ("synthetic", "refined_temporal"),
                         ("test_frames", "test_per_frame"), ("test", "test_temporal")):
            refine_dataset(trained, run.data / src, run.data / dst, device=device, progress=False)


def _frames(run: DemoRun) -> dict[str, np.ndarray]:
    from ..datasets import open_dataset
    return {key: open_dataset(run.data / name).load() for key, name in
            (("synthetic", "test"), ("per_frame", "test_per_frame"), ("temporal", "test_temporal"),
             ("target", "test_target"))}


def _flicker(run: DemoRun, s: VideoDemoSettings) -> dict:
    """Step 4: the warping error of each test set (the synthetic sequences' flow serves the three
    renderings of them; the target's own flow its sequences), its per-frame curve, and the pupil
    jitter."""
    from ..datasets.sequences import open_sequences
    from ..evaluation.temporal import pupil_jitter, warping_error, warping_error_curve

    with run.step("flicker", "4/6 flicker: warping error with the true flow, pupil-centre jitter"):
        syn, tgt = open_sequences(run.data / "test", need_flow=True), open_sequences(run.data / "test_target",
                                                                                   need_flow=True)
        frames = _frames(run)
        flows = {k: (np.asarray(syn.flow), np.asarray(syn.occlusion)) for k in ("synthetic", "per_frame", "temporal")}
        flows["target"] = (np.asarray(tgt.flow), np.asarray(tgt.occlusion))
        we = {k: warping_error(frames[k], *flows[k]) for k in SETS}
        curve = {k: warping_error_curve(frames[k], *flows[k], s.test_frames) for k in SETS}
        pupils = np.array([syn.dataset.labels(i)["pupil"] for i in range(len(syn.dataset))])
        jitter = {k: pupil_jitter(frames[k], pupils, s.test_frames) for k in ("synthetic", "per_frame", "temporal")}
        for k in SETS:
            run.echo(f"   {k:>10}: warping error {1e3 * we[k]:.3f} x 1e3" +
                     (f", pupil jitter {jitter[k]:.3f} px" if k in jitter else ""))
        return {"warping_error": we, "per_frame_curve": curve, "pupil_jitter_px": jitter}


def _realism_and_gaze(run: DemoRun, s: VideoDemoSettings, seed: int, dev) -> tuple[dict, dict, dict]:
    """Step 5: each test rendering against the target test frames (two-sample test); a gaze
    estimator per refined training set, tested on the labelled target test frames; and the
    frame-to-frame jitter of a gaze prediction on each rendering of the test sequences, all judged
    by one estimator (the one trained on the per-frame refinement), so that only the frames differ."""
    from ..datasets import open_dataset
    from ..evaluation.common import gaze_labels
    from ..evaluation.gaze import GazeTrainSettings, angular_error_deg, train_gaze_estimator
    from ..evaluation.realism import C2STSettings, classifier_two_sample_test
    from ..evaluation.temporal import gaze_jitter

    with run.step("realism", "5/6 realism (two-sample test against target frames) and gaze estimators"):
        frames = _frames(run)
        c2st = {k: classifier_two_sample_test(frames["target"], frames[k], settings=C2STSettings(**s.c2st), seed=seed,
                                              device=dev, name=k) for k in ("synthetic", "per_frame", "temporal")}
        gs = GazeTrainSettings(**{"max_epochs": s.gaze_epochs, **s.gaze, "seed": seed})
        target_gaze = gaze_labels(open_dataset(run.data / "test_target"), "the target test set")
        gaze = {}
        for k in ("per_frame", "temporal"):
            ds = open_dataset(run.data / f"refined_{k}")
            est = train_gaze_estimator(ds.load(), gaze_labels(ds, f"refined_{k}"), max_value=ds.spec.max_value,
                                       settings=gs, device=dev, name=k)
            gaze[k] = {"mean_deg": float(angular_error_deg(est.predict(frames["target"]), target_gaze).mean()),
                       "train": est.info}
            if k == "per_frame":
                judge = est
        test_gaze = gaze_labels(open_dataset(run.data / "test"), "the synthetic test set")
        jitter = {k: gaze_jitter(judge.predict(frames[k]), test_gaze, s.test_frames)
                  for k in ("synthetic", "per_frame", "temporal")}
        for k, v in c2st.items():
            run.echo(f"   {k:>10}: two-sample accuracy {100 * v['accuracy']:.1f}%, gaze jitter {jitter[k]:.2f} deg" +
                     (f", gaze trained on it {gaze[k]['mean_deg']:.2f} deg" if k in gaze else ""))
        return c2st, gaze, jitter


def _report(run: DemoRun, s: VideoDemoSettings, m: dict, curve: dict, trained: Path) -> None:
    """``OUT/report.html``: the sequences side by side as animated GIFs, flicker per frame, the
    tables; and the console summary."""
    from ..plots import save_animation, save_curves

    frames = _frames(run)
    shown = [frames[k][: s.animated * s.test_frames] for k in SETS]
    gif = save_animation(shown, list(SETS), s.test_frames, run.out / "sequences.gif")
    plot = save_curves(curve, run.out / "flicker.png", xlabel="frame",
                       ylabel="warping error x 1e3 (mean over sequences)", scale=1e3)
    we, c2st, gaze = m["warping_error_x1e3"], m["c2st"], m["gaze_mean_deg"]
    cut = 1 - m["warping_error"]["temporal"] / max(m["warping_error"]["per_frame"], 1e-12)
    gj = m["gaze_jitter_deg"]
    rows = [[k, f"{we[k]:.3f}", f"{m['pupil_jitter_px'][k]:.3f}" if k in m["pupil_jitter_px"] else "-",
             f"{gj[k]:.2f}" if k in gj else "-", f"{100 * c2st[k]:.1f}%" if k in c2st else "-",
             f"{gaze[k]:.2f}" if k in gaze else "-"] for k in SETS]
    headers = ["frames", "warping error x 1e3", "pupil jitter (px)", "gaze jitter (deg)", "two-sample accuracy vs target",
               "gaze (deg)"]
    smoke = " A smoke run: `simgan demo video` gives the experiment's figures." if m["settings"]["demo"] == "quick" else ""
    page = report.write_page(run.out / "report.html", "simgan demo video", "simgan demo video: refining eye sequences", [
        report.note(f"{m['settings']['demo']} settings, seed {m['settings']['seed']}, {m['seconds'] / 60:.1f} min. "
                    "Per frame: every frame refined as a single image, with a noise code of its own (what a refine of "
                    "single images does). Temporal: one code per sequence (what `simgan refine` does for a sequence "
                    "set), with the recipe's temporal terms in training. Warping error: Lai et al. 2018 with the "
                    f"renderer's true flow, pixels in [0, 1]; the target's own is its fresh sensor noise. Jitter: how far the fitted pupil centre (px) and a gaze prediction (deg, by the estimator trained on the per-frame refinement) move from frame to frame beyond the true motion.{smoke}"),
        report.section("Flicker, realism and gaze", report.table(headers, rows),
                       f"<p>Warping error cut by the temporal refinement: <b>{100 * cut:.1f}%</b> against per frame; "
                       f"temporal / target = {we['temporal'] / max(we['target'], 1e-12):.2f}.</p>"),
        report.section("The sequences side by side", report.note("Columns: " + ", ".join(SETS) + "."),
                       report.img(gif, "sequences", mime="image/gif")),
        report.section("Flicker over time", report.img(plot, "flicker")),
        report.training_section(trained, grids=0),
    ])
    run.echo("\n" + report.text_table(headers, rows))
    run.echo(f"warping error cut {100 * cut:.1f}% by refining as sequences; {m['seconds'] / 60:.1f} min")
    run.echo(f"report: {page}")
