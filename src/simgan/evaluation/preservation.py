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

**Pupil fit** (:func:`fit_pupil`), for eye images (gray; RGB is averaged to gray). At 55×35 the
pupil is a few pixels wide, often not separable from a dark iris, and touches lash lines, lid
shadows and eye corners that are as dark as it. So rather than trusting one threshold, the fit
considers every dark region at several thresholds and keeps the most pupil-like one:

1. Smooth lightly (Gaussian σ = 0.7 px) against sensor noise.
2. Threshold at 8%…60% of the range from the darkest interior level (1st percentile) to the
   bright surround (90th percentile); open each mask with a 3×3 cross and with a 5×5 disc, which
   cut lash lines (1–4 px thick) off the iris.
3. Score every connected region (not touching the border, 5 px to 12% of the image) by its
   contrast with a 2-px ring around it, times penalties for elongation (axis ratio > 1.8), for
   not filling its moment ellipse (area / πab < 0.8) and for being small (< 20 px: lash ends
   and eye corners).
4. Ellipse of the best region by second moments (semi-axes 2√λ of its covariance); its centre
   is the darkness-weighted centroid (weights ``threshold − intensity``), sub-pixel accurate and
   insensitive to single noisy pixels. The region is the pupil, or pupil and iris together when
   they are not separable; either way its centre is the pupil's, up to lid occlusion.

**Pairs** (:func:`fit_pupil_pair`): the synthetic image is fitted as above; the refined image
is fitted the same way but only among regions centred within ``max(6, 0.15·W)`` px (8 px at
W = 55) of the synthetic fit, preferring a region of similar area — as a person annotating both
images would look at the same eye. Independent fits of strongly restyled images pick lash
corners too often (a 4 px mean "shift" on the test below); the pair fit does not.

**Outcomes** (:func:`pair_outcome`), all counted: ``fitted`` (a shift is measured);
``beyond_radius`` (no region within the radius, but the refined image's own fit lies farther
away: the pupil moved at least the radius); ``refined_failed`` (no pupil in the refined image
at all); ``synthetic_failed`` (the synthetic image has no fit: the pair says nothing about the
refiner and is left out). A refiner that moves pupils far must not look good because its pairs
drop out, so the headline is *censored*: over the pairs with a fitted synthetic image, the
failure rate (beyond radius or refined failed), the median and 90th percentile shift with
every failure counted as an infinite shift (``inf`` when more than half / a tenth failed), and
a lower bound of the mean shift with every failure counted at the search radius. The mean and
spread over fitted pairs only are kept beside it for comparison with the paper's 1.1 ± 0.8 px.
The measure's own noise floor (a render against a restyled copy with the pupil unmoved) is in
``docs/results/eyes.md``.
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
from .common import Echo, gaze_labels, prepare_out, quiet, same_shape, write_metrics
from ..report import format_table
from .gaze import GazeEstimator, GazeTrainSettings, angular_error_deg, train_gaze_estimator

PAPER_SHIFT_PX = (1.1, 0.8)  # §3.1: mean ± std of the pupil-centre shift, eye width 55 px

# Pupil-fit constants (see the module docstring).
SMOOTH_SIGMA = 0.7  # px
LEVELS = (0.08, 0.12, 0.16, 0.22, 0.3, 0.4, 0.5, 0.6)  # thresholds, fractions of the dark-to-bright range
EIGHT = np.ones((3, 3), bool)
OPENINGS = (ndimage.generate_binary_structure(2, 1),  # 3×3 cross: cuts 1-px lash lines
            np.array([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0]], bool))
MIN_AREA = 5  # px
GOOD_AREA = 20  # px: smaller regions (lash ends, eye corners) are scored down in proportion
MAX_AREA_FRACTION = 0.12  # of the image
MAX_ROUND_ELONGATION = 1.8  # axis ratio up to which a region counts as round
FULL_FILL = 0.8  # area / ellipse area from which a region counts as a filled ellipse


# ----------------------------------------------------------------------------------------------
# pupil fitting


