"""How real do the images look? Automated counterparts of the visual Turing test (§3.1, Table 1).

The paper asks people to tell real from refined images: 517 of 1000 answers were right (51.7%,
p = 0.148, i.e. chance), against 162 of 200 (p ≤ 1e-8) for real vs plain synthetic images. Two
measures stand in for the people here, each comparing a *candidate* set (synthetic, refined, …)
with the *real* set:

**Classifier two-sample test (C2ST)** (Lopez-Paz & Oquab, ICLR 2017). A fresh small CNN is trained
to tell real from candidate on one half of a balanced sample (equal numbers of each), and its
accuracy is measured on the other, held-out half. If the two sets come from one distribution no
classifier can beat 50% on unseen images; the number of correct held-out answers is then
Binomial(n, ½). We report the accuracy, its exact 95% Clopper–Pearson interval, and the
one-sided binomial p-value against 50% — the same statistic as the paper's p = 0.148. Unlike the
human subjects, the CNN is trained on thousands of examples, so it is a much harsher judge:
expect refined images to be told apart more often than 51.7%; the measure is for ranking
candidates (synthetic vs refined, ablations) against the same real set.

**Kernel distance (KID-style)** (Bińkowski et al., ICLR 2018). The unbiased estimate of the squared
maximum mean discrepancy between the two feature distributions with the cubic polynomial kernel
``k(x, y) = (xᵀy / d + 1)³``, computed on the features of the project's frozen random CNN
(:mod:`simgan.models.features`, whose docstring explains why it needs no download and no training).
Zero (up to noise) for one distribution, larger the more the sets differ. The estimate is the mean
of the MMD² estimates on ``n_blocks`` *disjoint* random blocks of the two sets; being independent,
their standard deviation / √n_blocks is an honest standard error. The numbers are only comparable
between candidates measured against the same real set with this feature network.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
import torch
from torch import nn

from ..datasets import open_dataset, to_model
from ..runtime import resolve_device
from ..errors import SimganError
from ..models.features import MIN_SIZE, frozen_feature_net
from .common import Echo, as_torch_ready, binomial_summary, open_like, prepare_out, quiet, write_metrics
from .kernel import kernel_distance
from ..report import format_table
from .supervised import EpochSampler, Progress, fit, make_optimizer, seeded_model

# ----------------------------------------------------------------------------------------------
# classifier two-sample test


class C2STNet(nn.Module):
    """Small real-vs-candidate classifier: three 3×3 conv / GroupNorm / ReLU stages (``width``,
    2·width, 2·width maps, 2×2 max-pooling after the first two), global average pooling and one
    logit. Works on any image of at least 8×8 pixels. GroupNorm rather than batch norm: no running
    statistics, so the network behaves the same in training and at test time however short the
    training was."""

    def __init__(self, in_channels: int, width: int = 32):
        super().__init__()
        w1, w2 = width, 2 * width

        def stage(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(min(8, cout), cout),
                    nn.ReLU(inplace=True)]

        self.body = nn.Sequential(*stage(in_channels, w1), nn.MaxPool2d(2), *stage(w1, w2), nn.MaxPool2d(2),
                                  *stage(w2, w2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(w2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(1)


@dataclass
class C2STSettings:
    """Training of the C2ST classifier; the test half is never seen before the final measurement."""

    test_fraction: float = 0.5  # of the balanced sample, held out for the accuracy
    val_fraction: float = 0.2  # of the training half, for early stopping
    batch_size: int = 64
    lr: float = 1e-3
    max_steps: int = 1500
    max_epochs: float = 10.0  # passes over the training split; whichever limit comes first
    eval_every: int = 50  # steps between validation-loss measurements
    patience: int = 5  # measurements without a lower validation loss
    width: int = 32

    def check(self) -> "C2STSettings":
        if not (0 < self.test_fraction < 1 and 0 < self.val_fraction < 1 and self.batch_size >= 2
                and self.lr > 0 and self.max_steps >= 1 and self.max_epochs > 0 and self.eval_every >= 1 and self.patience >= 1
                and self.width >= 1):
            raise SimganError(f"bad C2ST settings: {asdict(self)}")
        return self


def _split(n: int, fractions: tuple[float, float], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random split of ``range(n)`` into test / validation / train index tensors."""
    perm = torch.randperm(n, generator=gen)
    n_test = max(1, int(round(n * fractions[0])))
    rest = perm[n_test:]
    n_val = max(1, int(round(len(rest) * fractions[1])))
    return perm[:n_test], rest[:n_val], rest[n_val:]


