"""Helpers shared by the evaluation measures: output folders, metrics files, datasets that must match, gaze
labels, the binomial summary (:mod:`simgan.stats`) and the cumulative-error plot (Figures 7 and 9)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..datasets import Dataset, atomic_write_bytes, open_dataset
from ..gaze_convention import gaze_from_pitch_yaw
from ..stats import binomial_test
from ..errors import SimganError

METRICS_FILE = "metrics.json"
Echo = Callable[[str], None]  # the progress callback, as in train() and refine_dataset()


def quiet(_msg: str) -> None:
    """The default logger of the API: says nothing."""


def prepare_out(out: str | os.PathLike | None, overwrite: bool) -> Path | None:
    """Check ``out`` before any work: a folder (or nothing yet) without results, unless
    ``overwrite``. The folder itself is created only when results are written, so a run that
    fails on bad input leaves nothing behind."""
    if out is None:
        return None
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise SimganError(f"--out {p} is a file, not a folder")
    if (p / METRICS_FILE).exists() and not overwrite:
        raise SimganError(f"{p / METRICS_FILE} already exists; choose another --out or pass --overwrite")
    return p


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def as_torch_ready(images: np.ndarray) -> np.ndarray:
    """``images`` as an array torch can compute with: uint16 has no arithmetic in torch, so it is
    widened to int32 (exact)."""
    images = np.ascontiguousarray(images)
    return images.astype(np.int32) if images.dtype == np.uint16 else images


def write_metrics(out: Path, metrics: dict) -> Path:
    """Write ``OUT/metrics.json`` atomically (non-finite numbers become ``null``)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / METRICS_FILE
    atomic_write_bytes(path, (json.dumps(_jsonable(metrics), indent=2) + "\n").encode("utf-8"))
    return path


def positive(value, flag: str):
    """``value`` unchanged when it is None or a finite number > 0; else a one-line error naming ``flag``."""
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise SimganError(f"{flag} must be a finite number > 0")
    return value


def default_names(paths: list, names: list[str] | None, what: str) -> list[str]:
    """Names for a list of folders: the given ``names`` or the folders' own names, all distinct."""
    if names:
        if len(names) != len(paths):
            raise SimganError(f"got {len(names)} --name for {len(paths)} {what}; give one --name per {what} or none")
        result = list(names)
    else:
        result = [Path(p).resolve().name or str(p) for p in paths]
    seen: set[str] = set()
    for n in result:
        if n in seen:
            raise SimganError(f"two {what}s are both named {n!r}; give each a distinct --name")
        seen.add(n)
    return result


def open_images(path, *, what: str, need_labels: bool = False) -> tuple[Dataset, np.ndarray]:
    """Open a dataset and decode all of it once into an ``N×H×W×C`` integer array."""
    ds = open_dataset(path, need_labels=need_labels, what=what)
    return ds, ds.load()


def same_shape(a: Dataset, b: Dataset, what_a: str, what_b: str) -> None:
    sa, sb = a.spec, b.spec
    if (sa.height, sa.width, sa.channels) != (sb.height, sb.width, sb.channels):
        raise SimganError(f"{what_a} images are {sa.describe()} but {what_b} images are {sb.describe()}; "
                          "they must share size and channels")


def open_like(path, like: Dataset, what: str, like_what: str, *, need_labels: bool = False) -> Dataset:
    """Open a dataset that must share size, channels and bit depth with ``like`` (e.g. a training
    set with the test set, a candidate set with the real set)."""
    ds = open_dataset(path, need_labels=need_labels, what=what)
    same_shape(ds, like, what, like_what)
    if ds.spec.max_value != like.spec.max_value:
        raise SimganError(f"{what} is {ds.spec.bit_depth}-bit but the {like_what} is {like.spec.bit_depth}-bit")
    return ds


def estimator_path(out: Path, name: str) -> Path:
    """``OUT/estimators/NAME.pt``, the name made safe for a file name."""
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("._")
    return out / "estimators" / f"{keep or 'estimator'}.pt"


def plot_cumulative(errors_by_name: Mapping[str, np.ndarray], path: str | os.PathLike, *, max_x: float, mark: float,
                    label: Callable[[str, np.ndarray], str], xlabel: str, ylabel: str, title: str) -> Path:
    """Cumulative curves of per-sample errors, one per training set: the percentage within each
    distance up to ``max_x`` (the paper's Figures 7 and 9); a dashed line at ``mark``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = np.linspace(0.0, max_x, 401)
    for name, err in errors_by_name.items():
        e = np.sort(np.asarray(err, dtype=np.float64).ravel())
        ys = 100.0 * np.searchsorted(e, xs, side="right") / max(1, e.size)
        ax.plot(xs, ys, label=label(name, e))
    ax.axvline(mark, color="0.6", lw=0.8, ls="--")
    ax.set_xlim(0, max_x)
    ax.set_ylim(0, 100)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


# ----------------------------------------------------------------------------------------------
# gaze labels


def gaze_of(labels: Mapping, where: str) -> np.ndarray:
    """The unit gaze vector of one labels line: ``gaze``, else derived from ``pitch``/``yaw``."""
    if "gaze" in labels:
        g = labels["gaze"]
        ok = isinstance(g, (list, tuple)) and len(g) == 3 and all(isinstance(v, (int, float)) for v in g)
        v = np.asarray(g, dtype=np.float64) if ok else None
        if v is None or not np.all(np.isfinite(v)) or np.linalg.norm(v) < 1e-9:
            raise SimganError(f"{where}: \"gaze\" must be a non-zero list of 3 numbers, got {g!r}")
        return v / np.linalg.norm(v)
    if "pitch" in labels and "yaw" in labels:
        try:
            p, y = float(labels["pitch"]), float(labels["yaw"])
        except (TypeError, ValueError):
            raise SimganError(f"{where}: \"pitch\" and \"yaw\" must be numbers (radians)") from None
        if not (math.isfinite(p) and math.isfinite(y)):
            raise SimganError(f"{where}: \"pitch\" and \"yaw\" must be finite")
        return gaze_from_pitch_yaw(p, y)
    raise SimganError(f"{where} has no gaze label: each line needs \"gaze\" [x, y, z] or \"pitch\" and \"yaw\"")


def gaze_labels(ds: Dataset, what: str) -> np.ndarray:
    """``N×3`` unit gaze vectors of a labelled dataset, one-line error on the first bad record."""
    if not getattr(ds, "labelled", False):
        raise SimganError(f"{what} has no labels; gaze evaluation needs \"gaze\" or \"pitch\"/\"yaw\" labels")
    out = np.empty((len(ds), 3), dtype=np.float64)
    for i in range(len(ds)):
        out[i] = gaze_of(ds.labels(i), f"{what} {ds.describe(i)}")
    return out


# ----------------------------------------------------------------------------------------------
# statistics


def binomial_summary(successes: int, trials: int) -> dict:
    """Accuracy, its 95% Clopper–Pearson interval and the one-sided binomial p-value against 50%
    (:func:`simgan.stats.binomial_test`: the test behind the paper's p = 0.148, §3.1, Table 1)."""
    if trials <= 0:
        raise SimganError("no held-out trials to compute an accuracy from")
    t = binomial_test(successes, trials)
    return {"correct": t.correct, "trials": t.trials, "accuracy": t.accuracy, "ci95": list(t.ci95),
            "p_value": t.p_greater}
