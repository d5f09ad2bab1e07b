"""Does refinement keep the labels? Pupil shift and gaze-prediction change per image pair (§3.1).

The refiner must not change what the simulator's labels describe (§2.1, self-regularisation).
The paper checks it for gaze by fitting ellipses to the pupil in 100 synthetic images and their
refined versions: the centres moved 1.1 ± 0.8 px (eye width 55 px) (§3.1, "Preserving Ground
Truth"). This module measures the same automatically on every pair (or a random sample of
``max_pairs``), plus a second, label-level check where the images carry gaze labels: how far a
gaze estimator's prediction moves between the synthetic image and its refined version.

**Pairs.** A synthetic image and its refined version share their relative file path (``simgan
refine`` keeps names and labels). Every synthetic file must have a refined counterpart of the same
size; refined files without a synthetic counterpart are ignored.

**Pupil fit** (:func:`fit_pupil`), for eye images (gray; RGB is averaged to gray):

1. Smooth lightly (Gaussian σ = 0.7 px) against sensor noise.
2. Seed: the strongest dark blob away from the image border (a difference of Gaussians at the
   scale of an iris, maximised over the central region; a ``margin`` fraction of each side is
   excluded because eye corners, lashes and brows are dark too), then the darkest pixel near it.
3. *Blob*: the 8-connected region around the seed darker than half-way between the seed's level
   and the bright surround (90th percentile of a window around it). At 55×35 this is the pupil
   together with a dark iris, or the pupil alone when the iris is light. If that region leaks
   into dark skin or shadow (it touches the border or covers more than a quarter of the image),
   the threshold is lowered to 40%, 30%, 20% of the contrast until it does not.
4. *Core*: inside the blob, the region darker than half-way between the seed's level and the
   blob's median — the pupil when it is distinguishable from the iris (≥ 4 px and at most 70%
   of the blob).
5. Ellipse by second moments of the chosen region (semi-axes 2√λ of its covariance); its centre
   is the darkness-weighted centroid (weights ``threshold − intensity``), which is sub-pixel
   accurate and insensitive to single noisy pixels.

A fit fails when there is too little contrast, or the region touches the image border, is
tiny, covers more than a quarter of the image, or is very elongated (ratio > 5). For a pair both
images are fitted at the same level (core if both have one, else blob); failed pairs are counted
and left out of the statistics.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..datasets import Dataset, open_dataset
from ..errors import SimganError
from .common import Log, gaze_labels, prepare_out, quiet, same_shape, write_metrics
from .gaze import GazeEstimator, GazeTrainSettings, _table, angular_error_deg, train_gaze_estimator

PAPER_SHIFT_PX = (1.1, 0.8)  # §3.1: mean ± std of the pupil-centre shift, eye width 55 px
BLOB_FRACTIONS = (0.5, 0.4, 0.3, 0.2)  # blob thresholds, as fractions of the seed-to-surround contrast


# ----------------------------------------------------------------------------------------------
# pupil fitting


@dataclass(frozen=True)
class Region:
    """An ellipse fitted to a dark region: centre (x right, y down; pixel centres at integers)."""

    x: float
    y: float
    a: float  # semi-major axis, px
    b: float  # semi-minor axis, px
    angle: float  # of the major axis, radians from +x towards +y
    area: int
    threshold: float


@dataclass(frozen=True)
class PupilFit:
    """Result of :func:`fit_pupil`: the blob and (when separable) the core, or why it failed."""

    blob: Region | None
    core: Region | None
    seed: tuple[int, int] | None
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.blob is not None

    @property
    def best(self) -> Region | None:
        return self.core or self.blob


def _to_gray(image: np.ndarray, max_value: int) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img.mean(axis=2)
    return img / float(max_value)


def _region(mask: np.ndarray, smooth: np.ndarray, threshold: float) -> Region:
    ys, xs = np.nonzero(mask)
    w = np.clip(threshold - smooth[ys, xs], 0.0, None)
    if w.sum() <= 0:
        w = np.ones_like(w)
    cx = float((w * xs).sum() / w.sum())
    cy = float((w * ys).sum() / w.sum())
    if len(xs) > 1:
        cov = np.cov(np.stack([xs, ys]).astype(np.float64), bias=True)
        evals, evecs = np.linalg.eigh(cov + np.eye(2) / 12.0)  # +1/12: a pixel's own extent
    else:
        evals, evecs = np.array([1 / 12, 1 / 12]), np.eye(2)
    a, b = 2.0 * math.sqrt(max(evals[1], 0.0)), 2.0 * math.sqrt(max(evals[0], 0.0))
    angle = float(math.atan2(evecs[1, 1], evecs[0, 1]))
    return Region(cx, cy, a, b, angle, int(len(xs)), float(threshold))


def _component(below: np.ndarray, seed: tuple[int, int]) -> np.ndarray | None:
    if not below[seed]:
        return None
    labels, _ = ndimage.label(below, structure=np.ones((3, 3), bool))
    return labels == labels[seed]


def _check_region(mask: np.ndarray, reg: Region, shape: tuple[int, int]) -> str | None:
    h, w = shape
    if reg.area < 4:
        return "region too small"
    if reg.area > 0.25 * h * w:
        return "region too large (merged with the surround)"
    if mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
        return "region touches the image border"
    if reg.b <= 0 or reg.a / max(reg.b, 1e-9) > 5.0:
        return "region too elongated"
    return None


def fit_pupil(image: np.ndarray, *, max_value: int = 255, margin: float = 0.1,
              min_contrast: float = 0.06) -> PupilFit:
    """Locate the pupil of one eye image (``H×W`` or ``H×W×C``) by ellipse fitting (module doc)."""
    gray = _to_gray(image, max_value)
    h, w = gray.shape
    smooth = ndimage.gaussian_filter(gray, 0.7, mode="nearest")
    # (2) seed: strongest dark blob at about iris scale, away from the border
    s1 = max(1.0, w / 40.0)
    dog = ndimage.gaussian_filter(gray, 2.5 * s1, mode="nearest") - ndimage.gaussian_filter(gray, s1, mode="nearest")
    my, mx = int(round(margin * h)), int(round(margin * w))
    inner = dog[my:h - my, mx:w - mx]
    if inner.size == 0:
        return PupilFit(None, None, None, "image too small")
    py, px = np.unravel_index(int(np.argmax(inner)), inner.shape)
    py, px = py + my, px + mx
    r = int(math.ceil(2 * s1))
    y0, y1, x0, x1 = max(0, py - r), min(h, py + r + 1), max(0, px - r), min(w, px + r + 1)
    sy, sx = np.unravel_index(int(np.argmin(smooth[y0:y1, x0:x1])), (y1 - y0, x1 - x0))
    seed = (int(sy + y0), int(sx + x0))
    # (3) blob at half contrast against the bright surround
    rw = max(6, int(round(0.22 * w)))
    win = smooth[max(0, seed[0] - rw):seed[0] + rw + 1, max(0, seed[1] - rw):seed[1] + rw + 1]
    dark, bright = float(smooth[seed]), float(np.percentile(win, 90))
    if bright - dark < min_contrast:
        return PupilFit(None, None, seed, "too little contrast")
    blob, mask, why = None, None, "no dark region"
    for frac in BLOB_FRACTIONS:  # half contrast first; lower if the region leaks into a dark surround
        t_blob = dark + frac * (bright - dark)
        mask = _component(smooth < t_blob, seed)
        if mask is None:
            break
        blob = _region(mask, smooth, t_blob)
        why = _check_region(mask, blob, (h, w))
        if why is None or why == "region too small":
            break
    if why is not None:
        return PupilFit(None, None, seed, why)
    # (4) core: the pupil inside a darker-than-surround iris, when it stands out
    core = None
    inside = float(np.median(smooth[mask]))
    if inside - dark >= 0.5 * min_contrast:
        t_core = dark + 0.5 * (inside - dark)
        cmask = _component((smooth < t_core) & mask, seed)
        if cmask is not None:
            c = _region(cmask, smooth, t_core)
            if 4 <= c.area <= 0.7 * blob.area and _check_region(cmask, c, (h, w)) is None:
                core = c
    return PupilFit(blob, core, seed)


def pair_shift(fs: PupilFit, fr: PupilFit) -> tuple[float, float, str] | None:
    """Centre shift ``(dx, dy, level)`` between two fits at a common level, or ``None``."""
    if not (fs.ok and fr.ok):
        return None
    if fs.core is not None and fr.core is not None:
        a, b, level = fs.core, fr.core, "core"
    else:
        a, b, level = fs.blob, fr.blob, "blob"
    return b.x - a.x, b.y - a.y, level


# ----------------------------------------------------------------------------------------------
# pairing


def pair_indices(synthetic: Dataset, refined: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(i_syn, i_ref)`` of images sharing a relative path (by position for formats
    without file names, which must then have equal lengths)."""
    s_rec, r_rec = getattr(synthetic, "records", None), getattr(refined, "records", None)
    if s_rec is not None and r_rec is not None:
        where = {rec.file: i for i, rec in enumerate(r_rec)}
        missing = [rec.file for rec in s_rec if rec.file not in where]
        if missing:
            raise SimganError(f"the refined set lacks {len(missing)} of the {len(s_rec)} synthetic files "
                              f"(e.g. {missing[0]!r}); pairs are matched by relative file path")
        return np.arange(len(s_rec)), np.array([where[rec.file] for rec in s_rec])
    if len(synthetic) != len(refined):
        raise SimganError(f"the synthetic set has {len(synthetic)} images but the refined set {len(refined)}; "
                          "without file names they are paired by position")
    return np.arange(len(synthetic)), np.arange(len(refined))


