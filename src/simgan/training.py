"""Algorithm 1: adversarial training of the refiner R against a local discriminator D.

    pretrain R with the self-regularisation loss only        (refiner_pretrain steps)
    pretrain D against that R                                 (disc_pretrain steps)
    for t = 1..T:
        K_g times: sample b synthetic x; step R on L_R (Eq. 4) with D fixed
        K_d times: sample b/2 synthetic x, refine them with the current R, take b/2 more refined
                   images from the history buffer (§2.3) and b real y; step D on L_D (Eq. 2)

Everything a run needs to continue exactly is in its checkpoint: both networks, both optimisers,
the history buffer, the samplers' and buffer's random states and the step. The loop below is one
readable loop over a global step counter that runs through the three phases.

Under ``torchrun`` each process trains on its own shard of both sets with its own history
buffer; R's and D's gradients are averaged by PyTorch's DistributedDataParallel, and rank 0
writes the run directory.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import losses
from .config import SimGANConfig, TrainConfig, for_image_shape
from .datasets import Dataset, ImageSpec, from_model, open_dataset, to_model
from .devices import autocast, resolve_device, resolve_precision, set_threads
from .discriminator import build_discriminator, patch_geometry
from .errors import SimganError
from .history import ImageHistoryBuffer
from .plots import save_grid, save_loss_curves
from .refiner import Refiner, refiner_receptive_field
from .paths import check_no_overlap
from .rundir import CHECKPOINT_VERSION, RunDir, atomic_torch_save

METRICS = ("d_loss", "d_acc_real", "d_acc_refined", "r_loss_real", "r_loss_reg", "mean_abs_diff")
PHASES = ("refiner-pretrain", "disc-pretrain", "adversarial")


class TrainingDiverged(SimganError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------------------------
# distributed set-up (torchrun)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), resolve_device(device_name)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank), device


# ----------------------------------------------------------------------------------------------
# data: decoded once into uint8 arrays, batches gathered and normalised as tensors


class BatchSampler:
    """Mini-batch indices from shuffled epochs, with a saveable random state."""

    def __init__(self, n: int, seed: int):
        self.n = n
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.generator)
        self.pos = 0

    def next(self, b: int) -> torch.Tensor:
        out = []
        while b > 0:
            if self.pos >= self.n:
                self.perm = torch.randperm(self.n, generator=self.generator)
                self.pos = 0
            take = min(b, self.n - self.pos)
            out.append(self.perm[self.pos:self.pos + take])
            self.pos += take
            b -= take
        return out[0] if len(out) == 1 else torch.cat(out)

    def state_dict(self) -> dict:
        return {"n": self.n, "generator": self.generator.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != self.n:
            raise SimganError(f"the checkpoint was trained on a set of {state['n']} images, this one holds {self.n}")
        self.generator.set_state(state["generator"])
        self.perm = state["perm"]
        self.pos = int(state["pos"])


class ImageSource:
    """A set of images as one ``N×H×W×C`` integer tensor; ``batch(idx)`` returns floats in
    [-1, 1] on the training device, channels-last. On a GPU the whole set lives in GPU memory
    when it fits in a quarter of it; otherwise batches are copied from pinned memory asynchronously.
    """

    def __init__(self, array: np.ndarray, spec: ImageSpec, device: torch.device):
        self.spec = spec
        self.device = device
        data = torch.from_numpy(array if array.dtype == np.uint8 else array.astype(np.int32))
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if data.numel() * data.element_size() < free // 4:
                data = data.to(device)
            else:
                data = data.pin_memory()
        self.data = data

    def __len__(self) -> int:
        return self.data.shape[0]

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        if self.data.device != idx.device and self.data.device.type == "cuda":
            idx = idx.to(self.data.device)
        x = self.data[idx]
        if not x.is_cuda and self.device.type == "cuda":  # a set too large for the GPU: copy from pinned memory
            x = x.pin_memory().to(self.device, non_blocking=True)
        return to_model(x, self.spec.max_value)


def _load_shard(ds: Dataset, dist_info: DistInfo, cache: Path | None) -> np.ndarray:
    if dist_info.enabled:
        return ds.read_many(list(range(dist_info.rank, len(ds), dist_info.world_size)))
    return ds.load(cache=cache)


def check_image_spec(cfg: SimGANConfig, spec: ImageSpec, what: str, path) -> None:
    want = cfg.image
    mismatch = [(name, getattr(want, name), getattr(spec, name))
                for name in ("height", "width", "channels", "bit_depth")
                if getattr(want, name) is not None and getattr(want, name) != getattr(spec, name)]
    if mismatch:
        want_spec = ImageSpec(want.height or spec.height, want.width or spec.width,
                              want.channels or spec.channels, want.bit_depth or spec.bit_depth)
        hint = " (use --preset generic for other image shapes)" if cfg.preset != "generic" else ""
        raise SimganError(f"{what} {path} holds {spec.describe()} images but the {cfg.preset} preset is "
                          f"for {want_spec.describe()} images{hint}")


# ----------------------------------------------------------------------------------------------
# health checks (the failure modes users of SimGAN report)


class HealthMonitor:
    """Warns when training is unhealthy; raises :class:`TrainingDiverged` on NaN/inf losses.

    * D wins for long: D classifies ~100% of real and refined patches correctly for many rounds,
      so R gets no useful gradient (the authors raise K_g then; ``adaptive_kg`` does it for you).
    * Refined equals input: mean |R(x) - x| stays under half a grey level in the adversarial phase,
      the "refined images look identical to the synthetic ones" complaint (lambda too large).
    """

    def __init__(self, cfg: SimGANConfig, max_value: int, patience: int | None = None):
        self.cfg = cfg
        self.half_level = 1.0 / max_value  # half a grey level in [-1, 1] units
        # Rounds a condition must last before it is reported.
        patience = patience if patience is not None else cfg.train.health_patience
        self.patience = patience if patience is not None else max(50, cfg.train.steps // 10)
        self.d_streak = 0
        self.identity_streak = 0
        self.warned: set[str] = set()

    def check(self, rows: list[dict], say) -> int:
        """Inspect flushed metric rows; returns the K_g to use from now on."""
        t = self.cfg.train
        for r in rows:
            bad = [k for k in METRICS if r.get(k) is not None and not math.isfinite(r[k])]
            if bad:
                raise TrainingDiverged(
                    f"training diverged at step {r['step']}: {', '.join(bad)} became NaN or infinite; "
                    f"the last good checkpoint is kept; lower --lr or --lambda-reg and --resume")
        adv = [r for r in rows if r["phase"] == "adversarial"]
        if not adv:
            return rows[-1].get("kg", t.kg)
        kg = adv[-1]["kg"]
        for r in adv:
            strong = r.get("d_acc_real", 0) >= 0.99 and r.get("d_acc_refined", 0) >= 0.99
            self.d_streak = self.d_streak + 1 if strong else 0
            same = r.get("mean_abs_diff") is not None and r["mean_abs_diff"] < self.half_level
            self.identity_streak = self.identity_streak + 1 if same else 0
        if self.d_streak >= self.patience and "d-wins" not in self.warned:
            self.warned.add("d-wins")
            say(f"warning: D has classified ~100% of patches correctly for {self.d_streak} rounds: R cannot "
                f"fool it. Raise --kg (now {kg}; the paper used 50 for eyes) or use adaptive_kg, or lower "
                f"D's learning rate (train.lr_disc).")
        if self.identity_streak >= self.patience and "identity" not in self.warned:
            self.warned.add("identity")
            mad = adv[-1]["mean_abs_diff"] / (2.0 * self.half_level)
            say(f"warning: refined images are practically identical to the synthetic input (mean |R(x)-x| = "
                f"{mad:.2f} grey levels for {self.identity_streak} rounds): the self-regularisation term "
                f"dominates; lower --lambda-reg (now {self.cfg.loss.lambda_reg:g}) or train longer.")
        if t.adaptive_kg:
            window_real = np.mean([r.get("d_acc_real", 0) for r in adv])
            window_ref = np.mean([r.get("d_acc_refined", 0) for r in adv])
            if min(window_real, window_ref) >= 0.95 and kg < t.kg_max:
                kg += 1
                say(f"adaptive K_g: D wins easily (accuracy real {window_real:.2f}, refined {window_ref:.2f}); "
                    f"K_g raised to {kg}")
        return kg

    def state_dict(self) -> dict:
        return {"d_streak": self.d_streak, "identity_streak": self.identity_streak, "warned": sorted(self.warned)}

    def load_state_dict(self, state: dict) -> None:
        self.d_streak = state["d_streak"]
        self.identity_streak = state["identity_streak"]
        self.warned = set(state["warned"])


# ----------------------------------------------------------------------------------------------
# the plain verdict


CHANGE_THRESHOLD = 0.03  # mean |R(x) - x| in [-1, 1] (about 4 grey levels of 255) below which R "changed nothing"
FOOLED_THRESHOLD = 0.5  # D's accuracy on refined patches below which R fooled it


def verdict(rows: list[dict], cfg: SimGANConfig, kg: int | None = None) -> dict:
    """A plain verdict on the adversarial rounds logged so far (``rows`` of metrics.jsonl):
    did refinement change the images, could D be fooled, and what to try if not. The last
    quarter of the rounds (at least one) is "now"; D counts as fooled when its accuracy on
    refined patches is below 50% now, or was in at least a tenth of the logged rounds."""
    adv = [r for r in rows if r.get("phase") == "adversarial" and r.get("mean_abs_diff") is not None]
    if not adv:
        return {"verdict": "no adversarial round yet: nothing to judge", "changed": None, "fooled": None}
    recent = adv[-max(1, len(adv) // 4):]
    mad = float(np.mean([r["mean_abs_diff"] for r in recent]))
    acc_ref = float(np.mean([r["d_acc_refined"] for r in recent]))
    acc_real = float(np.mean([r["d_acc_real"] for r in recent]))
    acc = (acc_ref + acc_real) / 2
    fooled_rounds = sum(r["d_acc_refined"] < FOOLED_THRESHOLD for r in adv)
    # fooled: D misjudges most refined patches now, or did so in at least a tenth of the rounds
    changed = mad >= CHANGE_THRESHOLD
    fooled = acc_ref < FOOLED_THRESHOLD or fooled_rounds >= max(1, len(adv) // 10)
    lam, kg = cfg.loss.lambda_reg, kg or cfg.train.kg  # kg: the K_g in use (adaptive K_g may have raised it)
    what = (f"R changed images by {mad:.3f} on average (in [-1, 1]) and "
            + (f"never fooled D (accuracy {100 * acc:.0f}%)" if not fooled_rounds
               else f"fooled D in {fooled_rounds} of {len(adv)} logged rounds (D accuracy now {100 * acc:.0f}%)"))
    if not changed and not fooled:
        advice = f"raise --kg (now {kg}) or lower --lambda-reg (now {lam:g})"
    elif changed and not fooled:
        advice = (f"R moves but D still wins: train longer, raise --kg (now {kg}), or give R noise "
                  f"(refiner.noise_channels) or D fewer chances to memorise (train.diff_augment)")
    elif not changed and fooled:
        advice = "D is fooled without R changing much: the sets may already look alike, or D is too weak for them"
    else:
        advice = "refinement is working; look at the sample grids for artifacts"
    return {"verdict": f"{what}: {advice}.", "changed": changed, "fooled": fooled, "mean_abs_change": mad,
            "d_acc_real": acc_real, "d_acc_refined": acc_ref, "fooled_rounds": fooled_rounds,
            "logged_rounds": len(adv)}


def effective_lambda(cfg: SimGANConfig, patches: int, elements: int) -> tuple[float, float]:
    """Eq. 4's lambda in both conventions of :mod:`simgan.losses`: ``(per-patch/per-element
    means, the paper's sums)``."""
    lam = cfg.loss.lambda_reg
    if cfg.loss.reduction == "mean":
        return lam, lam * patches / elements
    return lam * elements / patches, lam


