"""Gaze estimation as the measure of refinement (§3.1, Tables 2–3, Figure 7).

The paper trains one gaze estimator per training set (synthetic, refined) and tests each on real
images: the better the refined images, the better an estimator trained on them generalises. This
module is that experiment: :class:`GazeNet` (the estimator), :func:`train_gaze_estimator`,
:func:`angular_error_deg`, :func:`gaze_metrics` and :func:`evaluate_gaze`, the function behind
``simgan evaluate gaze``.

**The network (§3.1, "Implementation Details").** "The input is a 35×55 grayscale image that is
passed through 5 convolutional layers followed by 3 fully connected layers, the last one encoding
the 3-dimensional gaze vector: (1) Conv3x3, feature maps=32, (2) Conv3x3, 32, (3) Conv3x3, 64,
(4) MaxPool3x3, stride=2, (5) Conv3x3, 80, (6) Conv3x3, 192, (7) MaxPool2x2, stride=2,
(8) FC9600, (9) FC1000, (10) FC3, (11) Euclidean loss."

*Our reading of "FC9600".* With unpadded ("valid") 3×3 convolutions a 35×55 input shrinks to
33×53, 31×51, 29×49, then 14×24 after the 3×3/2 pool, 12×22 and 10×20 after convolutions 5–6,
and 5×10 after the 2×2/2 pool: 192 × 5 × 10 = **9600** values. That the count matches exactly is
strong evidence that layer (8) is this flattened 9600-d activation entering the fully connected
part, not a 9600-unit hidden layer (which would add a 9600×9600 = 92M-weight matrix, more than
the rest of the network by two orders of magnitude). So: ``flatten(9600) -> Linear(9600, 1000)
-> ReLU -> Linear(1000, 3)``; the three "fully connected layers" are the flatten/reshape layer
(Caffe style, an ``InnerProduct`` input of 9600) and the two weight matrices. Every convolution
and the hidden FC layer are followed by ReLU; there is no normalisation (none is mentioned).
Other input sizes work: the flattened size is computed from the input shape.

**Training.** Euclidean loss ``½‖ĝ − g‖²`` on the 3-d gaze vector (Caffe's ``EuclideanLoss``),
constant learning rate 0.001 and batches of 512 as in the paper, with Adam (the paper names no
optimiser). "Until the validation error converges" is implemented as: hold out
``val_fraction`` of the training set, measure the mean angular error on it every
``eval_every_images`` training images, stop after ``patience`` measurements without an
improvement of ``min_delta`` degrees (or at ``max_epochs`` / ``max_seconds``), and keep the
weights of the best measurement. On a CPU the paper's batch of 512 allows too few updates in a
few minutes; :meth:`GazeTrainSettings.budget` is the preset for a time-limited CPU run (batch 64).

**Evaluation.** The angle between the normalised prediction and the true gaze vector, in degrees;
the mean (Table 3), the median, and the percentage of test images within d degrees for
d = 1…20 (Table 2 reports d = 7; Figure 7 plots the whole cumulative curve).

Speed: the whole training set is decoded once into a uint8 tensor; batches are gathered from it
by index (no per-image Python work) and converted to channels-last floats in one step; metrics
are read from the device only at each validation.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..datasets import to_model
from ..runtime import autocast, resolve_device, resolve_precision
from ..errors import SimganError
from .supervised import (EpochSampler, Progress, TaskModel, fit, load_model_file, make_optimizer, save_model_file,
                         seeded_model)
from ..stats import wilson_interval
from ..report import format_table
from .common import (Echo, as_torch_ready, estimator_path, gaze_labels, open_images, open_like, plot_cumulative, positive, prepare_out,
                     quiet, write_metrics)

PAPER_CONV_CHANNELS = (32, 32, 64, 80, 192)
PAPER_HIDDEN = 1000
THRESHOLDS_DEG = tuple(range(1, 21))
ESTIMATOR_FORMAT = "simgan-gaze-estimator"


# ----------------------------------------------------------------------------------------------
# the network


def _valid(n: int, k: int, s: int = 1) -> int:
    return (n - k) // s + 1


def gaze_net_feature_shape(height: int, width: int, conv_channels: Sequence[int] = PAPER_CONV_CHANNELS) -> tuple[int, int, int]:
    """``(C, H, W)`` of the last pooled feature map for an input of ``height × width``."""
    h, w = height, width
    for _ in range(3):
        h, w = _valid(h, 3), _valid(w, 3)
    h, w = _valid(h, 3, 2), _valid(w, 3, 2)
    for _ in range(2):
        h, w = _valid(h, 3), _valid(w, 3)
    h, w = _valid(h, 2, 2), _valid(w, 2, 2)
    return conv_channels[4], h, w


class GazeNet(nn.Module):
    """The §3.1 gaze estimator (see the module docstring for the layer list and "FC9600").

    ``conv_channels`` and ``hidden`` default to the paper's (32, 32, 64, 80, 192) and 1000; for a
    35×55 input the flattened feature vector has 9600 entries.
    """

    def __init__(self, in_channels: int = 1, height: int = 35, width: int = 55,
                 conv_channels: Sequence[int] = PAPER_CONV_CHANNELS, hidden: int = PAPER_HIDDEN):
        super().__init__()
        conv_channels = tuple(int(c) for c in conv_channels)
        if len(conv_channels) != 5:
            raise SimganError(f"the gaze estimator has 5 convolutions; got {len(conv_channels)} channel counts")
        c, h, w = gaze_net_feature_shape(height, width, conv_channels)
        if h < 1 or w < 1:
            raise SimganError(f"images of {width}×{height} pixels are too small for the gaze estimator "
                              "(it needs at least 16×16)")
        c1, c2, c3, c4, c5 = conv_channels
        self.in_channels, self.height, self.width = in_channels, height, width
        self.conv_channels, self.hidden = conv_channels, hidden
        self.flat_features = c * h * w
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3), nn.ReLU(inplace=True),
            nn.Conv2d(c2, c3, 3), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(c3, c4, 3), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3), nn.ReLU(inplace=True),
            nn.MaxPool2d(2, stride=2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),  # (8) "FC9600": the 192×5×10 = 9600-d input of the fully connected part
            nn.Linear(self.flat_features, hidden), nn.ReLU(inplace=True),  # (9) FC1000
            nn.Linear(hidden, 3),  # (10) FC3: the gaze vector
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ----------------------------------------------------------------------------------------------
# angular error and summaries


def angular_error_deg(pred, true) -> np.ndarray:
    """Angle in degrees between each predicted and true 3-d gaze vector (any lengths > 0).

    Computed as ``atan2(|a × b|, a · b)``, accurate for tiny and near-180° angles alike.
    """
    a = np.asarray(pred, dtype=np.float64)
    b = np.asarray(true, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    dot = np.sum(a * b, axis=-1)
    return np.degrees(np.arctan2(cross, dot))


def _angular_error_torch(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    a = nn.functional.normalize(pred.float(), dim=1, eps=1e-12)
    b = nn.functional.normalize(true.float(), dim=1, eps=1e-12)
    cross = torch.linalg.vector_norm(torch.linalg.cross(a, b, dim=1), dim=1)
    return torch.rad2deg(torch.atan2(cross, (a * b).sum(1)))


def gaze_metrics(errors_deg, thresholds: Sequence[int] = THRESHOLDS_DEG) -> dict:
    """Summary of per-image angular errors: mean (± standard error), median, std, and the
    percentage of images within d degrees for each d (with its 95% Wilson interval at d = 7)."""
    e = np.asarray(errors_deg, dtype=np.float64)
    if e.size == 0:
        raise SimganError("no test images to compute gaze metrics on")
    n = e.size
    within = {str(d): float(100.0 * np.mean(e <= d)) for d in thresholds}
    k7 = int(np.sum(e <= 7))
    return {
        "n_test": int(n),
        "mean_deg": float(e.mean()),
        "mean_deg_se": float(e.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
        "median_deg": float(np.median(e)),
        "std_deg": float(e.std(ddof=1)) if n > 1 else 0.0,
        "within_pct": within,
        "within_7_pct_ci95": [100.0 * v for v in wilson_interval(k7, n)],
    }


# ----------------------------------------------------------------------------------------------
# training


@dataclass
class GazeTrainSettings:
    """How a gaze estimator is trained (§3.1: lr 0.001, batch 512, until validation converges)."""

    batch_size: int = 512
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | sgd (momentum 0.9)
    val_fraction: float = 0.1
    max_val_images: int = 2000  # validation measurements use at most this many held-out images
    eval_every_images: int = 10240  # training images between validation measurements
    patience: int = 4  # validations without improvement before stopping
    min_delta: float = 0.05  # degrees: smaller improvements do not count
    max_epochs: float = 30.0
    max_seconds: float | None = None  # wall-clock budget for training (None: no limit)
    seed: int = 0
    precision: str = "auto"
    channels_last: bool = True
    conv_channels: tuple = PAPER_CONV_CHANNELS
    hidden: int = PAPER_HIDDEN

    @classmethod
    def budget(cls, seconds: float, **overrides) -> "GazeTrainSettings":
        """Settings for training within ``seconds`` of wall-clock time on a small CPU (the demo).

        The paper's batch of 512 is kept by default, but on a small CPU it buys one update every
        few seconds: a few minutes give a few dozen updates, far from converged. Here: batch 64
        (8× more updates for the same images), a validation every 4096 images on at most 1000
        held-out images, patience 5, and the time limit. The architecture is the paper's unless
        ``overrides`` change it.
        """
        base = dict(batch_size=64, eval_every_images=4096, max_val_images=1000, patience=5, max_seconds=seconds)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def from_flags(cls, max_minutes: float | None = None, batch_size: int | None = None) -> "GazeTrainSettings":
        """The paper's settings with ``simgan evaluate``'s ``--max-minutes`` and ``--batch-size``."""
        s = cls()
        if positive(max_minutes, "--max-minutes") is not None:
            s.max_seconds = 60.0 * max_minutes
        if positive(batch_size, "--batch-size") is not None:
            s.batch_size = batch_size
        return s

    def check(self) -> "GazeTrainSettings":
        ok = (self.batch_size >= 1 and self.lr > 0 and 0 < self.val_fraction < 1 and self.max_val_images >= 1
              and self.eval_every_images >= 1 and self.patience >= 1 and self.min_delta >= 0 and self.max_epochs > 0
              and (self.max_seconds is None or self.max_seconds > 0) and self.optimizer in ("adam", "sgd"))
        if not ok:
            raise SimganError(f"bad gaze-estimator settings: {asdict(self)}")
        return self


class GazeEstimator(TaskModel):
    """A trained :class:`GazeNet` with what it needs to read images: their size and bit depth."""

    def to(self, device) -> "GazeEstimator":
        self.model.to(resolve_device(device) if isinstance(device, str) else device)
        return self

    def check_images(self, images: np.ndarray, what: str = "images") -> None:
        m = self.model
        if images.ndim != 4 or images.shape[1:] != (m.height, m.width, m.in_channels):
            got = "×".join(str(v) for v in images.shape[1:])
            raise SimganError(f"{what} are {got} (H×W×C) but the gaze estimator was trained on "
                              f"{m.height}×{m.width}×{m.in_channels}")

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Unit gaze vectors (``N×3`` float64) for ``N×H×W×C`` integer images."""
        self.check_images(images)
        return _predict(self.model, torch.from_numpy(as_torch_ready(images)), self.max_value,
                        self.device, batch_size=batch_size).numpy()

    def save(self, path: str | os.PathLike) -> Path:
        """Save to ``path`` (a ``torch.save`` file readable with :meth:`load`)."""
        m = self.model
        payload = {
            "format": ESTIMATOR_FORMAT, "version": 1,
            "in_channels": m.in_channels, "height": m.height, "width": m.width,
            "conv_channels": list(m.conv_channels), "hidden": m.hidden, "max_value": self.max_value,
            "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()},
            "info": _plain(self.info),
        }
        return save_model_file(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "GazeEstimator":
        payload = load_model_file(path, ESTIMATOR_FORMAT, "gaze estimator", "simgan evaluate gaze")
        model = GazeNet(payload["in_channels"], payload["height"], payload["width"],
                        payload["conv_channels"], payload["hidden"])
        model.load_state_dict(payload["state_dict"])
        model.eval()
        dev = resolve_device(device) if isinstance(device, str) else device
        model.to(dev)
        if dev.type == "cpu":
            model.to(memory_format=torch.channels_last)
        return cls(model, int(payload["max_value"]), dict(payload.get("info") or {}))


def _plain(obj):
    """JSON-like copy (numbers, strings, lists, dicts) safe for ``torch.load(weights_only=True)``."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


@torch.no_grad()
def _predict(model: nn.Module, data: torch.Tensor, max_value: int, device: torch.device,
             index: torch.Tensor | None = None, batch_size: int = 1024, precision: str = "fp32") -> torch.Tensor:
    """Predictions (unit vectors, float64 on the CPU) for ``data[index]`` in chunks."""
    was_training = model.training
    model.eval()
    n = len(data) if index is None else len(index)
    outs = []
    for start in range(0, n, batch_size):
        sel = slice(start, min(n, start + batch_size))
        batch = data[sel] if index is None else data[index[sel]]
        x = to_model(batch, max_value, device=device)
        with autocast(device, precision):
            y = model(x)
        outs.append(nn.functional.normalize(y.float(), dim=1, eps=1e-12).cpu())
    model.train(was_training)
    return torch.cat(outs).double() if outs else torch.empty(0, 3, dtype=torch.float64)


def _checked_training_data(images: np.ndarray, gaze) -> tuple[np.ndarray, np.ndarray]:
    """``N×H×W×C`` images ready for torch and ``N×3`` float64 gaze vectors, N ≥ 2, or a one-line error."""
    images = as_torch_ready(images)
    if images.ndim != 4:
        raise SimganError(f"gaze training images must be N×H×W×C, got shape {images.shape}")
    gaze = np.asarray(gaze, dtype=np.float64)
    if gaze.shape != (len(images), 3):
        raise SimganError(f"expected {len(images)}×3 gaze vectors, got {gaze.shape}")
    if len(images) < 2:
        raise SimganError("a gaze estimator needs at least 2 training images (one is held out for validation)")
    return images, gaze


def _hold_out(n: int, s: GazeTrainSettings, gen: torch.Generator) -> tuple[int, torch.Tensor, torch.Tensor]:
    """``val_fraction`` of ``n`` images (at least 1, at most n - 1) held out for validation: their
    number, the ones measured (at most ``max_val_images``), and the training indices."""
    perm = torch.randperm(n, generator=gen)
    n_val = min(n - 1, max(1, int(round(n * s.val_fraction))))
    return n_val, perm[:n_val][: s.max_val_images], perm[n_val:]


def train_gaze_estimator(images: np.ndarray, gaze: np.ndarray, *, max_value: int = 255,
                         settings: GazeTrainSettings | None = None, device: str | torch.device = "auto",
                         echo: Echo = quiet, name: str = "") -> GazeEstimator:
    """Train a §3.1 gaze estimator on ``N×H×W×C`` integer images and ``N×3`` gaze vectors.

    Returns the estimator with the weights of its best validation measurement; ``.info`` holds
    the training record (steps, epochs, seconds, images/s, validation curve, why it stopped).
    The loop is :func:`simgan.evaluation.supervised.fit` with the Euclidean loss.
    """
    s = (settings or GazeTrainSettings()).check()
    images, gaze = _checked_training_data(images, gaze)
    n, h, w, c = images.shape
    dev = resolve_device(device) if isinstance(device, str) else device
    precision = resolve_precision(s.precision, dev)
    prefix = f"[gaze {name}] " if name else "[gaze] "

    gen = torch.Generator().manual_seed(s.seed)
    n_val, val_eval_idx, train_idx = _hold_out(n, s, gen)
    n_train = len(train_idx)

    data = torch.from_numpy(images).to(dev)
    targets = torch.from_numpy(gaze / np.linalg.norm(gaze, axis=1, keepdims=True)).float().to(dev)
    val_eval_idx_dev, train_idx_dev = val_eval_idx.to(dev), train_idx.to(dev)

    model = seeded_model(s.seed, lambda: GazeNet(c, h, w, s.conv_channels, s.hidden)).to(dev)
    if s.channels_last:
        model.to(memory_format=torch.channels_last)

    def mean_error(index: torch.Tensor) -> float:
        pred = _predict(model, data, max_value, dev, index=index, precision=precision)
        return float(_angular_error_torch(pred, targets[index].cpu()).mean())

    def euclidean_loss(idx: torch.Tensor) -> torch.Tensor:
        x = to_model(data[idx], max_value)
        with autocast(dev, precision):
            out = model(x)
        return 0.5 * (out.float() - targets[idx]).pow(2).sum(1).mean()

    def report(p: Progress) -> None:
        echo(f"{prefix}step {p.step} epoch {p.epoch:.2f}: loss {p.train_loss:.4f}, validation {p.val:.2f}° "
            f"(best {p.best_val:.2f}°), {p.images_per_second:.0f} img/s")

    sampler = EpochSampler(n_train, s.batch_size, gen, index=train_idx_dev, device=dev)
    r = fit(model, euclidean_loss, sampler, make_optimizer(model.parameters(), s.optimizer, s.lr),
            max_steps=max(1, math.ceil(s.max_epochs * sampler.steps_per_epoch)),
            eval_every=max(1, round(s.eval_every_images / sampler.batch)),
            validate=lambda: mean_error(val_eval_idx_dev), patience=s.patience, min_delta=s.min_delta,
            max_seconds=s.max_seconds, report=report, device=dev, val_key="val_deg", max_steps_reason="max_epochs")
    info = {"n_train": n_train, "n_val": n_val, "n_val_measured": len(val_eval_idx), "steps": r.steps,
            "epochs": r.epochs, "images_seen": r.seen, "best_step": r.best_step, "best_val_deg": r.best_val,
            # Training error on (at most max_val_images) training images, for the record.
            "train_deg": mean_error(train_idx_dev[: s.max_val_images]), "stopped": r.stopped,
            "train_seconds": r.train_seconds, "total_seconds": r.total_seconds,
            "images_per_second": r.images_per_second, "device": str(dev), "precision": precision,
            "settings": asdict(s), "curve": r.curve}
    echo(f"{prefix}done: {r.stopped} after {r.steps} steps ({r.epochs:.2f} epochs, {r.train_seconds:.0f} s "
        f"training, {r.images_per_second:.0f} img/s); best validation {r.best_val:.2f}° at step {r.best_step}")
    return GazeEstimator(model, max_value, info)


# ----------------------------------------------------------------------------------------------
# the experiment


def evaluate_gaze(train_sets: Mapping[str, str | os.PathLike], test: str | os.PathLike,
                  out: str | os.PathLike | None = None, *, device: str = "auto", seed: int = 0,
                  settings: GazeTrainSettings | None = None, max_epochs: float | None = None,
                  overwrite: bool = False, save_estimators: bool = True, echo: Echo = quiet) -> dict:
    """Train one gaze estimator per training set, test each on ``test`` (§3.1, Figure 7, Tables 2–3).

    ``train_sets`` maps a name (e.g. ``"synthetic"``, ``"refined"``) to a labelled dataset
    folder; ``test`` is a labelled dataset (the real images). Every set needs ``gaze`` or
    ``pitch``/``yaw`` labels. With ``out``, writes ``OUT/metrics.json``, ``OUT/gaze_cdf.png``
    and (``save_estimators``) ``OUT/estimators/NAME.pt``. Returns the metrics dict::

        {"test": ..., "settings": {...}, "results": {NAME: {"mean_deg": ..., "median_deg": ...,
         "within_pct": {"1": ..., ..., "20": ...}, "train": {...training record...}}}}
    """
    if not train_sets:
        raise SimganError("give at least one training set (--train DIR)")
    out_dir = prepare_out(out, overwrite)
    s = copy.deepcopy(settings) if settings is not None else GazeTrainSettings()
    s.seed = seed
    if max_epochs is not None:
        s.max_epochs = max_epochs
    s.check()
    dev = resolve_device(device)

    test_ds, test_images = open_images(test, what="test set", need_labels=True)
    test_gaze = gaze_labels(test_ds, "test set")
    opened = {}
    for name, path in train_sets.items():
        ds = open_like(path, test_ds, f"training set {name!r}", "test set", need_labels=True)
        # Labels are checked for every set before any training starts.
        opened[name] = (ds, gaze_labels(ds, f"training set {name!r}"))

    results, errors_by_name = {}, {}
    for name, (ds, g) in opened.items():
        echo(f"[gaze {name}] loading {len(ds)} images from {train_sets[name]}")
        est = train_gaze_estimator(ds.load(), g, max_value=ds.spec.max_value, settings=s, device=dev, echo=echo,
                                   name=name)
        errors_by_name[name] = angular_error_deg(est.predict(test_images), test_gaze)
        results[name] = res = _test_result(est, errors_by_name[name], g, test_gaze, train_sets[name])
        if out_dir is not None and save_estimators:
            res["estimator"] = str(est.save(estimator_path(out_dir, name)))
        echo(f"[gaze {name}] test: mean {res['mean_deg']:.2f}°, within 7°: {res['within_pct']['7']:.1f}%")
    metrics = {
        "measure": "gaze",
        "paper": "§3.1: % of real test images within d degrees (Table 2: d=7), mean error (Table 3)",
        "test": {"path": str(test), "n": len(test_ds), "image": test_ds.spec.describe()},
        "settings": {**asdict(s), "device": str(dev)},
        "results": results,
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        plot_gaze_cdf(errors_by_name, out_dir / "gaze_cdf.png")
        write_metrics(out_dir, metrics)  # last: a metrics.json means the run finished
    return metrics


def _test_result(est: GazeEstimator, errors: np.ndarray, train_gaze: np.ndarray, test_gaze: np.ndarray,
                 train_set) -> dict:
    """One training set's test metrics, with the baseline of always predicting its mean gaze."""
    baseline = angular_error_deg(np.broadcast_to(train_gaze.mean(axis=0), test_gaze.shape), test_gaze)
    res = gaze_metrics(errors)
    res["baseline_mean_gaze_deg"] = float(baseline.mean())
    res["train_set"] = str(train_set)
    res["train"] = {k: v for k, v in est.info.items() if k != "settings"}
    return res


def plot_gaze_cdf(errors_by_name: Mapping[str, np.ndarray], path: str | os.PathLike, max_deg: float = 20.0) -> Path:
    """Cumulative curves of the angular error, one per training set (the paper's Figure 7)."""
    return plot_cumulative(errors_by_name, path, max_x=max_deg, mark=7,
                           label=lambda name, e: f"{name} (mean {e.mean():.1f}°)" if e.size else name,
                           xlabel="distance from ground truth gaze [degrees]",
                           ylabel="percentage of test images within distance", title="Gaze estimation (cf. Figure 7)")


def format_gaze_table(metrics: dict) -> str:
    """A plain-text table of :func:`evaluate_gaze`'s results."""
    headers = ("training set", "mean°", "median°", "≤3°%", "≤7°%", "≤10°%", "≤20°%", "mean-gaze°", "steps", "img/s")
    rows = []
    for name, r in metrics["results"].items():
        w = r["within_pct"]
        t = r.get("train", {})
        rows.append((name, f"{r['mean_deg']:.2f}", f"{r['median_deg']:.2f}", f"{w['3']:.1f}", f"{w['7']:.1f}",
                     f"{w['10']:.1f}", f"{w['20']:.1f}", f"{r['baseline_mean_gaze_deg']:.2f}",
                     str(t.get("steps", "")), f"{t.get('images_per_second', float('nan')):.0f}"))
    return format_table(headers, rows) + f"\n(test set: {metrics['test']['n']} images, {metrics['test']['path']})"