@dataclass(frozen=True)
class Region:
    """An ellipse fitted to a dark region: centre (x right, y down; pixel centres at integers)."""

    x: float
    y: float
    a: float  # semi-major axis, px (2√λ of the region's covariance)
    b: float  # semi-minor axis, px
    angle: float  # of the major axis, radians from +x towards +y
    area: int  # pixels
    threshold: float  # intensity level (0..1) the region was cut at
    contrast: float  # median of the surrounding ring minus the region's mean (0..1)
    score: float


@dataclass(frozen=True)
class PupilFit:
    """Result of :func:`fit_pupil`: the fitted region, or why there is none."""

    region: Region | None
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.region is not None


def _to_gray(image: np.ndarray, max_value: int) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img.mean(axis=2)
    return img / float(max_value)


def _moments(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float]:
    """Semi-axes and angle of the ellipse with the pixels' second moments (+1/12: a pixel's own
    extent)."""
    cov = np.cov(np.stack([xs, ys]).astype(np.float64), bias=True) + np.eye(2) / 12.0
    evals, evecs = np.linalg.eigh(cov)
    return (2.0 * math.sqrt(max(evals[1], 0.0)), 2.0 * math.sqrt(max(evals[0], 1e-12)),
            float(math.atan2(evecs[1, 1], evecs[0, 1])))


def _best_region(mask: np.ndarray, smooth: np.ndarray, t: float, allowed: np.ndarray, min_contrast: float,
                 area_like: float | None, best: tuple | None) -> tuple | None:
    """Score every connected region of ``mask`` (step 3 of the module doc); keep the best."""
    h, w = smooth.shape
    labels, n = ndimage.label(mask, EIGHT)
    if n == 0:
        return best
    for k, sl in enumerate(ndimage.find_objects(labels), 1):
        if sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == h or sl[1].stop == w:
            continue  # touches the image border: skin, brow or shadow, not a pupil
        ys, xs = np.nonzero(labels[sl] == k)
        area = len(xs)
        if area < MIN_AREA or area > MAX_AREA_FRACTION * h * w:
            continue
        ys, xs = ys + sl[0].start, xs + sl[1].start
        if not allowed[int(round(ys.mean())), int(round(xs.mean()))]:
            continue
        a, b, _ = _moments(xs, ys)
        y0, y1 = max(0, sl[0].start - 3), min(h, sl[0].stop + 3)
        x0, x1 = max(0, sl[1].start - 3), min(w, sl[1].stop + 3)
        region = np.zeros((y1 - y0, x1 - x0), bool)
        region[ys - y0, xs - x0] = True
        ring = ndimage.binary_dilation(region, EIGHT, iterations=2) & ~region
        patch = smooth[y0:y1, x0:x1]
        contrast = float(np.median(patch[ring]) - patch[region].mean())
        if contrast < min_contrast:
            continue
        elongation, fill = a / b, area / (math.pi * a * b)  # fill: 1 for an ellipse, less otherwise
        score = (contrast * min(1.0, MAX_ROUND_ELONGATION / elongation) ** 2 * min(1.0, fill / FULL_FILL) ** 2
                 * min(1.0, area / GOOD_AREA))
        if area_like is not None:
            score *= math.exp(-abs(math.log(area / area_like)))
        if best is None or score > best[0]:
            best = (score, ys, xs, t, contrast)
    return best