def balance_line(cfg: SimGANConfig, patches: int, elements: int) -> str:
    """One line stating the effective balance of a run, printed when training starts."""
    lam_mean, lam_sum = effective_lambda(cfg, patches, elements)
    t = cfg.train
    budget = 0.1 / lam_mean if lam_mean > 0 else float("inf")
    return (f"balance: lambda {cfg.loss.lambda_reg:g} with {cfg.loss.reduction}s over {patches} patches and {elements} "
            f"feature elements (= {lam_mean:.3g} per patch vs per element, {lam_sum:.3g} in the paper's sums): to gain "
            f"0.1 of {cfg.loss.adversarial} realism loss per patch R may change psi(x) by {budget:.3g} per element "
            f"on average (range [-1, 1]); K_g {t.kg}, K_d {t.kd}, lr R {t.lr:g} / D {t.lr_disc or t.lr:g}")


# ----------------------------------------------------------------------------------------------
# the trainer


def _rng_state() -> dict:
    """The global random states as tensors and plain data (a checkpoint loads with
    ``torch.load(weights_only=True)``: no pickled numpy or Python objects)."""
    key, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"key": key, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": [version, list(internal), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    if isinstance(npst, dict):
        np.random.set_state((npst["key"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                             npst["cached_gaussian"]))
    else:  # a checkpoint of an older simgan (loaded with --trust-pickle)
        np.random.set_state(npst)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, ValueError):
            pass  # written on a machine with another GPU count: CUDA's streams start afresh