def _has_gaze(ds: Dataset) -> bool:
    if not getattr(ds, "labelled", False) or len(ds) == 0:
        return False
    lab = ds.labels(0)
    return "gaze" in lab or ("pitch" in lab and "yaw" in lab)


# ----------------------------------------------------------------------------------------------
# the command


def evaluate_preservation(synthetic: str | os.PathLike, refined: str | os.PathLike,
                          out: str | os.PathLike | None = None, *,
                          estimator: GazeEstimator | str | os.PathLike | None = None, train_estimator: bool = True,
                          max_pairs: int | None = 2000, pupil: bool = True, device: str = "auto", seed: int = 0,
                          settings: GazeTrainSettings | None = None, max_epochs: float | None = None,
                          overwrite: bool = False, log: Log = quiet) -> dict:
    """Measure label preservation between a synthetic set and its refined version (module doc).

    ``estimator``: a :class:`GazeEstimator` or the path of one saved by ``simgan evaluate gaze``;
    without one and with ``train_estimator``, one is trained on the synthetic images that are
    not among the measured pairs (on all of them if that leaves too few). The gaze part runs only
    when the synthetic set has ``gaze`` or ``pitch``/``yaw`` labels. ``max_pairs`` (None: all)
    bounds the number of pairs measured, drawn at random with ``seed``.

    Writes ``OUT/metrics.json`` and ``OUT/pupil_shift_hist.png`` when ``out`` is given.
    """
    out_dir = prepare_out(out, overwrite)
    syn_ds = open_dataset(synthetic, what="synthetic set")
    ref_ds = open_dataset(refined, what="refined set")
    same_shape(syn_ds, ref_ds, "synthetic set", "refined set")
    if syn_ds.spec.bit_depth != ref_ds.spec.bit_depth:
        raise SimganError(f"the synthetic set is {syn_ds.spec.bit_depth}-bit but the refined set "
                          f"{ref_ds.spec.bit_depth}-bit")
    i_syn, i_ref = pair_indices(syn_ds, ref_ds)
    if isinstance(estimator, (str, os.PathLike)):
        estimator = GazeEstimator.load(estimator, device=device)
    if estimator is not None:
        estimator.check_images(np.zeros((1, syn_ds.spec.height, syn_ds.spec.width, syn_ds.spec.channels),
                                        syn_ds.spec.dtype), "synthetic images")
    has_gaze = _has_gaze(syn_ds)
    gaze = gaze_labels(syn_ds, "synthetic set") if has_gaze else None

    n_all = len(i_syn)
    rng = np.random.RandomState(seed)
    if max_pairs is not None and n_all > max_pairs:
        chosen = np.sort(rng.choice(n_all, max_pairs, replace=False))
    else:
        chosen = np.arange(n_all)
    max_value = syn_ds.spec.max_value
    log(f"[preservation] loading {len(chosen)} of {n_all} pairs")
    syn = syn_ds.read_many(i_syn[chosen].tolist())
    ref = ref_ds.read_many(i_ref[chosen].tolist())

    metrics: dict = {
        "measure": "preservation",
        "paper": "§3.1: pupil centre moved 1.1 ± 0.8 px (eye width 55 px) between synthetic and refined",
        "synthetic": {"path": str(synthetic), "n": len(syn_ds), "image": syn_ds.spec.describe()},
        "refined": {"path": str(refined), "n": len(ref_ds)},
        "n_pairs": len(chosen), "n_pairs_available": n_all,
        "settings": {"max_pairs": max_pairs, "seed": seed, "device": device},
    }
    diff = np.abs(ref.astype(np.float64) - syn.astype(np.float64)) / max_value
    metrics["pixels"] = {"mean_abs_change": float(diff.mean()),
                         "mean_abs_change_levels": float(diff.mean() * max_value)}

    shifts = None
    if pupil:
        shifts, pupil_metrics = _pupil_part(syn, ref, max_value, syn_ds, i_syn[chosen])
        metrics["pupil"] = pupil_metrics
        log(f"[preservation] pupil shift {pupil_metrics['mean_px']:.2f} ± {pupil_metrics['std_px']:.2f} px "
            f"({pupil_metrics['n_failed']} failed fits)" if pupil_metrics["n_measured"] else
            "[preservation] no pupil could be fitted")

    if has_gaze and (estimator is not None or train_estimator):
        if estimator is None:
            rest = np.setdiff1d(np.arange(n_all), chosen)
            own = len(rest) >= max(len(chosen), 2)
            train_rows = rest if own else np.arange(n_all)
            log(f"[preservation] training a gaze estimator on {len(train_rows)} synthetic images")
            s = copy.deepcopy(settings) if settings is not None else GazeTrainSettings()
            if max_epochs is not None:
                s.max_epochs = max_epochs
            s.seed = seed
            images = syn_ds.read_many(i_syn[train_rows].tolist()) if own else syn_ds.load()
            estimator = train_gaze_estimator(images, gaze[i_syn[train_rows]], max_value=max_value, settings=s,
                                             device=device, log=log, name="synthetic")
            source = {"trained_on": "synthetic set", "n_train": int(len(train_rows)),
                      "includes_measured_images": not own}
        else:
            source = {"trained_on": "given estimator", "info": {k: v for k, v in estimator.info.items()
                                                              if k in ("n_train", "best_val_deg", "stopped")}}
        p_syn = estimator.predict(syn)
        p_ref = estimator.predict(ref)
        change = angular_error_deg(p_ref, p_syn)
        true = gaze[i_syn[chosen]]
        e_syn, e_ref = angular_error_deg(p_syn, true), angular_error_deg(p_ref, true)
        metrics["gaze"] = {
            "estimator": source,
            "change_mean_deg": float(change.mean()), "change_std_deg": float(change.std(ddof=1)) if len(change) > 1 else 0.0,
            "change_median_deg": float(np.median(change)),
            "error_vs_label_synthetic_deg": float(e_syn.mean()), "error_vs_label_refined_deg": float(e_ref.mean()),
        }
        log(f"[preservation] gaze prediction change {change.mean():.2f} ± {metrics['gaze']['change_std_deg']:.2f}°")
    elif not has_gaze:
        metrics["gaze"] = None
        metrics["gaze_skipped"] = "the synthetic set has no gaze or pitch/yaw labels"

    if out_dir is not None:
        write_metrics(out_dir, metrics)
        if shifts is not None:
            plot_shift_histogram(shifts, out_dir / "pupil_shift_hist.png")
    return metrics