def fit_pupil(image: np.ndarray, *, max_value: int = 255, near: tuple[float, float] | None = None,
              radius: float | None = None, area_like: float | None = None, margin: float = 0.06,
              min_contrast: float = 0.06) -> PupilFit:
    """Locate the pupil of one eye image (``H×W`` or ``H×W×C``) by ellipse fitting (module doc).

    ``near`` (x, y) restricts the search to regions whose centre lies within ``radius`` pixels
    (default ``max(6, 0.15·W)``) and ``area_like`` prefers regions of about that many pixels:
    how the refined image of a pair is fitted, given the synthetic image's fit.
    """
    gray = _to_gray(image, max_value)
    h, w = gray.shape
    smooth = ndimage.gaussian_filter(gray, SMOOTH_SIGMA, mode="nearest")
    yy, xx = np.mgrid[0:h, 0:w]
    my, mx = margin * h, margin * w
    interior = (yy >= my) & (yy <= h - 1 - my) & (xx >= mx) & (xx <= w - 1 - mx)
    if not interior.any():
        return PupilFit(None, "image too small")
    allowed = interior
    if near is not None:
        r = radius if radius is not None else search_radius(w)
        allowed = interior & ((xx - near[0]) ** 2 + (yy - near[1]) ** 2 <= r * r)
        if not allowed.any():
            return PupilFit(None, "search window outside the image")
    # Levels from the whole interior in both modes: identical images give identical fits.
    dark, bright = float(np.percentile(smooth[interior], 1)), float(np.percentile(smooth, 90))
    if bright - dark < min_contrast:
        return PupilFit(None, "too little contrast")
    best = None
    for frac in LEVELS:
        t = dark + frac * (bright - dark)
        below = smooth < t
        for opening in OPENINGS:
            best = _best_region(ndimage.binary_opening(below, opening), smooth, t, allowed, min_contrast,
                                area_like, best)
    if best is None:
        return PupilFit(None, "no compact dark region")
    score, ys, xs, t, contrast = best
    weights = np.clip(t - smooth[ys, xs], 0.0, None)
    if weights.sum() <= 0:
        weights = np.ones(len(xs))
    a, b, angle = _moments(xs, ys)
    return PupilFit(Region(float((weights * xs).sum() / weights.sum()), float((weights * ys).sum() / weights.sum()),
                           a, b, angle, len(xs), float(t), contrast, float(score)))


def search_radius(width: int) -> float:
    """The radius around the synthetic fit within which the refined pupil is looked for."""
    return max(6.0, 0.15 * width)


def pair_outcome(synthetic: np.ndarray, refined: np.ndarray, *, max_value: int = 255
                 ) -> tuple[str, float, PupilFit, PupilFit]:
    """``(outcome, shift_px, synthetic fit, refined fit)`` of one pair; outcome is ``fitted``,
    ``beyond_radius`` (shift is the unrestricted fit's distance, > the radius), ``refined_failed``
    or ``synthetic_failed`` (shift NaN). See the module docstring."""
    fs, fr = fit_pupil_pair(synthetic, refined, max_value=max_value)
    if not fs.ok:
        return "synthetic_failed", float("nan"), fs, fr
    if fr.ok:
        return "fitted", math.hypot(fr.region.x - fs.region.x, fr.region.y - fs.region.y), fs, fr
    free = fit_pupil(refined, max_value=max_value)
    if free.ok:
        d = math.hypot(free.region.x - fs.region.x, free.region.y - fs.region.y)
        if d > search_radius(refined.shape[1]):
            return "beyond_radius", d, fs, free
    return "refined_failed", float("nan"), fs, fr


def censored_summary(shifts: np.ndarray, n_failed: int, radius: float) -> dict:
    """Headline statistics of pupil shifts where ``n_failed`` more pairs failed or moved beyond
    ``radius``: failures count as an infinite shift in the quantiles and as ``radius`` in the
    mean, which is then a lower bound of the true mean."""
    n = len(shifts) + n_failed
    if n == 0:
        return {"n_eligible": 0, "failure_rate": float("nan"), "median_px_censored": float("nan"),
                "p90_px_censored": float("nan"), "mean_px_lower_bound": float("nan")}
    full = np.concatenate([np.sort(np.asarray(shifts, dtype=np.float64)), np.full(n_failed, np.inf)])

    def quantile(q: float) -> float:
        # the lower empirical quantile: defined (and +inf when it falls among the failures)
        return float(full[min(n - 1, int(math.ceil(q * n)) - 1)])

    return {
        "n_eligible": int(n),
        "failure_rate": n_failed / n,
        "median_px_censored": quantile(0.5),
        "p90_px_censored": quantile(0.9),
        "mean_px_lower_bound": float((np.sum(shifts) + n_failed * radius) / n),
    }


