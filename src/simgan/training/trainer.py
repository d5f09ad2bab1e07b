"""Algorithm 1: adversarial training of the refiner R against a local discriminator D.

    pretrain R with the self-regularisation loss only        (refiner_pretrain steps)
    pretrain D against that R                                 (disc_pretrain steps)
    for t = 1..T:
        K_g times: sample b synthetic x; step R on L_R (Eq. 4) with D fixed
        K_d times: sample b/2 synthetic x, refine them with the current R, take b/2 more refined
                   images from the history buffer (§2.3) and b real y; step D on L_D (Eq. 2)

The loop below is one pass over a global step counter that runs through the three phases. What
a run needs besides the algorithm has its own collaborator: :class:`~.checkpoint.Checkpointer`
(exact resume), :class:`~.monitor.Monitor` (metrics, health, sample grids, the verdict),
:mod:`.distributed` (several processes under ``torchrun``) and :class:`~.ema.WeightAverage`
(the running average of R's weights).
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import SimGANConfig
from ..datasets import Dataset
from ..errors import SimganError
from ..models import losses
from ..models.discriminator import build_discriminator, patch_geometry
from ..models.refiner import Refiner
from ..paths import check_no_overlap
from ..runtime import autocast, deterministic_kernels, init_distributed, resolve_precision, set_threads
from . import budget
from .checkpoint import Checkpointer
from .distributed import finish, wrap_for_training
from .ema import WeightAverage
from .health import METRICS, TrainingDiverged
from .history import ImageHistoryBuffer
from .monitor import Monitor, describe_run, sample_indices
from .optim import make_optimizer
from .rundir import RunDir
from .sampling import BatchSampler, ImageSource, load_shard, open_training_sets
from .task_consistency import TaskConsistency, read_labels
from .temporal import FlowPairs, shift_term

__all__ = ["PHASES", "METRICS", "Trainer", "TrainResult", "TrainingDiverged", "train"]

PHASES = ("refiner-pretrain", "disc-pretrain", "adversarial")


@dataclass
class TrainResult:
    run: Path
    step: int
    metrics: dict  # the last logged row


class RefinerForLoss(nn.Module):
    """R as its training step needs it: the refined image, and R's image before its output stages,
    which self-regularisation compares with x (one forward pass, through DDP when there is one)."""

    def __init__(self, refiner: Refiner):
        super().__init__()
        self.refiner = refiner

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.refiner.before_stages(x, noise)
        out = y
        for stage in self.refiner.output_stages:
            out = stage(out)
        return out, y


class Trainer:
    def __init__(self, cfg: SimGANConfig, synthetic, real, out, *, resume: bool = False,
                 progress: bool = True, echo=None, trust_pickle: bool = False, tensorboard: bool | None = None):
        self.started = time.perf_counter()  # a time budget (train.minutes) counts from here
        set_threads()
        cfg = copy.deepcopy(cfg)  # a time budget changes the schedule; the caller's config stays as given
        self.dist, self.device = init_distributed(cfg.train.device)
        self.precision = resolve_precision(cfg.train.precision, self.device)
        self.progress = progress
        cfg, self.spec, syn_ds, real_ds = open_training_sets(cfg, synthetic, real)
        if min(len(syn_ds), len(real_ds)) < self.dist.world_size:
            raise SimganError("each process needs at least one synthetic and one real image")
        # Everything that can be checked is checked before the run folder is written.
        if not isinstance(out, (str, os.PathLike)):
            raise SimganError("--out must be a folder path")
        check_no_overlap({"--synthetic": None if isinstance(synthetic, Dataset) else synthetic,
                          "--real": None if isinstance(real, Dataset) else real}, {"--out": out}, partial=False)
        self.geometry = patch_geometry(cfg.discriminator, self.spec.height, self.spec.width)
        self.task_labels = read_labels(cfg.task, syn_ds, self.dist) if cfg.task.weight > 0 else None
        if cfg.temporal.shift > 0 and self.dist.enabled:
            raise SimganError("temporal.shift trains on one process only for now (it runs R twice a step, which "
                              "DDP does not allow); run it without torchrun")
        self.flow_pairs = FlowPairs.load(syn_ds, self.device, self.dist.enabled) if cfg.temporal.weight > 0 else None
        self.cfg = cfg
        self.run = RunDir(Path(out))
        self.monitor = Monitor(cfg, self.run, self.dist, self.phase_of, self.spec.max_value, echo=echo,
                               tensorboard=tensorboard)
        self.checkpoints = Checkpointer(self.run, cfg)
        checkpoint = self.run.open_for(self.dist, cfg, resume=resume, trust_pickle=trust_pickle, echo=self.monitor.say)
        # A failure from here until training starts (corrupt images found while decoding, a
        # checkpoint that does not fit) removes a run this call created: no half-made run is left.
        try:
            self._build(syn_ds, real_ds, checkpoint)
        except BaseException:
            if self.dist.is_main:
                self.run.remove()
            raise

    def _build(self, syn_ds: Dataset, real_ds: Dataset, checkpoint: dict | None) -> None:
        cfg, t, spec, dev = self.cfg, self.cfg.train, self.spec, self.device
        cache = self.run.path / "cache" if self.dist.is_main else None
        self.synthetic = ImageSource(load_shard(syn_ds, self.dist, cache and cache / "synthetic.npy"), spec, dev)
        self.real = ImageSource(load_shard(real_ds, self.dist, cache and cache / "real.npy"), spec, dev)
        self.task = None  # the frozen task network of task consistency, trained before R's seed is set
        if self.task_labels is not None and checkpoint is not None and checkpoint.get("task") is not None:
            self.task = TaskConsistency.from_state(checkpoint["task"], self.synthetic)
        elif self.task_labels is not None:
            self.task = TaskConsistency.train(self.task_labels, self.synthetic, self.dist, steps=cfg.task.steps,
                                              seed=t.seed, augment=cfg.task.augment)
        deterministic_kernels(dev)
        torch.manual_seed(t.seed)
        layout = torch.channels_last if t.channels_last else torch.contiguous_format
        self.R = Refiner(cfg.refiner, spec.channels).to(dev).to(memory_format=layout)
        self.D = build_discriminator(cfg.discriminator, spec.channels, spec.height, spec.width).to(dev)
        self.D = self.D.to(memory_format=layout)
        self.ema = WeightAverage(self.R, t.ema_decay) if t.ema_decay > 0 else None
        self.psi = losses.feature_transform(cfg.loss.feature, spec.channels).to(dev)
        self.opt_r = make_optimizer(self.R.parameters(), t, t.lr)
        self.opt_d = make_optimizer(self.D.parameters(), t, t.lr_disc or t.lr)
        seed = t.seed * 1000 + self.dist.rank
        shape = (spec.channels, spec.height, spec.width)
        self.buffer = ImageHistoryBuffer(t.buffer_size, shape, dev, seed=seed + 1) if t.history else None
        self.syn_sampler = BatchSampler(len(self.synthetic), seed + 2)
        self.real_sampler = BatchSampler(len(self.real), seed + 3)
        self.scaler_r = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.step, self.kg = 0, t.kg
        if checkpoint is not None:
            self.checkpoints.restore(self, checkpoint)
        # The raw modules stay in R / D for checkpoints and for the fixed-network halves of each step.
        self.R_train = wrap_for_training(RefinerForLoss(self.R), self.dist, dev, compile_=t.compile)
        self.D_train = wrap_for_training(self.D, self.dist, dev, compile_=t.compile)
        self.show_syn, self.show_real = sample_indices(len(self.synthetic), len(self.real), t.seed)

    def plan(self) -> list[str]:
        """Time a few steps of each phase, fit a fresh run to its time budget (``train.minutes``),
        bring the first checkpoint within about a minute of work; returns the plan in words."""
        t = self.cfg.train
        costs = budget.measure_step_costs(self)
        scale = left = None
        if t.minutes is not None and self.step == 0:
            spent = time.perf_counter() - self.started
            left = t.minutes * 60 * (1 - budget.RESERVE) - spent - costs.closing(t)
            scale = budget.fit_to_budget(t, costs, left)
            if self.ema is not None:
                self.ema.decay = t.ema_decay
            self.monitor.reschedule()
        t.checkpoint_every = budget.checkpoint_interval(t, costs)
        if self.dist.is_main:
            self.cfg.save(self.run.config)
        lines = budget.plan_lines(t, costs, self.device, start=self.step, scale=scale, budget_s=left)
        return ([self.task.describe(self.cfg.task.label)] if self.task is not None else []) + \
            ([self.flow_pairs.describe()] if self.flow_pairs is not None else []) + lines

    @property
    def total_steps(self) -> int:
        t = self.cfg.train
        return t.refiner_pretrain + t.disc_pretrain + t.steps

    def phase_of(self, step: int) -> tuple[str, int]:
        """The phase of Algorithm 1 that global ``step`` belongs to, and the step within it."""
        t = self.cfg.train
        if step < t.refiner_pretrain:
            return "refiner-pretrain", step
        if step < t.refiner_pretrain + t.disc_pretrain:
            return "disc-pretrain", step - t.refiner_pretrain
        return "adversarial", step - t.refiner_pretrain - t.disc_pretrain

    def inference_refiner(self) -> nn.Module:
        """The weights refining uses: the running average when there is one."""
        return self.ema.model if self.ema is not None else self.R

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """DiffAugment of what D sees, real and refined alike (``train.diff_augment``)."""
        if not self.cfg.train.diff_augment:
            return images
        from .augment import diff_augment
        return diff_augment(images, self.cfg.train.diff_augment)

    # -- the two updates of Algorithm 1 -----------------------------------------------------------
    def refiner_step(self, adversarial: bool) -> tuple[torch.Tensor, ...]:
        """One step of R on Eq. 4 with D fixed (pretraining: self-regularisation only); returns the
        realism and self-regularisation terms, R's mean change, the diversity term, the task-
        consistency term and the two temporal terms (NaN where not computed)."""
        t, lc = self.cfg.train, self.cfg.loss
        diverse = adversarial and lc.diversity > 0  # each image twice, with two noise codes
        idx = self.syn_sampler.next(t.batch_size // 2 if diverse else t.batch_size)
        x = self.synthetic.batch(idx)
        z = None
        if diverse:
            idx = idx.repeat(2)
            x = x.repeat(2, 1, 1, 1)
            if t.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            z = self.R.sample_noise(x.shape[0], device=x.device, dtype=x.dtype)
        tc = self.cfg.temporal
        temporal = adversarial and (tc.weight > 0 or tc.shift > 0)
        if temporal and z is None and self.R.noise_channels:  # the terms compare refinements under one code
            z = self.R.sample_noise(x.shape[0], device=x.device, dtype=x.dtype)
        self.R_train.train()
        with autocast(self.device, self.precision):
            refined, before = self.R_train(x, z)
            if adversarial:
                self.D.eval().requires_grad_(False)  # D is fixed while R is updated
                logits = self.D(self.augment(refined))
        div = task = flow = shift = torch.full((), float("nan"), device=self.device)
        if adversarial:  # Eq. 4, minus the diversity-sensitive term when R takes noise, plus task consistency
            loss, real_loss, reg = losses.refiner_loss(logits, before, x, self.psi, lc.lambda_reg,
                                                       adversarial=lc.adversarial, reduction=lc.reduction)
            if diverse:
                h = x.shape[0] // 2
                div = losses.diversity_term(refined[:h], refined[h:], cap=lc.diversity_cap)
                loss = loss - lc.diversity * div
            if self.task is not None:  # weighed as one patch's realism loss, whichever the reduction
                task = self.task.loss(refined, idx)
                per_image = self.geometry.patches if lc.reduction == "sum" else 1
                loss = loss + self.cfg.task.weight * per_image * task
            per_image = self.geometry.patches if lc.reduction == "sum" else 1
            if tc.weight > 0:
                with autocast(self.device, self.precision):
                    flow = self.flow_pairs.loss(self.R_train, self.synthetic, idx, x, refined, z)
                loss = loss + tc.weight * per_image * flow
            if tc.shift > 0:
                with autocast(self.device, self.precision):
                    shift = shift_term(self.R_train, x, refined, z, self.cfg, self.R.receptive_field)
                loss = loss + tc.shift * per_image * shift
        else:  # pretraining R: the self-regularisation term alone
            reg = losses.self_regularization_loss(before, x, self.psi, reduction=lc.reduction)
            real_loss, loss = torch.full((), float("nan"), device=self.device), reg
        self._update(self.opt_r, self.scaler_r, loss)
        if self.ema is not None:
            self.ema.update(self.R)
        return (real_loss.detach(), reg.detach(), (refined.detach().float() - x).abs().mean(), div.detach(),
                task.detach(), flow.detach(), shift.detach())

    def discriminator_step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of D on Eq. 2 with R fixed; half of the refined images come from the history."""
        t, lc = self.cfg.train, self.cfg.loss
        half = t.batch_size // 2
        use_history = self.buffer is not None and len(self.buffer) >= half
        x = self.synthetic.batch(self.syn_sampler.next(half if use_history else t.batch_size))
        y = self.real.batch(self.real_sampler.next(t.batch_size))
        with torch.no_grad(), autocast(self.device, self.precision):
            self.R.eval()  # R is fixed while D is updated
            new = self.R(x).float()
        refined = torch.cat([new, self.buffer.sample(half)]) if use_history else new
        if t.channels_last:
            refined = refined.contiguous(memory_format=torch.channels_last)
        self.D_train.train()
        self.D.requires_grad_(True)
        if lc.r1_gamma > 0:
            y = y.detach().requires_grad_(True)
        with autocast(self.device, self.precision):
            logits = self.D_train(self.augment(torch.cat([refined, y])))
        logits_ref, logits_real = logits[:refined.shape[0]], logits[refined.shape[0]:]
        loss = losses.discriminator_loss(logits_ref, logits_real, adversarial=lc.adversarial, reduction=lc.reduction)
        if lc.r1_gamma > 0:
            loss = loss + 0.5 * lc.r1_gamma * losses.r1_penalty(losses.realness(logits_real), y, reduction=lc.reduction)
        self._update(self.opt_d, self.scaler_d, loss)
        if self.buffer is not None:
            self.buffer.push(new[:half])
        return (loss.detach(), losses.discriminator_accuracy(logits_real.detach(), losses.REAL),
                losses.discriminator_accuracy(logits_ref.detach(), losses.REFINED))

    @staticmethod
    def _update(opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def iteration(self) -> tuple[torch.Tensor, int]:
        """Runs step ``self.step``; returns a device row of METRICS (NaN where not applicable)
        and the number of synthetic images it drew."""
        t = self.cfg.train
        nan = torch.full((), float("nan"), device=self.device)
        phase, _ = self.phase_of(self.step)
        if phase == "refiner-pretrain":
            _, reg, mad, *_ = self.refiner_step(adversarial=False)
            return torch.stack([nan, nan, nan, nan, reg, mad, nan, nan, nan, nan]), t.batch_size
        if phase == "disc-pretrain":
            return torch.stack([*self.discriminator_step(), *[nan] * 7]), t.batch_size // 2
        r = torch.stack([torch.stack(self.refiner_step(adversarial=True)) for _ in range(self.kg)]).mean(0)
        d = torch.stack([torch.stack(self.discriminator_step()) for _ in range(t.kd)]).mean(0)
        return torch.cat([d, r]), t.batch_size * self.kg + (t.batch_size // 2) * t.kd

    # -- the loop ------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        plan = self.plan()
        t, total = self.cfg.train, self.total_steps
        for line in describe_run(self) + plan:
            self.monitor.say(line)
        self.monitor.start(self.step, total, progress=self.progress)
        pending: list[tuple[int, torch.Tensor]] = []
        images, t0 = 0, time.perf_counter()
        while self.step < total:
            row, n_img = self.iteration()
            pending.append((self.step, row))
            images += n_img
            self.monitor.tick(self.step)
            self.step += 1
            done = self.step == total
            if self.step % t.log_every == 0 or done or self.step % t.checkpoint_every == 0:
                lrs = (self.opt_r.param_groups[0]["lr"], self.opt_d.param_groups[0]["lr"])
                self.kg = self.monitor.flush(pending, images, time.perf_counter() - t0, self.kg, lrs)
                pending, images, t0 = [], 0, time.perf_counter()
            if self.dist.is_main and (self.step % t.sample_every == 0 or done):
                self.write_samples()
                if not done and self.monitor.rows and self.phase_of(self.step - 1)[0] == "adversarial":
                    self.monitor.say(f"step {self.step}: {self.monitor.verdict(self.kg)['verdict']}")
            self.checkpoints.snapshot_if_due(self)
            if self.step % t.checkpoint_every == 0 or done:
                self.checkpoints.save(self)
        looks = None
        if self.dist.is_main:
            self.write_samples()
            looks = self.monitor.looks(self.inference_refiner(), self.synthetic, self.real, self.precision,
                                       self.spec.max_value)
        self.monitor.finish(self.step, self.kg, looks)
        return TrainResult(self.run.path, self.step, self.monitor.last)

    def write_samples(self) -> None:
        self.monitor.samples(self.inference_refiner(), self.synthetic.batch(self.show_syn),
                             self.real.batch(self.show_real), self.step, self.precision, self.spec.max_value)


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
        trainer.monitor.close()
        trainer.run.release()
        finish(trainer.dist)
