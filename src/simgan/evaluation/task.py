"""The downstream test for any label: does a model trained on refined images do better on real ones?

S+U learning is worth what it does for the task the labels are for (§1: refined images replace
synthetic ones as training data). ``simgan evaluate gaze`` and ``pose`` are the paper's two tasks;
this module is the same test for a user's own label, whatever it is:

* ``class``: a category per image (integers or strings): the model's **accuracy** (higher is better);
* ``vector``: a number or a fixed-length list of numbers per image: the **mean error**, the
  Euclidean distance between prediction and label (lower is better);
* ``points``: a fixed number of 2-D points per image, ``[[x, y], ...]`` in pixels of the image as
  written: the **mean pixel error** (lower is better) and the share of points within 5 pixels
  (``pck5``, Table 4's measure).

The same small model (:class:`TaskNet`: two conv / ReLU / max-pool stages, a third conv, a
two-layer head) is trained from scratch on each training set with the same budget (Adam, a fixed
number of mini-batches) and tested on the real test set, once per seed. With the training sets
given in the order synthetic, refined, ..., real, it reports each set's gain over the first and the
share of the gap between the first and the last that it closes.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
import torch
from torch import nn

from ..datasets import to_model
from ..errors import SimganError
from ..report import format_table
from ..runtime import resolve_device
from .common import Echo, open_images, open_like, prepare_out, quiet, write_metrics

KINDS = ("class", "vector", "points")
PCK_PX = 5.0


class TaskNet(nn.Module):
    """A small image model: two 3×3 conv / ReLU / 2×2 max-pool stages (32, 64 maps), a 3×3 conv of
    64 maps, average pooling to 2×2, one hidden layer of 128 units and ``outputs`` values."""

    def __init__(self, channels: int, outputs: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Linear(128, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class TaskSettings:
    steps: int = 800  # mini-batches of training, the same for every training set
    batch_size: int = 64
    lr: float = 1e-3

    def check(self) -> "TaskSettings":
        if self.steps < 1 or self.batch_size < 1 or not (self.lr > 0 and math.isfinite(self.lr)):
            raise SimganError(f"bad task settings: {asdict(self)}")
        return self


# ----------------------------------------------------------------------------------------------
# labels


def infer_kind(values: list) -> str:
    """The kind of a label from its values: integers or strings -> class; numbers or lists of numbers
    -> vector; lists of [x, y] pairs -> points."""
    first = values[0]
    if isinstance(first, (str, bool)) or (isinstance(first, int) and all(isinstance(v, int) for v in values)):
        return "class"
    if isinstance(first, list) and first and all(isinstance(p, list) and len(p) == 2 for p in first):
        return "points"
    return "vector"


def label_values(ds, key: str, what: str) -> list:
    """Every record's ``key`` label; a one-line error naming the first record without it."""
    if not getattr(ds, "labelled", False):
        raise SimganError(f"{what} has no labels (labels.jsonl); evaluate task needs the --label key in every record")
    out = []
    for i in range(len(ds)):
        rec = ds.labels(i)
        if key not in rec:
            raise SimganError(f"{what} {ds.describe(i)} has no {key!r} label (keys: {', '.join(sorted(rec)) or 'none'})")
        out.append(rec[key])
    shapes = {"a number" if isinstance(v, (int, float)) and not isinstance(v, bool) else
              "a string" if isinstance(v, str) else "a list" if isinstance(v, list) else type(v).__name__ for v in out}
    if len(shapes) > 1:
        raise SimganError(f"{what}'s {key!r} labels mix kinds ({' and '.join(sorted(shapes))}); give every record "
                          f"one kind of {key!r}")
    return out


def class_names(values: list) -> list:
    """The distinct class labels among ``values``, sorted (values that cannot be a class are left
    to :func:`targets` to refuse)."""
    return sorted({v for v in values if isinstance(v, (str, int)) and not isinstance(v, bool)}, key=str)


