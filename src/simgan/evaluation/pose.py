"""Hand pose estimation as the measure of refinement (§3.2, Table 4, Figure 9).

The paper trains one hand pose estimator per training set (synthetic, refined, real; 1x or 3x
the views) and tests each on real depth images: "We train a fully convolutional hand pose
estimator CNN similar to Stacked Hourglass Net [25] ... We train on the same 14 hand joints as in
[38]." and (Implementation Details) "we use the Stacked Hourglass Net of [25] 2 hourglass blocks,
and an output heatmap size 64x64. We augment at training time with random [-20,20] degree
rotations and crops." The score is the percentage of joints within ``d`` pixels of the ground
truth (Figure 9's curve for d = 0..20; Table 4 at d = 5).

**The network** (Newell, Yang & Deng, "Stacked hourglass networks for human pose estimation",
ECCV 2016): pre-activation bottleneck residual modules (BN-ReLU-1x1 C/2, BN-ReLU-3x3 C/2,
BN-ReLU-1x1 C, plus a skip); a stem (7x7 convolution, residual modules, max pooling) that brings
the input to the heatmap resolution (stride 4 for 256 -> 64 in Newell et al.; here the stride is
``input / heatmap`` rounded to 1, 2 or 4 and the stem's output is resized to exactly the heatmap
size, so 224 -> 56 -> 64 for the paper's setting); ``stacks`` hourglasses of ``depth``
levels (each level: a residual skip branch, max pooling, recursion, nearest upsampling, sum);
after each hourglass a residual module, 1x1 conv-BN-ReLU, and a 1x1 convolution to one heatmap
per joint; between stacks the heatmaps and features are mapped back by 1x1 convolutions and
added (Newell et al., Figure 4). **Intermediate supervision**: the loss is the mean squared error
to Gaussian target heatmaps (sigma 1 heatmap pixel, Newell et al.) summed over every stack's
output; the last stack's heatmaps are the prediction.

**Input**: one depth channel, scaled to [-1, 1] by the file's bit depth, then standardised per
image (mean 0, standard deviation 1 over its pixels), so images in millimetres and normalised
hand crops both work.

**Augmentation**: per training image a random rotation in [-20, 20] degrees and a random crop
(a square of 80-100% of the side at a random position, resized back to the input size); pixels
are resampled with nearest neighbour (interpolating depth across a silhouette would invent
depths), the outside filled with 0 (no reading), and the joint coordinates go through the same
affine map.

**Prediction**: the argmax of each final heatmap, moved a quarter pixel towards the higher
neighbour (Newell et al.), mapped to image pixels.

**Distances** are measured in pixels of the test images as written: the estimator's input and
the labels' ``uv`` share them, and they are the only pixels every training set and the test set
have in common (heatmap pixels would change with the heatmap size, the original camera's with
each crop). The paper's estimator reads 224x224 crops, so its d = 5 is 5 pixels of a 224x224
crop, which is what ``pck5`` is for 224x224 test images. For smaller images (the reduced demo)
the metrics also give distances rescaled to a 224-pixel-wide image (``within_pct_224``,
``pck5_224``: 5 pixels at 224 is ``5 * W / 224`` pixels at width ``W``), the paper's relative
tolerance; the plain ``pck5`` of a 64x64 image is 3.5 times more lenient than the paper's.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..datasets import to_model
from ..runtime import resolve_device
from ..errors import SimganError
from ..report import format_table
from .supervised import (EpochSampler, Progress, TaskModel, fit, load_model_file, make_optimizer, save_model_file,
                         seeded_model)
from .common import (Echo, estimator_path, open_images, open_like, plot_cumulative, positive, prepare_out, quiet,
                     write_metrics)

N_JOINTS = 14
THRESHOLDS_PX = tuple(range(0, 21))
PAPER_SIZE = 224


# ----------------------------------------------------------------------------------------------
# the network


class Residual(nn.Module):
    """Newell et al.'s pre-activation bottleneck residual module."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(1, cout // 2)
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, mid, 1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels (recursive, as in Newell et al.)."""

    def __init__(self, depth: int, channels: int):
        super().__init__()
        self.up1 = Residual(channels, channels)
        self.low1 = Residual(channels, channels)
        self.low2 = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.low3 = Residual(channels, channels)

    def forward(self, x):
        up = self.up1(x)
        low = self.low3(self.low2(self.low1(F.max_pool2d(x, 2))))
        return up + F.interpolate(low, size=up.shape[-2:], mode="nearest")


class StackedHourglass(nn.Module):
    """The §3.2 pose estimator: ``stacks`` hourglasses, one heatmap per joint after each."""

    def __init__(self, in_size: int, joints: int = N_JOINTS, stacks: int = 2, channels: int = 256,
                 heatmap: int = 64, depth: int = 4, in_channels: int = 1):
        super().__init__()
        if heatmap < 2 ** depth:
            raise SimganError(f"a {heatmap}x{heatmap} heatmap is too small for an hourglass of depth {depth}")
        self.in_size, self.joints, self.stacks, self.channels = in_size, joints, stacks, channels
        self.heatmap, self.depth, self.in_channels = heatmap, depth, in_channels
        ratio = in_size / heatmap
        stride = 4 if ratio >= 3 else 2 if ratio >= 1.5 else 1
        self.stride = stride
        c = channels
        stem = [nn.Conv2d(in_channels, c // 4 if c >= 8 else c, 7, stride=2 if stride >= 2 else 1, padding=3),
                nn.BatchNorm2d(c // 4 if c >= 8 else c), nn.ReLU(inplace=True),
                Residual(c // 4 if c >= 8 else c, c // 2 if c >= 4 else c)]
        if stride == 4:
            stem.append(nn.MaxPool2d(2))
        stem += [Residual(c // 2 if c >= 4 else c, c // 2 if c >= 4 else c), Residual(c // 2 if c >= 4 else c, c)]
        self.stem = nn.Sequential(*stem)
        self.hourglasses = nn.ModuleList([Hourglass(depth, c) for _ in range(stacks)])
        self.features = nn.ModuleList([nn.Sequential(Residual(c, c), nn.Conv2d(c, c, 1), nn.BatchNorm2d(c),
                                                     nn.ReLU(inplace=True)) for _ in range(stacks)])
        self.outs = nn.ModuleList([nn.Conv2d(c, joints, 1) for _ in range(stacks)])
        for conv in self.outs:  # start from near-empty heatmaps: the loss starts at the targets' energy
            nn.init.normal_(conv.weight, std=1e-3)
            nn.init.zeros_(conv.bias)
        self.merge_features = nn.ModuleList([nn.Conv2d(c, c, 1) for _ in range(stacks - 1)])
        self.merge_preds = nn.ModuleList([nn.Conv2d(joints, c, 1) for _ in range(stacks - 1)])

    def forward(self, x) -> list[torch.Tensor]:
        """Heatmaps after every stack, each ``N x joints x heatmap x heatmap``."""
        x = self.stem(x)
        if x.shape[-1] != self.heatmap or x.shape[-2] != self.heatmap:
            x = F.interpolate(x, size=(self.heatmap, self.heatmap), mode="bilinear", align_corners=False)
        outs = []
        for i in range(self.stacks):
            y = self.features[i](self.hourglasses[i](x))
            pred = self.outs[i](y)
            outs.append(pred)
            if i < self.stacks - 1:
                x = x + self.merge_features[i](y) + self.merge_preds[i](pred)
        return outs


# ----------------------------------------------------------------------------------------------
# heatmaps, coordinates, augmentation


def to_heatmap_coords(uv: torch.Tensor, in_size: int, heatmap: int) -> torch.Tensor:
    """Image pixel coordinates (pixel centres at integers) -> heatmap pixel coordinates."""
    return (uv + 0.5) * (heatmap / in_size) - 0.5


def from_heatmap_coords(hm: torch.Tensor, in_size: int, heatmap: int) -> torch.Tensor:
    return (hm + 0.5) * (in_size / heatmap) - 0.5


def target_heatmaps(uv: torch.Tensor, in_size: int, heatmap: int, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian targets ``N x J x H x H`` (peak 1) at the joints ``uv`` (N x J x 2, image pixels)."""
    c = to_heatmap_coords(uv, in_size, heatmap)
    g = torch.arange(heatmap, dtype=uv.dtype, device=uv.device)
    gx = torch.exp(-(g[None, None, :] - c[..., 0:1]) ** 2 / (2 * sigma * sigma))
    gy = torch.exp(-(g[None, None, :] - c[..., 1:2]) ** 2 / (2 * sigma * sigma))
    return gy[..., :, None] * gx[..., None, :]


