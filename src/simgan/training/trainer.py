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
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..config import SimGANConfig, for_image_shape
from ..datasets import Dataset, ImageSpec, atomic_write_bytes, from_model, open_dataset
from ..errors import SimganError
from ..models import losses
from ..models.discriminator import build_discriminator, patch_geometry
from ..models.refiner import Refiner, refiner_receptive_field
from ..paths import check_no_overlap
from ..plots import save_grid, save_loss_curves
from ..runtime import (autocast, deterministic_kernels, init_distributed, resolve_precision, rng_state, set_rng_state,
                       set_threads)
from .snapshots import save_snapshot, snapshot_steps
from .health import METRICS, HealthMonitor, KgPolicy, TrainingDiverged, balance_line, verdict
from .history import ImageHistoryBuffer
from .optim import make_optimizer
from .rundir import CHECKPOINT_VERSION, RunDir, atomic_torch_save
from .sampling import BatchSampler, ImageSource, check_image_spec, load_shard
from .tensorboard import TensorBoardLog
from .tensorboard import wanted as tb_wanted

__all__ = ["PHASES", "METRICS", "Trainer", "TrainResult", "TrainingDiverged", "train"]

PHASES = ("refiner-pretrain", "disc-pretrain", "adversarial")


# ----------------------------------------------------------------------------------------------
# the trainer


@dataclass
class TrainResult:
    run: Path
    step: int
    metrics: dict  # the last logged row