def _pupil_part(syn: np.ndarray, ref: np.ndarray, max_value: int, ds: Dataset,
                rows: np.ndarray) -> tuple[np.ndarray, dict]:
    """Fit every pair; ``rows[k]`` is the index in ``ds`` of synthetic image ``syn[k]`` (for its
    ``pupil`` label, when it has one)."""
    n = len(syn)
    shifts = np.full(n, np.nan)
    levels = {"core": 0, "blob": 0}
    failures: dict[str, int] = {}
    label_err = []
    for k in range(n):
        fs = fit_pupil(syn[k], max_value=max_value)
        fr = fit_pupil(ref[k], max_value=max_value)
        res = pair_shift(fs, fr)
        if res is None:
            why = fs.failure if not fs.ok else fr.failure
            key = ("synthetic: " if not fs.ok else "refined: ") + str(why)
            failures[key] = failures.get(key, 0) + 1
            continue
        dx, dy, level = res
        shifts[k] = math.hypot(dx, dy)
        levels[level] += 1
        lab = ds.labels(int(rows[k])) if getattr(ds, "labelled", False) else {}
        p = lab.get("pupil")
        if isinstance(p, (list, tuple)) and len(p) == 2 and fs.best is not None:
            label_err.append(math.hypot(fs.best.x - float(p[0]), fs.best.y - float(p[1])))
    ok = shifts[np.isfinite(shifts)]
    m = {
        "n_measured": int(ok.size), "n_failed": int(n - ok.size), "failures": failures,
        "mean_px": float(ok.mean()) if ok.size else float("nan"),
        "std_px": float(ok.std(ddof=1)) if ok.size > 1 else float("nan"),
        "median_px": float(np.median(ok)) if ok.size else float("nan"),
        "p90_px": float(np.percentile(ok, 90)) if ok.size else float("nan"),
        "within_1px_pct": float(100 * np.mean(ok <= 1.0)) if ok.size else float("nan"),
        "levels": levels,
        "image_width_px": int(syn.shape[2]),
        "paper_mean_std_px": list(PAPER_SHIFT_PX),
    }
    if label_err:
        # How well the fitter finds the simulator's own pupil label on the synthetic images.
        m["fit_vs_label_synthetic_mean_px"] = float(np.mean(label_err))
        m["fit_vs_label_synthetic_median_px"] = float(np.median(label_err))
    return shifts, m


