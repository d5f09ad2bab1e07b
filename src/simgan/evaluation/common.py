"""Helpers shared by the evaluation measures: output folders, metrics files, gaze labels, statistics."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..datasets import Dataset, atomic_write_bytes, open_dataset
from ..errors import SimganError

METRICS_FILE = "metrics.json"
Log = Callable[[str], None]


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


def write_metrics(out: Path, metrics: dict) -> Path:
    """Write ``OUT/metrics.json`` atomically (non-finite numbers become ``null``)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / METRICS_FILE
    atomic_write_bytes(path, (json.dumps(_jsonable(metrics), indent=2) + "\n").encode("utf-8"))
    return path


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


# ----------------------------------------------------------------------------------------------
# gaze labels


def gaze_from_pitch_yaw(pitch, yaw) -> np.ndarray:
    """Unit gaze vectors from MPIIGaze angles: ``pitch = asin(-g_y)``, ``yaw = atan2(-g_x, -g_z)``.

    Camera coordinates: x right, y down, z away from the camera; looking into the camera is
    ``[0, 0, -1]`` (pitch = yaw = 0).
    """
    pitch = np.asarray(pitch, dtype=np.float64)
    yaw = np.asarray(yaw, dtype=np.float64)
    cp = np.cos(pitch)
    return np.stack([-cp * np.sin(yaw), -np.sin(pitch), -cp * np.cos(yaw)], axis=-1)


def pitch_yaw_from_gaze(gaze) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`gaze_from_pitch_yaw` (the vectors need not be unit length)."""
    g = np.asarray(gaze, dtype=np.float64)
    g = g / np.linalg.norm(g, axis=-1, keepdims=True)
    return np.arcsin(np.clip(-g[..., 1], -1.0, 1.0)), np.arctan2(-g[..., 0], -g[..., 2])


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
    """Accuracy, its 95% Clopper–Pearson interval and the one-sided binomial p-value against 50%.

    The one-sided test (H1: better than chance) is the one behind the paper's p = 0.148 for
    517/1000 correct answers in the visual Turing test (§3.1, Table 1).
    """
    from scipy.stats import binomtest

    if trials <= 0:
        raise SimganError("no held-out trials to compute an accuracy from")
    ci = binomtest(successes, trials, 0.5).proportion_ci(confidence_level=0.95, method="exact")
    p = binomtest(successes, trials, 0.5, alternative="greater").pvalue
    return {"correct": int(successes), "trials": int(trials), "accuracy": successes / trials,
            "ci95": [float(ci.low), float(ci.high)], "p_value": float(p)}


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> list[float]:
    """95% Wilson score interval of a proportion."""
    if trials <= 0:
        return [float("nan"), float("nan")]
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]