def _unwrap(m: nn.Module) -> nn.Module:
    m = getattr(m, "_orig_mod", m)  # torch.compile
    return getattr(m, "module", m)  # DDP


@dataclass
class TrainResult:
    run: Path
    step: int
    metrics: dict  # the last logged row


def make_optimizer(params, t: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """SGD with momentum or Adam, as the training settings name."""
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=t.momentum)
    return torch.optim.Adam(params, lr=lr, betas=tuple(t.betas))


class Trainer:
    def __init__(self, cfg: SimGANConfig, synthetic, real, out, *, resume: bool = False,
                 progress: bool = True, echo=None, trust_pickle: bool = False):
        set_threads()
        self.dist, self.device = init_distributed(cfg.train.device)
        self.precision = resolve_precision(cfg.train.precision, self.device)
        self.progress = progress and self.dist.is_main
        self._echo = echo
        t = cfg.train

        # -- data ----------------------------------------------------------------------------
        syn_ds = synthetic if isinstance(synthetic, Dataset) else open_dataset(synthetic, what="synthetic set")
        real_ds = real if isinstance(real, Dataset) else open_dataset(real, what="real set")
        spec = syn_ds.spec
        if real_ds.spec != spec:
            raise SimganError(f"the synthetic images are {spec.describe()} but the real images are "
                              f"{real_ds.spec.describe()}; both sets must share size and channels")
        check_image_spec(cfg, spec, "synthetic set", getattr(syn_ds, "root", synthetic))
        cfg = cfg.override({"image": {"height": spec.height, "width": spec.width,
                                      "channels": spec.channels, "bit_depth": spec.bit_depth}})
        cfg = for_image_shape(cfg, spec.height, spec.width)
        self.spec = spec
        if min(len(syn_ds), len(real_ds)) < self.dist.world_size:
            raise SimganError("each process needs at least one synthetic and one real image")

        # Everything that can be checked is checked before the run folder is written.
        if not isinstance(out, (str, os.PathLike)):
            raise SimganError("--out must be a folder path")
        check_no_overlap({"--synthetic": None if isinstance(synthetic, Dataset) else synthetic,
                          "--real": None if isinstance(real, Dataset) else real}, {"--out": out}, partial=False)
        self.geometry = patch_geometry(cfg.discriminator, spec.height, spec.width)
        self.cfg = cfg

        # -- run directory (rank 0 writes it and holds its lock) -----------------------------
        self.run = RunDir(Path(out))
        checkpoint = None
        if self.dist.is_main:
            checkpoint = self.run.prepare(cfg, resume=resume, trust_pickle=trust_pickle, echo=echo)
        if self.dist.enabled:
            dist.barrier()
            if not self.dist.is_main:
                checkpoint = (self.run.load_checkpoint(trust_pickle=trust_pickle)
                              if self.run.checkpoint.exists() else None)
        # A failure from here until training starts (corrupt images found while decoding, a
        # checkpoint that does not fit) removes a run this call created: no half-made run is left.
        try:
            self._setup(cfg, spec, syn_ds, real_ds, checkpoint)
        except BaseException:
            if self.dist.is_main:
                self.run.remove()
            raise

    def _setup(self, cfg: SimGANConfig, spec: ImageSpec, syn_ds: Dataset, real_ds: Dataset, checkpoint) -> None:
        t = cfg.train
        cache = self.run.path / "cache" if self.dist.is_main else None
        self.synthetic = ImageSource(_load_shard(syn_ds, self.dist, cache and cache / "synthetic.npy"), spec,
                                     self.device)
        self.real = ImageSource(_load_shard(real_ds, self.dist, cache and cache / "real.npy"), spec, self.device)

        # -- networks, optimisers, buffer ----------------------------------------------------
        torch.manual_seed(t.seed)
        shape = (spec.channels, spec.height, spec.width)
        self.R = Refiner(cfg.refiner, spec.channels).to(self.device)
        self.D = build_discriminator(cfg.discriminator, spec.channels, spec.height, spec.width).to(self.device)
        if t.channels_last:
            self.R = self.R.to(memory_format=torch.channels_last)
            self.D = self.D.to(memory_format=torch.channels_last)
        self.R_ema = None
        if t.ema_decay > 0:
            self.R_ema = copy.deepcopy(self.R).requires_grad_(False).eval()
        self.psi = losses.feature_transform(cfg.loss.feature, spec.channels).to(self.device)
        self.opt_r = make_optimizer(self.R.parameters(), t, t.lr)
        self.opt_d = make_optimizer(self.D.parameters(), t, t.lr_disc or t.lr)
        seed = t.seed * 1000 + self.dist.rank
        self.buffer = ImageHistoryBuffer(t.buffer_size, shape, self.device, seed=seed + 1) if t.history else None
        self.syn_sampler = BatchSampler(len(self.synthetic), seed + 2)
        self.real_sampler = BatchSampler(len(self.real), seed + 3)
        self.health = HealthMonitor(cfg, spec.max_value)
        self.scaler_r = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.step = 0
        self.kg = t.kg
        self.rows: list[dict] = []  # adversarial metric rows of this process, for the verdict
        if checkpoint is not None:
            self._restore(checkpoint)

        # DDP wraps the modules whose gradients are averaged across processes; the raw modules
        # stay in self.R / self.D for checkpoints and for the fixed-network halves of each step.
        self.R_train, self.D_train = self.R, self.D
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.R_train = DDP(self.R, device_ids=ids)
            self.D_train = DDP(self.D, device_ids=ids)
        if t.compile:
            self.R_train = torch.compile(self.R_train)
            self.D_train = torch.compile(self.D_train)

        # Fixed images for the sample grids (rows: synthetic, refined, real; Figure 5).
        g = np.random.default_rng(t.seed)
        n_show = min(8, len(self.synthetic), len(self.real))
        self.show_syn = torch.as_tensor(np.sort(g.choice(len(self.synthetic), n_show, replace=False)))
        self.show_real = torch.as_tensor(np.sort(g.choice(len(self.real), n_show, replace=False)))

    # -- helpers -----------------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        if not self.dist.is_main:
            return
        if self._echo is not None:
            self._echo(msg)
        else:
            from tqdm import tqdm
            tqdm.write(msg, file=sys.stderr)
        self.run.log(msg)

    @property
    def total_steps(self) -> int:
        t = self.cfg.train
        return t.refiner_pretrain + t.disc_pretrain + t.steps

    def phase_of(self, step: int) -> tuple[str, int]:
        t = self.cfg.train
        if step < t.refiner_pretrain:
            return "refiner-pretrain", step
        if step < t.refiner_pretrain + t.disc_pretrain:
            return "disc-pretrain", step - t.refiner_pretrain
        return "adversarial", step - t.refiner_pretrain - t.disc_pretrain

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """DiffAugment of what D sees (train.diff_augment; identity when off)."""
        if not self.cfg.train.diff_augment:
            return images
        from .augment import diff_augment
        return diff_augment(images, self.cfg.train.diff_augment)

    def inference_refiner(self) -> nn.Module:
        """The weights refining uses: the running average when there is one."""
        return self.R_ema if self.R_ema is not None else self.R

    # -- the two updates of Algorithm 1 -----------------------------------------------------------
    def refiner_step(self, adversarial: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of R on Eq. 4 with D fixed (pretraining: self-regularisation only)."""
        t, lam = self.cfg.train, self.cfg.loss.lambda_reg
        lc = self.cfg.loss
        diverse = adversarial and lc.diversity > 0
        if diverse:  # pairs: each image twice, with two noise draws (loss.diversity)
            x = self.synthetic.batch(self.syn_sampler.next(t.batch_size // 2)).repeat(2, 1, 1, 1)
            if t.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = self.synthetic.batch(self.syn_sampler.next(t.batch_size))
        self.R_train.train()
        with autocast(self.device, self.precision):
            if diverse:
                z = self.R.sample_noise(x.shape[0], *x.shape[2:], device=x.device, dtype=x.dtype)
                refined = self.R_train(x, z)
            else:
                refined = self.R_train(x)
            if adversarial:
                self.D.eval().requires_grad_(False)  # D is fixed while R is updated
                logits = self.D(self.augment(refined))
        reg = losses.self_regularization_loss(refined, x, self.psi, reduction=self.cfg.loss.reduction)
        if adversarial:
            real_loss = losses.realism_loss(logits, adversarial=self.cfg.loss.adversarial,
                                            reduction=self.cfg.loss.reduction)
            loss = real_loss + lam * reg
            if diverse:
                h = x.shape[0] // 2
                loss = loss - lc.diversity * losses.diversity_term(refined[:h], refined[h:], z[:h], z[h:],
                                                                   cap=lc.diversity_cap)
        else:
            real_loss = torch.full((), float("nan"), device=self.device)
            loss = reg
        self.opt_r.zero_grad(set_to_none=True)
        self.scaler_r.scale(loss).backward()
        self.scaler_r.step(self.opt_r)
        self.scaler_r.update()
        if self.R_ema is not None:
            with torch.no_grad():
                ema = list(self.R_ema.parameters())
                torch._foreach_lerp_(ema, list(self.R.parameters()), 1.0 - t.ema_decay)
                for b_ema, b in zip(self.R_ema.buffers(), self.R.buffers()):
                    b_ema.copy_(b)
        mad = (refined.detach().float() - x).abs().mean()
        return real_loss.detach(), reg.detach(), mad

    def discriminator_step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of D on Eq. 2 with R fixed; half of the refined images come from the history."""
        t = self.cfg.train
        half = t.batch_size // 2
        use_history = self.buffer is not None and len(self.buffer) >= half
        n_new = half if use_history else t.batch_size
        x = self.synthetic.batch(self.syn_sampler.next(n_new))
        y = self.real.batch(self.real_sampler.next(t.batch_size))
        with torch.no_grad(), autocast(self.device, self.precision):
            self.R.eval()  # R is fixed while D is updated
            new = self.R(x).float()
        refined = torch.cat([new, self.buffer.sample(half)]) if use_history else new
        if t.channels_last:
            refined = refined.contiguous(memory_format=torch.channels_last)
        self.D_train.train()
        self.D.requires_grad_(True)
        lc = self.cfg.loss
        if lc.r1_gamma > 0:
            y = y.detach().requires_grad_(True)
        with autocast(self.device, self.precision):
            logits = self.D_train(self.augment(torch.cat([refined, y])))
        logits_ref, logits_real = logits[:refined.shape[0]], logits[refined.shape[0]:]
        loss = losses.discriminator_loss(logits_ref, logits_real, adversarial=lc.adversarial, reduction=lc.reduction)
        if lc.r1_gamma > 0:
            loss = loss + 0.5 * lc.r1_gamma * losses.r1_penalty(losses.realness(logits_real), y, reduction=lc.reduction)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(loss).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        if self.buffer is not None:
            self.buffer.push(new[:half])
        acc_real = losses.discriminator_accuracy(logits_real.detach(), losses.REAL)
        acc_ref = losses.discriminator_accuracy(logits_ref.detach(), losses.REFINED)
        return loss.detach(), acc_real, acc_ref

    # -- one iteration of the global loop -----------------------------------------------------------
    def iteration(self) -> tuple[torch.Tensor, int]:
        """Runs step ``self.step``; returns a device row of METRICS (NaN where not applicable)
        and the number of synthetic images it drew."""
        t = self.cfg.train
        nan = torch.full((), float("nan"), device=self.device)
        phase, _ = self.phase_of(self.step)
        if phase == "refiner-pretrain":
            _, reg, mad = self.refiner_step(adversarial=False)
            return torch.stack([nan, nan, nan, nan, reg, mad]), t.batch_size
        if phase == "disc-pretrain":
            d_loss, acc_real, acc_ref = self.discriminator_step()
            return torch.stack([d_loss, acc_real, acc_ref, nan, nan, nan]), t.batch_size // 2
        r_real = r_reg = mad = 0.0
        for _ in range(self.kg):
            a, b, c = self.refiner_step(adversarial=True)
            r_real, r_reg, mad = r_real + a, r_reg + b, mad + c
        d_loss = acc_real = acc_ref = 0.0
        for _ in range(t.kd):
            a, b, c = self.discriminator_step()
            d_loss, acc_real, acc_ref = d_loss + a, acc_real + b, acc_ref + c
        row = torch.stack([d_loss / t.kd, acc_real / t.kd, acc_ref / t.kd,
                           r_real / self.kg, r_reg / self.kg, mad / self.kg])
        return row, t.batch_size * self.kg + (t.batch_size // 2) * t.kd

    # -- the loop ------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        t = self.cfg.train
        total = self.total_steps
        if self.dist.is_main:
            self.describe()
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=total, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        pending: list[tuple[int, torch.Tensor]] = []
        images, t0 = 0, time.perf_counter()
        last: dict = {}
        while self.step < total:
            row, n_img = self.iteration()
            pending.append((self.step, row))
            images += n_img
            self.step += 1
            if bar is not None:
                bar.update(1)
            done = self.step == total
            if self.step % t.log_every == 0 or done or self.step % t.checkpoint_every == 0:
                rows = self.flush(pending, images, time.perf_counter() - t0)
                pending, images, t0 = [], 0, time.perf_counter()
                if rows:
                    last = rows[-1]
                    if bar is not None:
                        bar.set_postfix_str(self._postfix(last), refresh=False)
            if self.dist.is_main and (self.step % t.sample_every == 0 or done):
                self.write_samples()
                if not done and self.phase_of(self.step - 1)[0] == "adversarial":
                    self.say(f"step {self.step}: {verdict(self.rows, self.cfg, self.kg)['verdict']}")
            if self.step % t.checkpoint_every == 0 or done:
                self.save_checkpoint()
        if bar is not None:
            bar.close()
        if self.dist.is_main:
            self.write_samples()
            v = verdict(self.rows, self.cfg, self.kg)
            self.say(f"verdict: {v['verdict']}")
            from .datasets import atomic_write_bytes
            atomic_write_bytes(self.run.path / "summary.json", json.dumps({"step": self.step, **v}, indent=1).encode())
            self.run.log(f"finished at step {self.step}")
        return TrainResult(self.run.path, self.step, last)

    def flush(self, pending, images: int, seconds: float) -> list[dict]:
        """Read the accumulated device metrics (one host sync), log them, check health."""
        if not pending:
            return []
        values = torch.stack([r for _, r in pending])
        if self.dist.enabled:  # average over processes
            dist.all_reduce(values)
            values /= self.dist.world_size
            counts = torch.tensor([images], dtype=torch.float64)
            dist.all_reduce(counts)
            images = int(counts.item())
        values = values.cpu().tolist()
        ips = images / max(seconds, 1e-9)
        rows = []
        for (step, _), vals in zip(pending, values):
            phase, _ = self.phase_of(step)
            r = {"step": step + 1, "phase": phase}
            if phase == "adversarial":
                r["round"] = step + 1 - self.cfg.train.refiner_pretrain - self.cfg.train.disc_pretrain
                r["kg"] = self.kg
            for k, v in zip(METRICS, vals):
                if not (isinstance(v, float) and math.isnan(v) and not self._applicable(phase, k)):
                    r[k] = v
            r["lr"] = self.opt_r.param_groups[0]["lr"] if phase != "disc-pretrain" else self.opt_d.param_groups[0]["lr"]
            r["images_per_s"] = ips
            rows.append(r)
        if self.dist.is_main:
            self.run.append_metrics(rows)
        self.rows.extend({k: r.get(k) for k in ("phase", "mean_abs_diff", "d_acc_real", "d_acc_refined")}
                         for r in rows if r["phase"] == "adversarial")
        self.kg = self.health.check(rows, self.say)
        return rows

    @staticmethod
    def _applicable(phase: str, key: str) -> bool:
        if phase == "refiner-pretrain":
            return key in ("r_loss_reg", "mean_abs_diff")
        if phase == "disc-pretrain":
            return key in ("d_loss", "d_acc_real", "d_acc_refined")
        return True

    def _postfix(self, r: dict) -> str:
        parts = [r["phase"]]
        for k, label in (("d_loss", "D"), ("d_acc_real", "acc_real"), ("d_acc_refined", "acc_ref"),
                         ("r_loss_real", "R_real"), ("r_loss_reg", "R_reg")):
            if r.get(k) is not None:
                parts.append(f"{label}={r[k]:.3g}")
        parts.append(f"{r['images_per_s']:.0f} img/s")
        return " ".join(parts)

    def describe(self) -> None:
        cfg, g = self.cfg, self.geometry
        rf = refiner_receptive_field(cfg.refiner)
        n_syn, n_real = len(self.synthetic), len(self.real)
        where = ""
        if self.dist.enabled:
            where = f" per process, {self.dist.world_size} processes"
        self.say(f"simgan train: preset {cfg.preset}, {self.spec.describe()} images, {n_syn} synthetic / "
                 f"{n_real} real{where}; device {self.device}, precision {self.precision}")
        kind = "local" if cfg.discriminator.kind == "local" else "global"
        self.say(f"refiner receptive field {rf}x{rf} px; {kind} discriminator: "
                 + (f"{g.map_width}x{g.map_height} = {g.patches} patches of {g.receptive_field}x{g.receptive_field} px "
                    f"(stride {g.stride})" if kind == "local" else "one decision per image"))
        self.say(balance_line(cfg, g.patches, self.feature_elements()))

    def feature_elements(self) -> int:
        """Elements of psi(x) for one image: what the self-regularisation term sums or averages."""
        with torch.no_grad():
            z = torch.zeros(1, self.spec.channels, self.spec.height, self.spec.width, device=self.device)
            return int(self.psi(z).numel())

    # -- samples and checkpoints ----------------------------------------------------------------------
    @torch.no_grad()
    def write_samples(self) -> None:
        x = self.synthetic.batch(self.show_syn)
        y = self.real.batch(self.show_real)
        R = self.inference_refiner()
        was_training = R.training
        R.eval()
        noise = None
        if self.R.noise_channels:  # fixed noise from its own generator: the training's random stream is untouched
            noise = self.R.sample_noise(x.shape[0], *x.shape[2:], generator=torch.Generator().manual_seed(self.cfg.train.seed),
                                        device=x.device, dtype=x.dtype)
        with torch.no_grad(), autocast(self.device, self.precision):
            refined = (R(x, noise) if noise is not None else R(x)).float()
        R.train(was_training)
        mv = self.spec.max_value
        rows = [from_model(x, mv), from_model(refined, mv), from_model(y, mv)]
        save_grid(rows, ["synthetic", "refined", "real"], self.run.samples / f"step_{self.step:07d}.png")
        save_loss_curves(self.run.metrics, self.run.samples / "loss_curves.png")

    def _state(self) -> dict:
        return {
            "buffer": self.buffer.state_dict() if self.buffer is not None else None,
            "syn_sampler": self.syn_sampler.state_dict(),
            "real_sampler": self.real_sampler.state_dict(),
            "rng": _rng_state(),
        }

    def save_checkpoint(self) -> None:
        """Atomically replace ``checkpoints/last.pt`` (full state) and ``refiner.safetensors`` (weights
        for refining). Per-process state (history buffer, samplers) is gathered to rank 0."""
        per_rank = self._state()
        if self.dist.enabled:
            gathered = [None] * self.dist.world_size if self.dist.is_main else None
            dist.gather_object(per_rank, gathered, dst=0)
        else:
            gathered = [per_rank]
        if self.dist.is_main:
            state = {
                "version": CHECKPOINT_VERSION,
                "config": self.cfg.to_dict(),
                "step": self.step,
                "kg": self.kg,
                "world_size": self.dist.world_size,
                "refiner": self.R.state_dict(),
                "refiner_ema": self.R_ema.state_dict() if self.R_ema is not None else None,
                "discriminator": self.D.state_dict(),
                "opt_refiner": self.opt_r.state_dict(),
                "opt_discriminator": self.opt_d.state_dict(),
                "scalers": [self.scaler_r.state_dict(), self.scaler_d.state_dict()],
                "health": self.health.state_dict(),
                "ranks": gathered,
            }
            atomic_torch_save(state, self.run.checkpoint)
            self.run.save_refiner(self.inference_refiner().state_dict(), self.cfg, self.step)
        if self.dist.enabled:
            dist.barrier()

    def _restore(self, ckpt: dict) -> None:
        if ckpt["world_size"] != self.dist.world_size:
            raise SimganError(f"{self.run.checkpoint} was written by {ckpt['world_size']} process(es); resume it "
                              f"with the same number (now {self.dist.world_size})")
        self.R.load_state_dict(ckpt["refiner"])
        self.D.load_state_dict(ckpt["discriminator"])
        if self.R_ema is not None:
            if ckpt["refiner_ema"] is not None:
                self.R_ema.load_state_dict(ckpt["refiner_ema"])
            else:
                self.R_ema.load_state_dict(ckpt["refiner"])
        self.opt_r.load_state_dict(ckpt["opt_refiner"])
        self.opt_d.load_state_dict(ckpt["opt_discriminator"])
        # A GradScaler only has state in fp16; resuming into or out of fp16 starts a fresh one.
        for scaler, state in zip((self.scaler_r, self.scaler_d), ckpt["scalers"]):
            if scaler.is_enabled() and state:
                scaler.load_state_dict(state)
        self.health.load_state_dict(ckpt["health"])
        self.step = ckpt["step"]
        self.kg = ckpt["kg"]
        if self.run.metrics.exists():  # the verdict judges the whole run, not only this session
            rows = [json.loads(line) for line in self.run.metrics.read_text().splitlines() if line.strip()]
            self.rows = [r for r in rows if r.get("phase") == "adversarial" and r.get("step", 0) <= self.step]
        mine = ckpt["ranks"][self.dist.rank]
        if self.buffer is not None and mine["buffer"] is not None:
            self.buffer.load_state_dict(mine["buffer"])
        self.syn_sampler.load_state_dict(mine["syn_sampler"])
        self.real_sampler.load_state_dict(mine["real_sampler"])
        _set_rng_state(mine["rng"])
        if self.step > self.total_steps:
            raise SimganError(f"{self.run.path} is already at step {self.step}, past the {self.total_steps} "
                              f"steps asked for; raise --steps to train further")


def train(config: SimGANConfig, synthetic, real, out, *, resume: bool = False, progress: bool = True,
          echo=None, trust_pickle: bool = False) -> TrainResult:
    """Train a refiner (Algorithm 1) and write the run directory ``out``.

    ``synthetic`` and ``real`` are dataset paths (or :class:`simgan.datasets.Dataset` objects);
    the real set's labels, if any, are never read. With ``resume=True`` an existing run
    continues exactly where its last checkpoint stopped.
    """
    trainer = Trainer(config, synthetic, real, out, resume=resume, progress=progress, echo=echo,
                      trust_pickle=trust_pickle)
    try:
        return trainer.fit()
    finally:
        trainer.run.release()
        if trainer.dist.enabled and dist.is_initialized():
            dist.destroy_process_group()


def resolve_train_config(out, *, preset_name: str | None = None, config_file=None, overrides: dict | None = None,
                         resume: bool = False) -> SimGANConfig:
    """The configuration a ``simgan train`` call runs with.

    A fresh run: preset, then ``--config`` file, then flags. A resumed run: the run's own
    ``config.yaml`` with the flags given now on top (the trainer then checks that only the step
    count, device and precision changed)."""
    from .config import resolve_config
    from .rundir import RunDir

    from .rundir import RESUMABLE_CHANGES, check_resumable, config_differences

    rd = RunDir(Path(out))
    if resume and rd.is_run():
        saved = rd.saved_config()
        if preset_name is not None and preset_name != saved.preset:
            raise SimganError(f"{rd.path} is a run of the {saved.preset} preset, not {preset_name}")
        if config_file is not None:
            # The same command again with --resume: the file may repeat the run's settings, and
            # change only what a resumed run may change; anything else is named.
            given = resolve_config(preset_name or saved.preset, config_file=config_file, overrides=overrides)
            if given.preset != saved.preset:
                raise SimganError(f"{rd.path} is a run of the {saved.preset} preset, not {given.preset}")
            # image: None in a preset means "from the data"; the run has the data's shape.
            given = given.override({"image": {k: v if v is not None else getattr(saved.image, k)
                                              for k, v in given.to_dict()["image"].items()}})
            check_resumable(rd.path, saved, given)
            changes: dict = {}
            for (section, key), _, new in config_differences(saved, given):
                if (section, key) in RESUMABLE_CHANGES:
                    changes.setdefault(section, {})[key] = new
            return saved.override(changes).validate()
        return saved.override(overrides or {}).validate()
    return resolve_config(preset_name, config_file=config_file, overrides=overrides)