def decode_heatmaps(h: torch.Tensor, in_size: int) -> torch.Tensor:
    """Joint positions ``N x J x 2`` (image pixels) from heatmaps: argmax plus a quarter-pixel step
    towards the higher neighbour in x and in y (Newell et al.)."""
    n, j, hh, ww = h.shape
    flat = h.reshape(n, j, -1)
    idx = flat.argmax(-1)
    y, x = (idx // ww), (idx % ww)
    xs, ys = x.to(h.dtype), y.to(h.dtype)
    hp = F.pad(h, (1, 1, 1, 1), mode="replicate")
    b = torch.arange(n, device=h.device)[:, None].expand(n, j)
    k = torch.arange(j, device=h.device)[None, :].expand(n, j)
    right, left = hp[b, k, y + 1, x + 2], hp[b, k, y + 1, x]
    down, up = hp[b, k, y + 2, x + 1], hp[b, k, y, x + 1]
    xs = xs + 0.25 * torch.sign(right - left)
    ys = ys + 0.25 * torch.sign(down - up)
    return from_heatmap_coords(torch.stack([xs, ys], -1), in_size, hh)


def augment(x: torch.Tensor, uv: torch.Tensor, gen: torch.Generator, max_deg: float = 20.0,
            crop: tuple[float, float] = (0.8, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rotation in ``[-max_deg, max_deg]`` and a random square crop of ``crop`` of the side,
    resized back; images ``N x C x S x S`` (nearest neighbour, outside filled with the value
    that -1 maps to: no reading), joints ``N x J x 2`` mapped with them."""
    n, _, s, _ = x.shape
    dev = x.device
    ang = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_deg)
    scale = crop[0] + torch.rand(n, generator=gen) * (crop[1] - crop[0])
    # crop centre offset (normalised coordinates) keeping the crop inside the image
    off = (torch.rand(n, 2, generator=gen) * 2 - 1) * (1 - scale)[:, None]
    cos, sin = torch.cos(ang), torch.sin(ang)
    # output normalised coords q -> input p = scale * R q + off  (align_corners=False)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = scale * cos, -scale * sin
    theta[:, 1, 0], theta[:, 1, 1] = scale * sin, scale * cos
    theta[:, :, 2] = off
    grid = F.affine_grid(theta.to(dev, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x + 1.0, grid, mode="nearest", padding_mode="zeros", align_corners=False) - 1.0
    # joints: p (input, normalised) -> q = R^T (p - off) / scale
    p = (uv + 0.5) * (2.0 / s) - 1.0
    d = p - off[:, None, :].to(dev)
    q0 = (cos[:, None].to(dev) * d[..., 0] + sin[:, None].to(dev) * d[..., 1]) / scale[:, None].to(dev)
    q1 = (-sin[:, None].to(dev) * d[..., 0] + cos[:, None].to(dev) * d[..., 1]) / scale[:, None].to(dev)
    uv2 = (torch.stack([q0, q1], -1) + 1.0) * (s / 2.0) - 0.5
    return out, uv2


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean 0, standard deviation 1 (see the module docstring)."""
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    sd = x.std(dim=(1, 2, 3), keepdim=True)
    return (x - m) / (sd + 1e-6)


# ----------------------------------------------------------------------------------------------
# metrics


def joint_errors_px(pred, true) -> np.ndarray:
    """Euclidean distances ``N x J`` between predicted and true joints (pixels)."""
    return np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(true, np.float64), axis=-1)


def pck_curve(errors_px, thresholds=THRESHOLDS_PX, scale: float = 1.0) -> dict:
    """Percentage of joints within ``d * scale`` pixels for each ``d`` (Figure 9's curve)."""
    e = np.asarray(errors_px, np.float64).ravel()
    if e.size == 0:
        raise SimganError("no test joints to compute pose metrics on")
    return {str(d): float(100.0 * np.mean(e <= d * scale)) for d in thresholds}


def pose_metrics(errors_px, width: int) -> dict:
    """Mean error, PCK for d = 0..20 (test-image pixels and rescaled to a 224-wide image), and
    Table 4's figure ``pck5``: d = 5 pixels of the test images (``pck5_224``: 5 pixels of a
    224-wide image, the paper's input size, i.e. ``5 * W / 224`` pixels at width ``W``)."""
    e = np.asarray(errors_px, np.float64)
    to224 = PAPER_SIZE / width
    return {
        "n_images": int(e.shape[0]), "n_joints": int(e.size),
        "mean_px": float(e.mean()), "median_px": float(np.median(e)),
        "mean_px_224": float(e.mean() * to224),
        "per_joint_mean_px": [float(v) for v in e.mean(0)] if e.ndim == 2 else None,
        "within_pct": pck_curve(e),
        "within_pct_224": pck_curve(e, scale=1.0 / to224),
        "pck5": pck_curve(e, thresholds=(5,))["5"],
        "pck5_224": pck_curve(e, thresholds=(5,), scale=1.0 / to224)["5"],
    }


# ----------------------------------------------------------------------------------------------
# training


@dataclass
class PoseTrainSettings:
    """How a pose estimator is trained. Defaults: the paper's network (2 stacks, 64x64 heatmaps,
    Newell et al.'s 256 channels); Adam (the paper names none; Newell et al. use RMSprop at
    2.5e-4), batch 16."""

    stacks: int = 2
    channels: int = 256
    heatmap: int = 64
    depth: int = 4
    sigma: float = 1.0
    batch_size: int = 16
    lr: float = 1e-3
    epochs: float = 30.0
    max_seconds: float | None = None
    rotate_deg: float = 20.0
    crop: tuple = (0.8, 1.0)
    seed: int = 0

    @classmethod
    def from_flags(cls, epochs: float | None = None, max_minutes: float | None = None, batch_size: int | None = None,
                   channels: int | None = None, heatmap: int | None = None) -> "PoseTrainSettings":
        """The defaults with ``simgan evaluate pose``'s flags (each a finite number > 0 when given)."""
        s = cls()
        for flag, value, attr in (("--epochs", epochs, "epochs"), ("--max-minutes", max_minutes, "max_seconds"),
                                  ("--batch-size", batch_size, "batch_size"), ("--channels", channels, "channels"),
                                  ("--heatmap", heatmap, "heatmap")):
            if positive(value, flag) is not None:
                setattr(s, attr, 60.0 * value if attr == "max_seconds" else value)
        if s.heatmap < 16:
            raise SimganError("--heatmap must be at least 16 (the hourglass halves it four times)")
        if s.channels < 4:
            raise SimganError("--channels must be at least 4")
        return s

    def check(self) -> "PoseTrainSettings":
        ok = (self.stacks >= 1 and self.channels >= 4 and self.heatmap >= 2 ** self.depth and self.depth >= 1
              and self.batch_size >= 1 and self.lr > 0 and self.epochs > 0 and self.sigma > 0
              and (self.max_seconds is None or self.max_seconds > 0) and 0 <= self.rotate_deg <= 180
              and 0 < self.crop[0] <= self.crop[1] <= 1)
        if not ok:
            raise SimganError(f"bad pose-estimator settings: {asdict(self)}")
        return self


class PoseEstimator(TaskModel):
    """A trained :class:`StackedHourglass` and the bit depth of the images it reads."""

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Joint positions ``N x J x 2`` (image pixels) for ``N x S x S x 1`` integer images."""
        m = self.model
        if images.ndim != 4 or images.shape[1:] != (m.in_size, m.in_size, m.in_channels):
            raise SimganError(f"images are {'x'.join(map(str, images.shape[1:]))} (HxWxC) but the pose estimator "
                              f"was trained on {m.in_size}x{m.in_size}x{m.in_channels}")
        was = m.training
        m.eval()
        out = []
        for s in range(0, len(images), batch_size):
            x = standardise(to_model(images[s:s + batch_size], self.max_value, device=self.device))
            out.append(decode_heatmaps(m(x)[-1].float(), m.in_size).cpu())
        m.train(was)
        return torch.cat(out).double().numpy() if out else np.zeros((0, m.joints, 2))


def train_pose_estimator(images: np.ndarray, uv: np.ndarray, *, max_value: int = 65535,
                         settings: PoseTrainSettings | None = None, device: str | torch.device = "auto",
                         echo: Echo = quiet, name: str = "") -> PoseEstimator:
    """Train a stacked hourglass on ``N x S x S x 1`` integer images and ``N x J x 2`` joints."""
    s = (settings or PoseTrainSettings()).check()
    if images.ndim != 4 or images.shape[1] != images.shape[2]:
        raise SimganError(f"pose training images must be square N x S x S x C, got {images.shape}")
    n, size, _, c = images.shape
    uv = np.asarray(uv, np.float64)
    if uv.ndim != 3 or uv.shape[0] != n or uv.shape[2] != 2:
        raise SimganError(f"expected {n} x J x 2 joint positions, got {uv.shape}")
    if n < 2:
        raise SimganError("a pose estimator needs at least 2 training images (batch norm needs two per batch)")
    dev = resolve_device(device) if isinstance(device, str) else device
    prefix = f"[pose {name}] " if name else "[pose] "
    gen = torch.Generator().manual_seed(s.seed)
    model = seeded_model(s.seed, lambda: StackedHourglass(size, uv.shape[1], s.stacks, s.channels, s.heatmap,
                                                          s.depth, c)).to(dev)
    data = torch.from_numpy(np.ascontiguousarray(images.astype(np.int32) if images.dtype == np.uint16 else images))
    joints = torch.from_numpy(uv).float()

    def heatmap_loss(idx: torch.Tensor) -> torch.Tensor:
        """Intermediate supervision: the MSE to the Gaussian targets summed over every stack."""
        x, j = augment(to_model(data[idx], max_value), joints[idx], gen, s.rotate_deg, s.crop)
        target = target_heatmaps(j.to(dev), size, s.heatmap, s.sigma)
        return sum(F.mse_loss(o.float(), target, reduction="sum") / len(idx) for o in model(standardise(x).to(dev)))

    def report(p: Progress) -> None:
        echo(f"{prefix}step {p.step}/{p.max_steps} epoch {p.seen / p.n:.2f}: loss {p.train_loss:.3f}, "
            f"{p.images_per_second:.0f} img/s")

    sampler = EpochSampler(n, s.batch_size, gen, min_batch=2)  # batch norm needs two samples
    r = fit(model, heatmap_loss, sampler, make_optimizer(model.parameters(), "adam", s.lr),
            max_steps=max(1, math.ceil(s.epochs * sampler.steps_per_epoch)),
            eval_every=max(1, sampler.steps_per_epoch // 2), max_seconds=s.max_seconds, report=report,
            device=dev, max_steps_reason="epochs")
    info = {"n_train": n, "steps": r.steps, "epochs": r.epochs, "stopped": r.stopped, "train_seconds": r.total_seconds,
            "images_per_second": r.seen / max(r.total_seconds, 1e-9), "device": str(dev), "settings": asdict(s)}
    echo(f"{prefix}done: {r.steps} steps, {r.epochs:.2f} epochs in {r.total_seconds:.0f} s")
    return PoseEstimator(model, max_value, info)


# ----------------------------------------------------------------------------------------------
# the experiment


def joint_labels(ds, what: str) -> np.ndarray:
    """``N x J x 2`` joint positions (the ``uv`` labels, image pixels) of a labelled dataset."""
    if not getattr(ds, "labelled", False):
        raise SimganError(f"{what} has no labels; pose evaluation needs \"uv\" joint labels")
    out = None
    for i in range(len(ds)):
        lab = ds.labels(i)
        where = f"{what} {ds.describe(i)}"
        if "uv" not in lab:
            raise SimganError(f"{where} has no \"uv\" label (a list of [u, v] joint positions in pixels)")
        try:
            a = np.asarray(lab["uv"], dtype=np.float64)
        except (TypeError, ValueError):
            a = None
        if a is None or a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 1 or not np.all(np.isfinite(a)):
            raise SimganError(f"{where}: \"uv\" must be a list of [u, v] pairs of finite numbers")
        if out is None:
            out = np.empty((len(ds),) + a.shape)
        elif a.shape != out.shape[1:]:
            raise SimganError(f"{where} has {a.shape[0]} joints but {ds.describe(0)} has {out.shape[1]}")
        out[i] = a
    return out


def evaluate_pose(train_sets: Mapping[str, str | os.PathLike], test: str | os.PathLike,
                  out: str | os.PathLike | None = None, *, device: str = "auto", seed: int = 0,
                  settings: PoseTrainSettings | None = None, overwrite: bool = False,
                  save_estimators: bool = True, echo: Echo = quiet) -> dict:
    """Train one pose estimator per training set and test each on ``test`` (§3.2, Table 4, Figure 9).

    Every set is a labelled dataset of square one-channel depth images with ``uv`` joint labels
    (``simgan simulate hands``, ``simgan convert`` of NYU data). With ``out``: ``OUT/metrics.json``,
    ``OUT/pose_pck.png`` and (``save_estimators``) ``OUT/estimators/NAME.pt``.
    """
    if not train_sets:
        raise SimganError("give at least one training set (--train DIR)")
    out_dir = prepare_out(out, overwrite)
    s = (settings or PoseTrainSettings())
    s = PoseTrainSettings(**{**asdict(s), "seed": seed}).check()
    dev = resolve_device(device)
    test_ds, test_images = open_images(test, what="test set", need_labels=True)
    spec = test_ds.spec
    if spec.channels != 1 or spec.height != spec.width:
        raise SimganError(f"test images are {spec.describe()}; the pose estimator reads square one-channel "
                          "(depth) images")
    test_uv = joint_labels(test_ds, "test set")
    opened = {}
    for name, path in train_sets.items():
        ds = open_like(path, test_ds, f"training set {name!r}", "test set", need_labels=True)
        uv = joint_labels(ds, f"training set {name!r}")
        if uv.shape[1] != test_uv.shape[1]:
            raise SimganError(f"training set {name!r} has {uv.shape[1]} joints but the test set has {test_uv.shape[1]}")
        opened[name] = (ds, uv)
    results, errors_by_name = {}, {}
    for name, (ds, uv) in opened.items():
        echo(f"[pose {name}] loading {len(ds)} images from {train_sets[name]}")
        est = train_pose_estimator(ds.load(), uv, max_value=ds.spec.max_value, settings=s, device=dev, echo=echo,
                                   name=name)
        err = joint_errors_px(est.predict(test_images), test_uv)
        res = pose_metrics(err, spec.width)
        res["train_set"] = str(train_sets[name])
        res["train"] = {k: v for k, v in est.info.items() if k != "settings"}
        if out_dir is not None and save_estimators:
            res["estimator"] = str(save_estimator(est, estimator_path(out_dir, name)))
        results[name] = res
        errors_by_name[name] = err
        echo(f"[pose {name}] test: mean {res['mean_px']:.2f} px, within 5 px: {res['pck5']:.1f}% "
            f"(5 px at 224: {res['pck5_224']:.1f}%)")
    metrics = {
        "measure": "pose",
        "paper": "§3.2: % of real test joints within d pixels (Table 4: d=5 at 224x224), Figure 9",
        "distance_unit": f"pixels of the {spec.width}x{spec.height} test images; *_224: rescaled to 224 px",
        "test": {"path": str(test), "n": len(test_ds), "image": spec.describe()},
        "settings": {**asdict(s), "device": str(dev)},
        "results": results,
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        plot_pck(errors_by_name, out_dir / "pose_pck.png", width=spec.width)
        write_metrics(out_dir, metrics)
    return metrics


def save_estimator(est: PoseEstimator, path: Path) -> Path:
    """Save to ``path`` (a ``torch.save`` file readable with :func:`load_estimator`)."""
    m = est.model
    payload = {"format": "simgan-pose-estimator", "version": 1, "in_size": m.in_size, "joints": m.joints,
               "stacks": m.stacks, "channels": m.channels, "heatmap": m.heatmap, "depth": m.depth,
               "in_channels": m.in_channels, "max_value": est.max_value,
               "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()}}
    return save_model_file(payload, path)


def load_estimator(path: str | os.PathLike, device: str | torch.device = "cpu") -> PoseEstimator:
    """An estimator saved by :func:`evaluate_pose` (``OUT/estimators/NAME.pt``)."""
    d = load_model_file(path, "simgan-pose-estimator", "pose estimator", "simgan evaluate pose")
    m = StackedHourglass(d["in_size"], d["joints"], d["stacks"], d["channels"], d["heatmap"], d["depth"],
                         d["in_channels"])
    m.load_state_dict(d["state_dict"])
    m.eval()
    m.to(resolve_device(device) if isinstance(device, str) else device)
    return PoseEstimator(m, int(d["max_value"]))


def plot_pck(errors_by_name: Mapping[str, np.ndarray], path: str | os.PathLike, *, width: int = PAPER_SIZE,
             max_px: float = 20.0) -> Path:
    """Cumulative curves of the joint error (Figure 9), in pixels of the test images."""
    return plot_cumulative(errors_by_name, path, max_x=max_px, mark=5,
                           label=lambda name, e: f"{name} (d=5: {100 * np.mean(e <= 5):.1f}%)",
                           xlabel=f"distance from ground truth [pixels of the {width}x{width} test images]",
                           ylabel="percentage of joints within distance", title="Hand pose estimation (cf. Figure 9)")


def format_pose_table(metrics: dict) -> str:
    """A plain-text table of :func:`evaluate_pose`'s results."""
    headers = ("training set", "% within 5 px", "% within 5 px@224", "mean px", "mean px@224", "steps", "img/s")
    rows = []
    for name, r in metrics["results"].items():
        t = r.get("train", {})
        rows.append((name, f"{r['pck5']:.1f}", f"{r['pck5_224']:.1f}", f"{r['mean_px']:.2f}", f"{r['mean_px_224']:.2f}",
                     str(t.get("steps", "")), f"{t.get('images_per_second', float('nan')):.0f}"))
    return format_table(headers, rows) + f"\n(test set: {metrics['test']['n']} images, {metrics['test']['path']})"