def fit_pupil_pair(synthetic: np.ndarray, refined: np.ndarray, *, max_value: int = 255) -> tuple[PupilFit, PupilFit]:
    """Fit the synthetic image, then the refined one near it with a similar area (module doc)."""
    fs = fit_pupil(synthetic, max_value=max_value)
    if not fs.ok:
        return fs, PupilFit(None, "synthetic image not fitted")
    fr = fit_pupil(refined, max_value=max_value, near=(fs.region.x, fs.region.y), area_like=fs.region.area)
    return fs, fr


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
                          overwrite: bool = False, echo: Echo = quiet) -> dict:
    """Measure label preservation between a synthetic set and its refined version (module doc).

    ``estimator``: a :class:`GazeEstimator` or the path of one saved by ``simgan evaluate gaze``;
    without one and with ``train_estimator``, one is trained on the synthetic images that are
    not among the measured pairs (on all of them if that leaves too few). The gaze part runs only
    when the synthetic set has ``gaze`` or ``pitch``/``yaw`` labels. ``max_pairs`` (None: all)
    bounds the number of pairs measured, drawn at random with ``seed``.

    Writes ``OUT/metrics.json`` and ``OUT/pupil_shift_hist.png`` when ``out`` is given.
    """
    out_dir = prepare_out(out, overwrite)
    syn_ds, ref_ds, i_syn, i_ref = _open_pairs(synthetic, refined)
    estimator = _given_estimator(estimator, syn_ds, device)
    has_gaze = _has_gaze(syn_ds)
    gaze = gaze_labels(syn_ds, "synthetic set") if has_gaze else None
    n_all = len(i_syn)
    chosen = _choose_pairs(n_all, max_pairs, seed)
    max_value = syn_ds.spec.max_value
    echo(f"[preservation] loading {len(chosen)} of {n_all} pairs")
    syn = syn_ds.read_many(i_syn[chosen].tolist())
    ref = ref_ds.read_many(i_ref[chosen].tolist())
    diff = np.abs(ref.astype(np.float64) - syn.astype(np.float64)) / max_value
    metrics: dict = {
        "measure": "preservation",
        "paper": "§3.1: pupil centre moved 1.1 ± 0.8 px (eye width 55 px) between synthetic and refined",
        "synthetic": {"path": str(synthetic), "n": len(syn_ds), "image": syn_ds.spec.describe()},
        "refined": {"path": str(refined), "n": len(ref_ds)},
        "n_pairs": len(chosen), "n_pairs_available": n_all,
        "settings": {"max_pairs": max_pairs, "seed": seed, "device": device},
        "pixels": {"mean_abs_change": float(diff.mean()), "mean_abs_change_levels": float(diff.mean() * max_value)},
    }
    shifts = None
    if pupil:
        shifts, metrics["pupil"] = _pupil_part(syn, ref, max_value, syn_ds, i_syn[chosen])
        _log_pupil(metrics["pupil"], echo)
    if has_gaze and (estimator is not None or train_estimator):
        metrics["gaze"] = _gaze_part(estimator, syn_ds, i_syn, gaze, chosen, syn, ref,
                                     dict(settings=settings, max_epochs=max_epochs, seed=seed, device=device), echo)
    else:
        metrics["gaze"] = None
        metrics["gaze_skipped"] = ("the synthetic set has no gaze or pitch/yaw labels" if not has_gaze
                                   else "no estimator given and training one was switched off")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if shifts is not None:
            plot_shift_histogram(shifts, out_dir / "pupil_shift_hist.png")
        write_metrics(out_dir, metrics)  # last: a metrics.json means the run finished
    return metrics


def _gaze_part(estimator, syn_ds: Dataset, i_syn: np.ndarray, gaze: np.ndarray, chosen: np.ndarray,
               syn: np.ndarray, ref: np.ndarray, training: dict, echo: Echo) -> dict:
    """The gaze-prediction change over the measured pairs, with the given estimator or one
    trained here on the synthetic images outside them (``training``: its settings)."""
    if estimator is None:
        estimator, source = _train_on_synthetic(syn_ds, i_syn, gaze, chosen, training["settings"],
                                                training["max_epochs"], training["seed"], training["device"], echo)
    else:
        source = {"trained_on": "given estimator", "info": {k: v for k, v in estimator.info.items()
                                                          if k in ("n_train", "best_val_deg", "stopped")}}
    result = _gaze_change(estimator, syn, ref, gaze[i_syn[chosen]], source)
    echo(f"[preservation] gaze prediction change {result['change_mean_deg']:.2f} ± {result['change_std_deg']:.2f}°")
    return result


