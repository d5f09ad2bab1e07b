"""One small supervised-training loop for the task models that measure refinement.

The paper judges refined images by training ordinary supervised networks on them: the gaze
estimator of §3.1 ("trained ... until the validation error converges") and the hand pose
estimator of §3.2; the automated visual Turing test (the classifier two-sample test of
:mod:`simgan.evaluation.realism`) trains one more. They share everything but the model, the loss
and the data, so the loop lives here once:

- :class:`EpochSampler`: shuffled passes over the training split drawn from one
  ``torch.Generator`` (a fresh permutation when the current pass has fewer than ``min_batch``
  images left: ``min_batch=1`` keeps a short last batch, ``min_batch=batch`` drops it, ``2``
  suits batch norm);
- :func:`make_optimizer`: Adam, or SGD with momentum 0.9;
- :func:`seeded_model`: the network's initial weights drawn from ``seed`` without touching the
  global random stream;
- :func:`fit`: the steps; every ``eval_every`` steps (and at the last step, and when time is up)
  the mean training loss, an optional validation measure (lower is better), early stopping after
  ``patience`` measurements without an improvement of ``min_delta``, and a progress report. The
  weights of the best measurement are restored at the end;
- :class:`TaskModel`, :func:`save_model_file`, :func:`load_model_file`: the trained model with
  the bit depth of its images, and its ``torch.save`` file (written atomically, read with
  ``weights_only=True`` and one-line errors).
"""

from __future__ import annotations

import copy
import io
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from ..errors import SimganError
from ..runtime import synchronize


class EpochSampler:
    """Batches of training positions, one shuffled pass (epoch) after another.

    ``next()`` returns ``index[order[pos:pos + batch]]`` (or the positions themselves without
    ``index``); a new permutation of ``range(n)`` is drawn from ``gen`` only when fewer than
    ``min_batch`` positions of the current one are left, so the draws happen exactly when a batch
    needs them (callers that draw from the same generator, e.g. for augmentation, keep their order).
    """

    def __init__(self, n: int, batch: int, gen: torch.Generator, *, min_batch: int = 1,
                 index: torch.Tensor | None = None, device: torch.device | None = None):
        if n < max(1, min_batch):
            raise SimganError(f"too few training samples ({n}) for a batch of at least {min_batch}")
        self.n, self.batch, self.gen, self.min_batch = n, min(batch, n), gen, max(1, min_batch)
        self.index, self.device = index, device
        self.order: torch.Tensor | None = None
        self.pos = n

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n / self.batch)

    def next(self) -> torch.Tensor:
        if self.pos + self.min_batch > self.n:
            perm = torch.randperm(self.n, generator=self.gen)
            self.order = perm.to(self.device) if self.device is not None else perm
            self.pos = 0
        idx = self.order[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return idx if self.index is None else self.index[idx]


def make_optimizer(params: Iterable, name: str = "adam", lr: float = 1e-3) -> torch.optim.Optimizer:
    """Adam (default) or SGD with momentum 0.9 (the settings of the task models)."""
    from ..training.optim import optimizer
    return optimizer(params, name, lr)


def seeded_model(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with its initial weights drawn from ``seed``; the global RNG state is kept."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@dataclass
class Progress:
    """What :func:`fit` knows at a measurement (passed to ``report``)."""

    step: int
    max_steps: int
    epoch: float  # step / steps_per_epoch
    seen: int  # training samples processed
    n: int  # size of the training split
    train_loss: float  # mean over the steps since the last measurement
    val: float | None  # the validation measure, None without ``validate``
    best_val: float
    images_per_second: float  # seen / training seconds (measurements excluded)


@dataclass
class FitResult:
    steps: int
    seen: int
    epochs: float
    stopped: str  # "max_steps" (or the caller's name for it), "converged" or "max_seconds"
    best_step: int
    best_val: float
    train_seconds: float
    total_seconds: float
    curve: list = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.seen / max(self.train_seconds, 1e-9)


def fit(model: nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor], sampler: EpochSampler,
        optimizer: torch.optim.Optimizer, *, max_steps: int, eval_every: int,
        validate: Callable[[], float] | None = None, patience: int | None = None, min_delta: float = 0.0,
        max_seconds: float | None = None, report: Callable[[Progress], None] | None = None,
        device: torch.device | None = None, val_key: str = "val", max_steps_reason: str = "max_steps") -> FitResult:
    """Train ``model`` on ``loss_fn(batch_index)`` until ``max_steps``, convergence or ``max_seconds``.

    At each measurement the validation value is compared with the best so far: a lower value is
    kept as the best state; only an improvement of more than ``min_delta`` resets the patience
    count. ``curve`` holds one ``{"step", "epoch", "train_loss", val_key}`` per measurement.
    The model is left in eval mode with the best state (the last state without ``validate``).
    """
    dev = device if device is not None else next(model.parameters()).device
    best_val, best_state, best_step = float("inf"), None, 0
    since_best, step, seen, train_seconds, reason = 0, 0, 0, 0.0, max_steps_reason
    curve: list[dict] = []
    running, running_n = torch.zeros((), device=dev), 0
    t_start = t_seg = time.perf_counter()
    model.train()
    while step < max_steps:
        idx = sampler.next()
        loss = loss_fn(idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running, running_n, seen, step = running + loss.detach(), running_n + 1, seen + len(idx), step + 1
        out_of_time = max_seconds is not None and time.perf_counter() - t_start >= max_seconds
        if not (step % eval_every == 0 or step == max_steps or out_of_time):
            continue
        synchronize(dev)
        train_seconds += time.perf_counter() - t_seg
        val = validate() if validate is not None else None
        train_loss = float(running) / running_n
        running.zero_()
        running_n = 0
        epoch = step / sampler.steps_per_epoch
        curve.append({"step": step, "epoch": round(epoch, 4), "train_loss": train_loss,
                      **({val_key: val} if val is not None else {})})
        if val is not None:
            improved = val < best_val - min_delta
            if val < best_val:
                best_val, best_state, best_step = val, copy.deepcopy(model.state_dict()), step
            since_best = 0 if improved else since_best + 1
        if report is not None:
            report(Progress(step, max_steps, epoch, seen, sampler.n, train_loss, val, best_val,
                            seen / max(train_seconds, 1e-9)))
        if patience is not None and val is not None and since_best >= patience:
            reason = "converged"
            break
        if out_of_time or (max_seconds is not None and time.perf_counter() - t_start >= max_seconds):
            reason = "max_seconds"
            break
        t_seg = time.perf_counter()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(step, seen, seen / sampler.n, reason, best_step, best_val, train_seconds,
                     time.perf_counter() - t_start, curve)


# ----------------------------------------------------------------------------------------------
# the trained model and its file


@dataclass
class TaskModel:
    """A trained task model (gaze or pose estimator) and the bit depth of the images it reads."""

    model: nn.Module
    max_value: int
    info: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def save_model_file(payload: dict, path: str | os.PathLike) -> Path:
    """Write ``payload`` (tensors, numbers, strings) with ``torch.save``, atomically."""
    from ..datasets import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(payload, buf)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_model_file(path: str | os.PathLike, fmt: str, what: str, command: str) -> dict:
    """The payload of a file :func:`save_model_file` wrote with ``"format": fmt``; one-line errors
    name ``what`` (e.g. "gaze estimator") and the ``command`` that saves one."""
    p = Path(path)
    if not p.is_file():
        raise SimganError(f"{what} file not found: {p}")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
        raise SimganError(f"cannot read {what} {p}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise SimganError(f"{p} is not a simgan {what} (saved by `{command}`)")
    return payload