def targets(values: list, kind: str, what: str, classes: list | None = None) -> np.ndarray:
    """The labels as an array: class indices into ``classes`` (int64), or float vectors ``N×D``,
    or points ``N×K×2``; a one-line error for a value of another kind or shape."""
    if kind == "class":
        bad = [v for v in values if not isinstance(v, (str, int)) or isinstance(v, bool)]
        if bad:
            raise SimganError(f"{what}: a class label must be an integer or a string, got {bad[0]!r}")
        index = {c: i for i, c in enumerate(classes)}
        return np.array([index[v] for v in values], np.int64)
    try:
        arr = np.array([v if isinstance(v, list) else [v] for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise SimganError(f"{what}: {kind} labels must all be numbers of one shape") from None
    if arr.dtype == object or arr.ndim != (3 if kind == "points" else 2) or not np.isfinite(arr).all():
        raise SimganError(f"{what}: {kind} labels must all be finite numbers of one shape "
                          f"({'[[x, y], ...]' if kind == 'points' else 'a number or a list of numbers'})")
    if kind == "points" and arr.shape[2] != 2:
        raise SimganError(f"{what}: points labels must be lists of [x, y] pairs")
    return arr.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# one model, trained and tested


def train_and_test(images: np.ndarray, y: np.ndarray, test: np.ndarray, test_y: np.ndarray, kind: str, *,
                   outputs: int, settings: TaskSettings | None = None, max_value: int = 255, seed: int = 0,
                   device="cpu") -> dict:
    """Train :class:`TaskNet` on ``images`` (``N×H×W×C`` integers) and labels ``y`` (from
    :func:`targets`) for ``settings.steps`` mini-batches, then measure it on the test set."""
    s = (settings or TaskSettings()).check()
    dev = resolve_device(device) if isinstance(device, str) else device
    h, w = images.shape[1:3]
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TaskNet(images.shape[3], outputs).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    x, t = torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(encode_targets(y, kind, h, w))
    lossf = nn.CrossEntropyLoss() if kind == "class" else nn.MSELoss()
    model.train()
    for _ in range(s.steps):
        idx = torch.randint(len(x), (min(s.batch_size, len(x)),), generator=g)
        loss = lossf(model(to_model(x[idx], max_value, device=dev)), t[idx].to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        tx = torch.from_numpy(np.ascontiguousarray(test))
        out = torch.cat([model(to_model(tx[i:i + 512], max_value, device=dev)).cpu()
                         for i in range(0, len(tx), 512)]).numpy()
    return _score(out, test_y, kind, h, w)


def encode_targets(y: np.ndarray, kind: str, h: int, w: int) -> np.ndarray:
    """Training targets: class indices; points scaled to [-1, 1] of the image; vectors as they are."""
    if kind == "class":
        return y
    if kind == "points":
        return (y / np.array([w - 1, h - 1], np.float32) * 2 - 1).reshape(len(y), -1).astype(np.float32)
    return y.astype(np.float32)


def _score(out: np.ndarray, y: np.ndarray, kind: str, h: int, w: int) -> dict:
    if kind == "class":
        return {"accuracy": float((out.argmax(1) == y).mean())}
    if kind == "points":
        pred = (out.reshape(y.shape) + 1) / 2 * np.array([w - 1, h - 1])
        err = np.sqrt(((pred - y) ** 2).sum(-1))
        return {"mean_error_px": float(err.mean()), "pck5": float((err <= PCK_PX).mean())}
    return {"mean_error": float(np.sqrt(((out - y) ** 2).sum(1)).mean())}


HEADLINE = {"class": ("accuracy", True), "vector": ("mean_error", False), "points": ("mean_error_px", False)}


# ----------------------------------------------------------------------------------------------
# the command


def evaluate_task(train_sets: Mapping[str, str | os.PathLike], test: str | os.PathLike, label: str, *,
                  kind: str | None = None, out: str | os.PathLike | None = None, seeds: int = 2,
                  settings: TaskSettings | None = None, device: str = "auto", overwrite: bool = False,
                  echo: Echo = quiet) -> dict:
    """Train :class:`TaskNet` on each training set's ``label`` and test it on ``test``, ``seeds``
    times (seeds 0, 1, ...); with ``out``, writes ``OUT/metrics.json``. The first training set is
    the baseline (synthetic) and, with three or more, the last the upper bound (labelled real)."""
    if not train_sets:
        raise SimganError("give at least one training set (--train DIR)")
    if seeds < 1:
        raise SimganError(f"--seeds must be >= 1, got {seeds}")
    if kind is not None and kind not in KINDS:
        raise SimganError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    out_dir = prepare_out(out, overwrite)
    dev = resolve_device(device)
    test_ds, test_images = open_images(test, what="test set", need_labels=True)
    test_values = label_values(test_ds, label, "test set")
    sets = {name: open_like(path, test_ds, f"training set {name!r}", "test set", need_labels=True)
            for name, path in train_sets.items()}
    values = {name: label_values(ds, label, f"training set {name!r}") for name, ds in sets.items()}
    inferred = infer_kind(test_values)
    given, kind = kind, kind or inferred
    classes = class_names([v for vs in [test_values, *values.values()] for v in vs]) if kind == "class" else None
    test_y = targets(test_values, kind, "test set", classes)
    outputs = len(classes) if kind == "class" else int(np.prod(test_y.shape[1:]))
    results: dict = {}
    for name, ds in sets.items():
        y = targets(values[name], kind, f"training set {name!r}", classes)
        if y.shape[1:] != test_y.shape[1:]:
            raise SimganError(f"training set {name!r}'s {label!r} labels have shape {y.shape[1:]}, the test set's "
                              f"{test_y.shape[1:]}")
        images = ds.load()
        runs = [train_and_test(images, y, test_images, test_y, kind, outputs=outputs, settings=settings,
                               max_value=test_ds.spec.max_value, seed=seed, device=dev) for seed in range(seeds)]
        results[name] = {"n": len(ds), "seeds": runs,
                         "mean": {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}}
        echo(f"[task {name}] {HEADLINE[kind][0]} {results[name]['mean'][HEADLINE[kind][0]]:.4g}")
    metrics = {"measure": "task", "label": label, "kind": kind, "kind_given": given, "classes": classes,
               "test": {"path": str(test), "n": len(test_ds)}, "seeds": seeds,
               "settings": asdict(settings or TaskSettings()), "results": results,
               "headline": HEADLINE[kind][0], "gaps": _gaps(results, kind)}
    metrics["findings"] = task_findings(metrics)
    if out_dir is not None:
        write_metrics(out_dir, metrics)
    return metrics


def _gaps(results: dict, kind: str) -> dict:
    """Each set's gain over the first set and, with three or more, the share of the first-to-last
    gap it closes (0: no better than the first, 1: as good as the last), on the mean over seeds."""
    key, _ = HEADLINE[kind]
    names = list(results)
    base, top = results[names[0]]["mean"][key], results[names[-1]]["mean"][key]
    out = {}
    for name in names[1:]:
        m = results[name]["mean"][key]
        gap = top - base
        out[name] = {"gain": m - base,
                     "gap_closed": (m - base) / gap if len(names) >= 3 and abs(gap) > 1e-12 else None}
    return out


def task_findings(metrics: dict) -> list[str]:
    """What the figures say, one sentence per training set after the first."""
    key, higher = HEADLINE[metrics["kind"]]
    names = list(metrics["results"])
    out = []
    for name in names[1:]:
        g = metrics["gaps"][name]
        better = g["gain"] > 0 if higher else g["gain"] < 0
        m, m0 = metrics["results"][name]["mean"][key], metrics["results"][names[0]]["mean"][key]
        text = (f"a model trained on {name} images scores {key} {m:.4g} on the test set, against {m0:.4g} trained on "
                f"{names[0]}: {'better' if better else 'no better'}")
        if g["gap_closed"] is not None and name != names[-1]:
            text += f", {100 * g['gap_closed']:.0f}% of the way to {names[-1]}"
        out.append(text)
    return out


def format_task_table(metrics: dict) -> str:
    """Plain-text table of :func:`evaluate_task`'s results: each set's headline figure (mean and
    per seed), its gain over the first set and the share of the gap it closes."""
    key = metrics["headline"]
    rows = []
    for name, r in metrics["results"].items():
        g = metrics["gaps"].get(name) or {}
        closed = g.get("gap_closed")
        rows.append([name, f"{r['mean'][key]:.4g}", " / ".join(f"{s[key]:.4g}" for s in r["seeds"]),
                     f"{g['gain']:+.4g}" if g else "", f"{100 * closed:.1f}%" if closed is not None else ""])
    head = ["trained on", f"{key} (mean)", "per seed", "gain over the first", "gap closed"]
    kind = metrics["kind"] + ("" if metrics.get("kind_given") else " (inferred from the labels; --kind to choose)")
    return (format_table(head, rows) + f"\n(label {metrics['label']!r}, {kind}; test set: {metrics['test']['n']} images, "
            f"{metrics['test']['path']}; {metrics['seeds']} seed(s) each)"
            + "".join(f"\n- {f}" for f in metrics.get("findings") or []))