def _open_pairs(synthetic, refined) -> tuple[Dataset, Dataset, np.ndarray, np.ndarray]:
    """Both sets, checked to match, and the indices of their pairs (:func:`pair_indices`)."""
    syn_ds = open_dataset(synthetic, what="synthetic set")
    ref_ds = open_dataset(refined, what="refined set")
    same_shape(syn_ds, ref_ds, "synthetic set", "refined set")
    if syn_ds.spec.bit_depth != ref_ds.spec.bit_depth:
        raise SimganError(f"the synthetic set is {syn_ds.spec.bit_depth}-bit but the refined set "
                          f"{ref_ds.spec.bit_depth}-bit")
    return (syn_ds, ref_ds, *pair_indices(syn_ds, ref_ds))


def _given_estimator(estimator, syn_ds: Dataset, device: str) -> GazeEstimator | None:
    """The caller's estimator (loaded from its path), checked to read the synthetic images."""
    if isinstance(estimator, (str, os.PathLike)):
        estimator = GazeEstimator.load(estimator, device=device)
    if estimator is not None:
        spec = syn_ds.spec
        estimator.check_images(np.zeros((1, spec.height, spec.width, spec.channels), spec.dtype), "synthetic images")
    return estimator


def _choose_pairs(n_all: int, max_pairs: int | None, seed: int) -> np.ndarray:
    """Sorted indices of the measured pairs: all, or ``max_pairs`` drawn at random with ``seed``."""
    if max_pairs is not None and n_all > max_pairs:
        return np.sort(np.random.RandomState(seed).choice(n_all, max_pairs, replace=False))
    return np.arange(n_all)


def _log_pupil(pm: dict, echo: Echo) -> None:
    echo(f"[preservation] pupil shift: censored median {pm['median_px_censored']:.2f} px, "
        f"{100 * pm['failure_rate']:.1f}% of pairs failed or moved beyond {pm['search_radius_px']:.0f} px; "
        f"over fitted pairs {pm['mean_px']:.2f} ± {pm['std_px']:.2f} px" if pm["n_eligible"] else
        "[preservation] no synthetic pupil could be fitted")


def _train_on_synthetic(syn_ds: Dataset, i_syn: np.ndarray, gaze: np.ndarray, chosen: np.ndarray,
                        settings: GazeTrainSettings | None, max_epochs: float | None, seed: int, device: str,
                        echo: Echo) -> tuple[GazeEstimator, dict]:
    """A gaze estimator trained on the synthetic images outside the measured pairs (on all of
    them when the rest is smaller than the measured set), and the record of what it saw."""
    n_all = len(i_syn)
    rest = np.setdiff1d(np.arange(n_all), chosen)
    own = len(rest) >= max(len(chosen), 2)
    train_rows = rest if own else np.arange(n_all)
    echo(f"[preservation] training a gaze estimator on {len(train_rows)} synthetic images")
    s = copy.deepcopy(settings) if settings is not None else GazeTrainSettings()
    if max_epochs is not None:
        s.max_epochs = max_epochs
    s.seed = seed
    images = syn_ds.read_many(i_syn[train_rows].tolist()) if own else syn_ds.load()
    estimator = train_gaze_estimator(images, gaze[i_syn[train_rows]], max_value=syn_ds.spec.max_value, settings=s,
                                     device=device, echo=echo, name="synthetic")
    return estimator, {"trained_on": "synthetic set", "n_train": int(len(train_rows)),
                       "includes_measured_images": not own}