def _balanced_splits(real: np.ndarray, candidate: np.ndarray, s: C2STSettings, gen: torch.Generator,
                     dev: torch.device) -> tuple:
    """``n`` random images of each set (n: the smaller set's size), split the same way for both
    classes into train / validation / test; each split as images and labels (real 0, candidate 1)."""
    n = min(len(real), len(candidate))
    if n < 6:
        raise SimganError(f"C2ST needs at least 6 images of each set, got {n}")
    r_sel = torch.randperm(len(real), generator=gen)[:n].numpy()
    c_sel = torch.randperm(len(candidate), generator=gen)[:n].numpy()
    te, va, tr = _split(n, (s.test_fraction, s.val_fraction), gen)
    if len(tr) < 1:
        raise SimganError(f"C2ST: too few images ({n} of each) to train and test a classifier")

    def gather(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i = idx.numpy()
        x = np.concatenate([real[r_sel[i]], candidate[c_sel[i]]])
        y = np.concatenate([np.zeros(len(i), np.float32), np.ones(len(i), np.float32)])
        return torch.from_numpy(as_torch_ready(x)).to(dev), torch.from_numpy(y).to(dev)

    return n, gather(tr), gather(va), gather(te)


def classifier_two_sample_test(real: np.ndarray, candidate: np.ndarray, *, max_value: int = 255,
                               settings: C2STSettings | None = None, seed: int = 0,
                               device: str | torch.device = "cpu", echo: Echo = quiet, name: str = "") -> dict:
    """C2ST between two ``N×H×W×C`` integer image arrays (see the module docstring).

    Uses ``min(len(real), len(candidate))`` images of each (balanced); both classes are split
    the same way into train / validation / test. Returns accuracy, Clopper–Pearson 95% interval,
    one-sided binomial p-value against 50%, and the training record.
    """
    s = (settings or C2STSettings()).check()
    if real.shape[1:] != candidate.shape[1:]:
        raise SimganError(f"real images are {real.shape[1:]} but candidate images are {candidate.shape[1:]}")
    if min(real.shape[1], real.shape[2]) < 8:
        raise SimganError("the C2ST classifier needs images of at least 8×8 pixels")
    dev = resolve_device(device) if isinstance(device, str) else device
    gen = torch.Generator().manual_seed(seed)
    n, (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = _balanced_splits(real, candidate, s, gen, dev)

    model = seeded_model(seed, lambda: C2STNet(real.shape[3], s.width))
    model.to(dev).to(memory_format=torch.channels_last)
    lossf = nn.BCEWithLogitsLoss()

    @torch.no_grad()
    def logits(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        out = torch.cat([model(to_model(x[i:i + 1024], max_value)) for i in range(0, len(x), 1024)])
        model.train()
        return out

    def report(p: Progress) -> None:
        echo(f"[c2st {name}] step {p.step}: validation loss {p.val:.4f} (best {p.best_val:.4f})")

    # A short last batch is dropped: every step sees ``batch`` images.
    sampler = EpochSampler(len(x_tr), s.batch_size, gen, min_batch=min(s.batch_size, len(x_tr)), device=dev)
    max_steps = max(1, min(s.max_steps, math.ceil(s.max_epochs * len(x_tr) / sampler.batch)))
    r = fit(model, lambda idx: lossf(model(to_model(x_tr[idx], max_value)), y_tr[idx]), sampler,
            make_optimizer(model.parameters(), "adam", s.lr), max_steps=max_steps,
            eval_every=min(s.eval_every, max_steps), validate=lambda: float(lossf(logits(x_va), y_va)),
            patience=s.patience, min_delta=1e-4, report=report, device=dev)
    pred = logits(x_te) > 0
    correct = int((pred == (y_te > 0.5)).sum())
    res = binomial_summary(correct, len(y_te))
    tr_acc = float(((logits(x_tr) > 0) == (y_tr > 0.5)).float().mean())
    res.update({"n_per_class": n, "n_train": len(y_tr), "n_val": len(y_va), "train_accuracy": tr_acc,
                "steps": r.steps, "epochs": r.epochs, "best_step": r.best_step, "best_val_loss": r.best_val})
    return res


# ----------------------------------------------------------------------------------------------
# kernel distance (the estimate itself: :mod:`.kernel`)


@torch.no_grad()
def image_features(images: np.ndarray, *, max_value: int = 255, device: str | torch.device = "cpu",
                   batch_size: int = 512) -> np.ndarray:
    """``N × 480`` pooled features of the frozen feature network for ``N×H×W×C`` integer images."""
    if min(images.shape[1], images.shape[2]) < MIN_SIZE:
        raise SimganError(f"the kernel distance needs images of at least {MIN_SIZE}×{MIN_SIZE} pixels")
    dev = resolve_device(device) if isinstance(device, str) else device
    net = frozen_feature_net(images.shape[3]).to(dev).to(memory_format=torch.channels_last)
    data = as_torch_ready(images)
    outs = [net.pooled(to_model(data[i:i + batch_size], max_value, device=dev)).double().cpu()
            for i in range(0, len(data), batch_size)]
    return torch.cat(outs).numpy()


# ----------------------------------------------------------------------------------------------
# the command


def evaluate_realism(real: str | os.PathLike, candidates: Mapping[str, str | os.PathLike],
                     out: str | os.PathLike | None = None, *, device: str = "auto", seed: int = 0,
                     max_images: int = 5000, c2st: bool = True, kid: bool = True, n_blocks: int = 10,
                     c2st_settings: C2STSettings | None = None, reference: bool = False,
                     overwrite: bool = False, echo: Echo = quiet, inception: bool = False) -> dict:
    """Compare each candidate set with the real set: C2ST and kernel distance (see module doc).

    At most ``max_images`` random images of each set are used (the same real images for every
    candidate). ``inception``: also FID and KID on Inception-v3 features
    (:mod:`simgan.evaluation.inception`) when the ``simgan[fid]`` extra is installed; skipped
    with a one-line note otherwise. ``reference``: also compare two random halves of the real sample with each
    other, the calibration point of "indistinguishable" (C2ST ≈ 50%, kernel distance ≈ 0, with
    half as many images). With ``out``, writes ``OUT/metrics.json``. Returns::

        {"real": {...}, "results": {NAME: {"c2st": {"accuracy", "ci95", "p_value", ...},
                                          "kid": {"kid", "kid_se", ...}}},
         "reference": {...same for real half vs half...} or None}
    """
    if not candidates:
        raise SimganError("give at least one candidate set (--candidate DIR)")
    if not (c2st or kid):
        raise SimganError("nothing to measure: both the C2ST and the kernel distance are switched off")
    if max_images < 6:
        raise SimganError("--max-images must be at least 6")
    out_dir = prepare_out(out, overwrite)
    dev = resolve_device(device)
    settings = (c2st_settings or C2STSettings()).check()
    real_ds = open_dataset(real, what="real set")
    cand_ds = {name: open_like(path, real_ds, f"candidate set {name!r}", "real set")
               for name, path in candidates.items()}
    rng = np.random.RandomState(seed)
    echo(f"[realism] loading real images from {real}")
    real_images = _sample(real_ds, max_images, rng)
    m = _Measures(kid, c2st, n_blocks, seed, dev, settings, real_ds.spec.max_value, echo)
    real_feats = image_features(real_images, max_value=m.max_value, device=dev) if kid else None
    inception_note, inc_real = _inception_reference(real_images, m) if inception else (None, None)
    results = {}
    for name, ds in cand_ds.items():
        echo(f"[realism {name}] loading {min(len(ds), max_images)} of {len(ds)} images from {candidates[name]}")
        results[name] = _measure_candidate(name, candidates[name], _sample(ds, max_images, rng), real_images,
                                           real_feats, inc_real, m)
    metrics = {
        "measure": "realism",
        "paper": "§3.1 visual Turing test (Table 1): humans 51.7% on real vs refined (p=0.148), "
                 "81% on real vs synthetic (p<=1e-8)",
        "real": {"path": str(real), "n": len(real_ds), "n_used": len(real_images), "image": real_ds.spec.describe()},
        "settings": {"max_images": max_images, "seed": seed, "device": str(dev), "n_blocks": n_blocks,
                     "c2st": asdict(settings) if c2st else None, "kid_features": "simgan.models.features frozen random CNN, "
                     "spatial means of 4 blocks" if kid else None},
        "results": results,
        "reference": _real_vs_real(real_images, real_feats, m) if reference else None,
        "inception_note": inception_note,
        "findings": findings(results),
    }
    if out_dir is not None:
        write_metrics(out_dir, metrics)
    return metrics


@dataclass
class _Measures:
    """Which measures :func:`evaluate_realism` takes, and how."""

    kid: bool
    c2st: bool
    n_blocks: int
    seed: int
    device: torch.device
    settings: C2STSettings
    max_value: int
    echo: Echo


def _sample(ds, max_images: int, rng: np.random.RandomState) -> np.ndarray:
    """All images of ``ds``, or ``max_images`` of them drawn at random (in file order)."""
    if len(ds) <= max_images:
        return ds.load()
    idx = np.sort(rng.choice(len(ds), max_images, replace=False))
    return ds.read_many(idx.tolist())


def _inception_reference(real_images: np.ndarray, m: _Measures):
    """``(note, features)``: the real images' Inception-v3 features, or why there are none."""
    from .inception import MISSING_NOTE, inception_features, inception_weights

    if inception_weights() is None:
        m.echo(f"[realism] {MISSING_NOTE}")
        return MISSING_NOTE, None
    return None, inception_features(real_images, max_value=m.max_value, device=m.device)


def _measure_candidate(name: str, path, images: np.ndarray, real_images: np.ndarray, real_feats, inc_real,
                       m: _Measures) -> dict:
    """Kernel distance, Inception FID/KID (when the real features exist), C2ST, and the frame and
    looks measures (:func:`simgan.evaluation.artifacts.look_measures`) of one candidate set."""
    from .artifacts import look_measures

    res: dict = {"path": str(path), "n_used": len(images),
                 "looks": look_measures(images, real_images, max_value=m.max_value)}
    if m.kid:
        res["kid"] = kernel_distance(real_feats, image_features(images, max_value=m.max_value, device=m.device),
                                     n_blocks=m.n_blocks, seed=m.seed)
        m.echo(f"[realism {name}] kernel distance {res['kid']['kid']:.3g} ± {res['kid']['kid_se']:.2g}")
    if inc_real is not None:
        from .inception import fid_kid
        inc = res["inception"] = fid_kid(real_images, images, max_value=m.max_value, device=m.device, seed=m.seed,
                                         real_features=inc_real)
        m.echo(f"[realism {name}] FID {inc['fid']:.2f}, KID {inc['kid']:.4f} ± {inc['kid_std']:.4f} "
              f"({inc['n_real']} real / {inc['n_candidate']} candidate images)")
    if m.c2st:
        res["c2st"] = classifier_two_sample_test(real_images, images, max_value=m.max_value, settings=m.settings,
                                                 seed=m.seed, device=m.device, echo=m.echo, name=name)
        m.echo(f"[realism {name}] C2ST held-out accuracy {100 * res['c2st']['accuracy']:.1f}%")
    return res


def _real_vs_real(real_images: np.ndarray, real_feats, m: _Measures) -> dict:
    """The calibration point: two random halves of the real sample compared with each other."""
    if len(real_images) < 12:
        raise SimganError("the real-vs-real reference needs at least 12 real images")
    halves = np.array_split(np.random.RandomState(m.seed + 1).permutation(len(real_images)), 2)
    a, b = (np.sort(h) for h in halves)
    ref = {"n_used": len(a)}
    if m.kid:
        ref["kid"] = kernel_distance(real_feats[a], real_feats[b], n_blocks=m.n_blocks, seed=m.seed)
    if m.c2st:
        ref["c2st"] = classifier_two_sample_test(real_images[a], real_images[b], max_value=m.max_value,
                                                 settings=m.settings, seed=m.seed, device=m.device, echo=m.echo,
                                                 name="reference")
    m.echo("[realism] reference (real half vs half) done")
    return ref


def findings(results: dict) -> list[str]:
    """What the measures say in words: a candidate the classifier separates from real images more
    often than the first candidate (the synthetic set, in the usual order), one with a frame the
    real images lack, one whose looks crowd together (mode collapse)."""
    out = []
    names = list(results)
    first = results[names[0]].get("c2st") if names else None
    for name in names:
        r = results[name]
        c, looks = r.get("c2st"), r.get("looks") or {}
        if name != names[0]:
            out += _compared(name, r, names[0], results[names[0]])
        if name != names[0] and c and first and c["accuracy"] > first["accuracy"] + 0.01:
            out.append(f"{name} images are told from real ones more often than {names[0]} images "
                       f"({100 * c['accuracy']:.1f}% against {100 * first['accuracy']:.1f}%)")
        if looks.get("frame"):
            out.append(f"{name} images have a frame: their border band differs from the band inside it "
                       f"{looks['frame_ratio']:.1f}x as much as in real images")
        if looks.get("collapsed"):
            out.append(f"{name} images crowd into a few looks: an image's nearest other look (mean colour and "
                       f"contrast) is {looks['neighbour_ratio']:.2f}x as far as in real images")
    return out


def _compared(name: str, r: dict, first: str, f: dict) -> list[str]:
    """One sentence on what the two-sample test and the kernel distance say of ``name`` against
    the first candidate (usually: refined against synthetic)."""
    c, c0, k, k0 = r.get("c2st"), f.get("c2st"), r.get("kid"), f.get("kid")
    parts = []
    if c and c0:
        harder = c["accuracy"] < c0["accuracy"] - 0.01
        parts.append(f"a classifier tells {name} images from real ones at {100 * c['accuracy']:.1f}% "
                     f"({first}: {100 * c0['accuracy']:.1f}%): {name} images are "
                     + ("harder to tell from real ones" if harder else f"no harder to tell from real ones than {first}"))
    if k and k0 and abs(k0["kid"] - k["kid"]) <= 2 * math.hypot(k.get("kid_se", 0.0), k0.get("kid_se", 0.0)):
        parts.append(f"the kernel distance to the real images did not change beyond its noise ({name} did not "
                     f"move towards the real set)")
    elif k and k0 and k["kid"] > 0 and k0["kid"] > 0:
        ratio = k0["kid"] / k["kid"]
        parts.append(f"the kernel distance to the real images {'fell' if ratio > 1 else 'rose'} "
                     f"{ratio if ratio > 1 else 1 / ratio:.1f}x ({name} moved {'towards' if ratio > 1 else 'away from'} "
                     f"the real set)")
    return ["; ".join(parts)] if parts else []


def _p(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-300 else "<1e-300"  # binomial tails underflow to 0 for huge n


def format_realism_table(metrics: dict) -> str:
    """Plain-text table of :func:`evaluate_realism`'s results."""
    headers = ("candidate", "C2ST acc%", "95% CI", "p (vs 50%)", "KID×1e3", "± SE×1e3", "FID", "Inception KID×1e3",
               "frame ×real", "looks' spacing ×real")
    rows = []
    items = list(metrics["results"].items())
    if metrics.get("reference"):
        items.append(("(real half vs half)", metrics["reference"]))
    for name, r in items:
        c, k = r.get("c2st"), r.get("kid")
        rows.append((
            name,
            f"{100 * c['accuracy']:.1f}" if c else "-",
            f"{100 * c['ci95'][0]:.1f}–{100 * c['ci95'][1]:.1f}" if c else "-",
            _p(c["p_value"]) if c else "-",
            f"{1e3 * k['kid']:.3f}" if k else "-",
            f"{1e3 * k['kid_se']:.3f}" if k else "-",
            f"{r['inception']['fid']:.2f}" if r.get("inception") else "-",
            f"{1e3 * r['inception']['kid']:.2f} ± {1e3 * r['inception']['kid_std']:.2f}" if r.get("inception") else "-",
            f"{r['looks']['frame_ratio']:.2f}" if r.get("looks") else "-",
            f"{r['looks']['neighbour_ratio']:.2f}" if r.get("looks") else "-",
        ))
    text = format_table(headers, rows) + f"\n(real set: {metrics['real']['n_used']} of {metrics['real']['n']} images, {metrics['real']['path']})"
    incs = [r["inception"] for _, r in items if r.get("inception")]
    if incs:
        text += (f"\nFID and KID on Inception-v3 pool features; KID: cubic polynomial kernel, unbiased MMD², mean ± std "
                 f"over {incs[0]['n_subsets']} subsets of {incs[0]['subset_size']} images per set")
    if metrics.get("inception_note"):
        text += "\n" + metrics["inception_note"]
    text += "".join(f"\n- {f}" for f in metrics.get("findings") or [])
    return text