class Trainer:
    def __init__(self, cfg: SimGANConfig, synthetic, real, out, *, resume: bool = False,
                 progress: bool = True, echo=None, trust_pickle: bool = False, tensorboard: bool | None = None):
        set_threads()
        self.dist, self.device = init_distributed(cfg.train.device)
        self.precision = resolve_precision(cfg.train.precision, self.device)
        self.progress = progress and self.dist.is_main
        self._echo = echo
        self.tensorboard = tb_wanted(tensorboard) and self.dist.is_main
        self.tb: TensorBoardLog | None = None

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
        self.synthetic = ImageSource(load_shard(syn_ds, self.dist, cache and cache / "synthetic.npy"), spec,
                                     self.device)
        self.real = ImageSource(load_shard(real_ds, self.dist, cache and cache / "real.npy"), spec, self.device)

        # -- networks, optimisers, buffer ----------------------------------------------------
        deterministic_kernels(self.device)
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
        self.kg_policy = KgPolicy(cfg)
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

    def lr_factor(self, step: int) -> float:
        """The learning rates' multiplier at ``step`` (``train.lr_decay``: 1, then linearly down to 0
        over the last fraction of the adversarial steps; CycleGAN's schedule). A function of the
        step alone, so a resumed run follows the same schedule."""
        t = self.cfg.train
        phase, k = self.phase_of(step)
        decay_steps = round(t.lr_decay * t.steps)
        if phase != "adversarial" or decay_steps == 0:
            return 1.0
        start = t.steps - decay_steps
        return 1.0 if k < start else 1.0 - (k - start) / decay_steps

    def set_learning_rates(self, step: int) -> None:
        t = self.cfg.train
        f = self.lr_factor(step)
        for opt, lr in ((self.opt_r, t.lr), (self.opt_d, t.lr_disc or t.lr)):
            for group in opt.param_groups:
                group["lr"] = lr * f

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
                refined, clean = self.R_train(x, z, with_clean=True)
            else:
                refined, clean = self.R_train(x, with_clean=True)
            if adversarial:
                self.D.eval().requires_grad_(False)  # D is fixed while R is updated
                logits = self.D(self.augment(refined))
        if adversarial:  # Eq. 4
            # (self-regularisation sees R's output without its grain, refiner.grain: the noise has
            # mean zero and moves no label; with grain off, clean is refined)
            loss, real_loss, reg = losses.refiner_loss(logits, clean, x, self.psi, lam, adversarial=lc.adversarial,
                                                       reduction=lc.reduction)
            if diverse:  # minus the diversity-sensitive term (loss.diversity)
                h = x.shape[0] // 2
                loss = loss - lc.diversity * losses.diversity_term(refined[:h], refined[h:], z[:h], z[h:],
                                                                   cap=lc.diversity_cap)
        else:  # pretraining R: the self-regularisation term alone
            reg = losses.self_regularization_loss(clean, x, self.psi, reduction=lc.reduction)
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
        if t.lr_decay > 0:  # the schedule only; otherwise the optimisers keep their learning rates
            self.set_learning_rates(self.step)
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
        if self.tensorboard:
            self.tb = TensorBoardLog(self.run.path, start_step=self.step)
            self.tb.config((self.run.path / "config.yaml").read_text())
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=total, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        self.snapshot_steps = set(snapshot_steps(t))
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
            if self.dist.is_main and self.step in self.snapshot_steps:
                save_snapshot(self.run.path, self.inference_refiner().state_dict(), self.cfg, self.step)
            if self.step % t.checkpoint_every == 0 or done:
                self.save_checkpoint()
        if bar is not None:
            bar.close()
        if self.dist.is_main:
            self.write_samples()
            v = verdict(self.rows, self.cfg, self.kg)
            self.say(f"verdict: {v['verdict']}")
            atomic_write_bytes(self.run.path / "summary.json", json.dumps({"step": self.step, **v}, indent=1).encode())
            self.run.log(f"finished at step {self.step}")
        if self.tb is not None:
            self.tb.close()
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
            if self.tb is not None:
                self.tb.rows(rows)
        self.rows.extend({k: r.get(k) for k in ("phase", "mean_abs_diff", "d_acc_real", "d_acc_refined")}
                         for r in rows if r["phase"] == "adversarial")
        self.health.check(rows, self.say)
        self.kg = self.kg_policy.update(rows, self.kg, self.say)
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
        # R's noise (refiner.noise_channels, refiner.grain), if any, from its own fixed generator:
        # the training's random stream is untouched
        g = torch.Generator().manual_seed(self.cfg.train.seed)
        with torch.no_grad(), autocast(self.device, self.precision):
            refined = R(x, generator=g).float()
        R.train(was_training)
        mv = self.spec.max_value
        rows = [from_model(x, mv), from_model(refined, mv), from_model(y, mv)]
        grid = self.run.samples / f"step_{self.step:07d}.png"
        save_grid(rows, ["synthetic", "refined", "real"], grid)
        if self.tb is not None:
            self.tb.grid(grid, self.step)
        save_loss_curves(self.run.metrics, self.run.samples / "loss_curves.png")

    def _state(self) -> dict:
        return {
            "buffer": self.buffer.state_dict() if self.buffer is not None else None,
            "syn_sampler": self.syn_sampler.state_dict(),
            "real_sampler": self.real_sampler.state_dict(),
            "rng": rng_state(),
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
        set_rng_state(mine["rng"])
        if self.step > self.total_steps:
            raise SimganError(f"{self.run.path} is already at step {self.step}, past the {self.total_steps} "
                              f"steps asked for; raise --steps to train further")


def train(config: SimGANConfig, synthetic, real, out, *, resume: bool = False, progress: bool = True,
          echo=None, trust_pickle: bool = False, tensorboard: bool | None = None) -> TrainResult:
    """Train a refiner (Algorithm 1) and write the run directory ``out``.

    ``synthetic`` and ``real`` are dataset paths (or :class:`simgan.datasets.Dataset` objects);
    the real set's labels, if any, are never read. With ``resume=True`` an existing run
    continues exactly where its last checkpoint stopped. ``echo`` receives each message (default:
    printed above the progress bar); ``tensorboard`` writes ``RUN/tb/`` too (``None``: when the
    package is installed).
    """
    trainer = Trainer(config, synthetic, real, out, resume=resume, progress=progress, echo=echo,
                      trust_pickle=trust_pickle, tensorboard=tensorboard)
    try:
        return trainer.fit()
    finally:
        if trainer.tb is not None:
            trainer.tb.close()
        trainer.run.release()
        if trainer.dist.enabled and dist.is_initialized():
            dist.destroy_process_group()