def _gaze_change(estimator: GazeEstimator, syn: np.ndarray, ref: np.ndarray, true: np.ndarray, source: dict) -> dict:
    """How far refinement moves the estimator's gaze prediction, and each prediction's error."""
    p_syn = estimator.predict(syn)
    p_ref = estimator.predict(ref)
    change = angular_error_deg(p_ref, p_syn)
    e_syn, e_ref = angular_error_deg(p_syn, true), angular_error_deg(p_ref, true)
    return {
        "estimator": source,
        "change_mean_deg": float(change.mean()), "change_std_deg": float(change.std(ddof=1)) if len(change) > 1 else 0.0,
        "change_median_deg": float(np.median(change)),
        "error_vs_label_synthetic_deg": float(e_syn.mean()), "error_vs_label_refined_deg": float(e_ref.mean()),
    }


def _pupil_part(syn: np.ndarray, ref: np.ndarray, max_value: int, ds: Dataset,
                rows: np.ndarray) -> tuple[np.ndarray, dict]:
    """Fit every pair; ``rows[k]`` is the index in ``ds`` of synthetic image ``syn[k]`` (for its
    ``pupil`` label, when it has one)."""
    n = len(syn)
    shifts = np.full(n, np.nan)
    outcomes = {"fitted": 0, "beyond_radius": 0, "refined_failed": 0, "synthetic_failed": 0}
    failures: dict[str, int] = {}
    beyond = []
    label_err = []
    for k in range(n):
        outcome, d, fs, fr = pair_outcome(syn[k], ref[k], max_value=max_value)
        outcomes[outcome] += 1
        if outcome != "fitted":
            key = (f"synthetic: {fs.failure}" if outcome == "synthetic_failed" else
                   "refined: moved beyond the search radius" if outcome == "beyond_radius" else
                   f"refined: {fr.failure}")
            failures[key] = failures.get(key, 0) + 1
            if outcome == "beyond_radius":
                beyond.append(d)
            if outcome == "synthetic_failed":
                continue
        else:
            shifts[k] = d
        lab = ds.labels(int(rows[k])) if getattr(ds, "labelled", False) else {}
        p = lab.get("pupil")
        if isinstance(p, (list, tuple)) and len(p) == 2:
            label_err.append(math.hypot(fs.region.x - float(p[0]), fs.region.y - float(p[1])))
    ok = shifts[np.isfinite(shifts)]
    radius = search_radius(int(syn.shape[2]))
    n_bad = outcomes["beyond_radius"] + outcomes["refined_failed"]
    m = {
        **censored_summary(ok, n_bad, radius),
        "outcomes": outcomes, "search_radius_px": radius,
        "beyond_radius_distances_px": sorted(float(v) for v in beyond),
        "n_measured": int(ok.size), "n_failed": int(n - ok.size), "failures": failures,
        "mean_px": float(ok.mean()) if ok.size else float("nan"),
        "std_px": float(ok.std(ddof=1)) if ok.size > 1 else float("nan"),
        "median_px": float(np.median(ok)) if ok.size else float("nan"),
        "p90_px": float(np.percentile(ok, 90)) if ok.size else float("nan"),
        "within_1px_pct": float(100 * np.mean(ok <= 1.0)) if ok.size else float("nan"),
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
    rows = []
    p = metrics.get("pupil")
    if p is not None:
        if p.get("n_eligible"):
            rows.append(("pupil shift, censored median / p90 (px)",
                         f"{p['median_px_censored']:.2f} / {p['p90_px_censored']:.2f}  (failures count as inf)"))
            rows.append(("pairs failed or moved beyond the radius",
                         f"{100 * p['failure_rate']:.1f}%  ({p['outcomes']['beyond_radius']} beyond "
                         f"{p['search_radius_px']:.0f} px, {p['outcomes']['refined_failed']} not found)"))
            rows.append(("pupil shift, mean lower bound (px)", f"{p['mean_px_lower_bound']:.2f}  (failures at the radius)"))
        if p["n_measured"]:
            rows.append(("pupil shift over fitted pairs (px)", f"{p['mean_px']:.2f} ± {p['std_px']:.2f}  (median {p['median_px']:.2f})"))
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
    return format_table(("measure", "value"), rows) + f"\n({metrics['n_pairs']} of {metrics['n_pairs_available']} pairs; paper: 1.1 ± 0.8 px)"