def plot_shift_histogram(shifts: np.ndarray, path: str | os.PathLike) -> Path:
    """Histogram of the per-pair pupil-centre shift (px)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ok = shifts[np.isfinite(shifts)]
    fig = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    top = max(3.0, float(np.percentile(ok, 99)) if ok.size else 3.0)
    ax.hist(ok, bins=np.linspace(0, top, 31), color="tab:blue", alpha=0.85)
    if ok.size:
        ax.axvline(ok.mean(), color="k", lw=1, label=f"mean {ok.mean():.2f} px (n={ok.size})")
    ax.axvline(PAPER_SHIFT_PX[0], color="tab:red", lw=1, ls="--", label="paper: 1.1 ± 0.8 px")
    ax.set_xlabel("pupil centre shift, synthetic → refined [px]")
    ax.set_ylabel("pairs")
    ax.set_title(f"Pupil shift ({int(np.sum(~np.isfinite(shifts)))} failed fits)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


def format_preservation_table(metrics: dict) -> str:
    """Plain-text table of :func:`evaluate_preservation`'s results."""
    rows = [("measure", "value")]
    p = metrics.get("pupil")
    if p is not None:
        if p["n_measured"]:
            rows.append(("pupil centre shift (px)", f"{p['mean_px']:.2f} ± {p['std_px']:.2f}  (median {p['median_px']:.2f})"))
        rows.append(("pairs fitted / failed", f"{p['n_measured']} / {p['n_failed']}"))
        if "fit_vs_label_synthetic_mean_px" in p:
            rows.append(("fit vs pupil label, synthetic (px)", f"{p['fit_vs_label_synthetic_mean_px']:.2f}"))
    g = metrics.get("gaze")
    if g:
        rows.append(("gaze prediction change (°)", f"{g['change_mean_deg']:.2f} ± {g['change_std_deg']:.2f}"))
        rows.append(("gaze error vs label: synthetic / refined (°)",
                     f"{g['error_vs_label_synthetic_deg']:.2f} / {g['error_vs_label_refined_deg']:.2f}"))
    elif metrics.get("gaze_skipped"):
        rows.append(("gaze", "skipped: " + metrics["gaze_skipped"]))
    rows.append(("mean |pixel change| (levels)", f"{metrics['pixels']['mean_abs_change_levels']:.2f}"))
    return _table(rows) + f"\n({metrics['n_pairs']} of {metrics['n_pairs_available']} pairs; paper: 1.1 ± 0.8 px)"
