"""How long a run takes on this device, and a schedule that fits a time budget (``train.minutes``).

Algorithm 1's length is counted in steps, but a user has minutes. Before training starts the
trainer times a few steps of each phase on the real networks and data (:func:`measure_step_costs`,
which puts every bit of state back afterwards, so the run that follows is exactly the run without
the measurement). From those costs :func:`plan_lines` says what the run will do and about how long
it will take, and :func:`fit_to_budget` scales the whole schedule to a budget: pre-training, the
adversarial rounds, the snapshot span (a fraction of the rounds, so it follows them) and the
horizon of R's running average, rather than stopping in the middle of it. The first checkpoint is
always due within about a minute of work (:func:`checkpoint_interval`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch

from .checkpoint import Checkpointer
from .distributed import all_max

# what a time budget scales, and what a run fitted to one keeps when it resumes
SCHEDULE = ("refiner_pretrain", "disc_pretrain", "steps", "ema_decay", "sample_every", "checkpoint_every")
# share of a budget kept for the work between steps (sample grids, checkpoints), besides the
# end-of-run measures of the refined images (:meth:`StepCosts.closing`)
RESERVE = 0.15
CHECKPOINT_SECONDS = 60.0  # the longest a run works before its first checkpoint


@dataclass
class StepCosts:
    """Seconds per step of each phase on this device (an adversarial round is K_g R steps and
    K_d D steps)."""

    refiner_step: float
    disc_step: float
    kg: int
    kd: int

    @property
    def round(self) -> float:
        return self.kg * self.refiner_step + self.kd * self.disc_step

    def closing(self, t) -> float:
        """Seconds for the end of a run: R refines 512 images for the frame and looks measures (at
        most half an R step per batch) and the last grid, checkpoint and refiner file."""
        return 512 / t.batch_size * self.refiner_step / 2 + 2.0

    def seconds(self, t, start: int = 0) -> float:
        """Seconds for the steps of schedule ``t`` from global step ``start`` on."""
        phases = ((t.refiner_pretrain, self.refiner_step), (t.disc_pretrain, self.disc_step), (t.steps, self.round))
        total, begin = 0.0, 0
        for n, cost in phases:
            total += max(0, begin + n - max(start, begin)) * cost
            begin += n
        return total


def _snapshot(trainer) -> dict:
    """Every piece of training state a checkpoint keeps, copied (:class:`~.checkpoint.Checkpointer`)."""
    return copy.deepcopy({"shared": Checkpointer.shared_state(trainer), "own": Checkpointer.own_state(trainer)})


def _restore(trainer, state: dict) -> None:
    Checkpointer.load_shared(trainer, state["shared"])
    Checkpointer.load_own(trainer, state["own"])


def _timed(fn, device, repeats: int) -> float:
    fn()  # the first call pays for allocation and kernel selection
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats


def measure_step_costs(trainer, repeats: int = 2) -> StepCosts:
    """Time R's adversarial step and D's step on ``trainer``'s networks and data, then put every
    piece of training state back (weights, optimisers, history buffer, samplers, random streams).
    Under ``torchrun`` every process measures and the slowest one's costs are kept."""
    state = _snapshot(trainer)
    try:
        r = _timed(lambda: trainer.refiner_step(adversarial=True), trainer.device, repeats)
        d = _timed(trainer.discriminator_step, trainer.device, repeats)
    finally:
        _restore(trainer, state)
    r, d = all_max([r, d], trainer.dist, trainer.device)
    t = trainer.cfg.train
    return StepCosts(refiner_step=r, disc_step=d, kg=trainer.kg, kd=t.kd)


def checkpoint_interval(t, costs: StepCosts) -> int:
    """``train.checkpoint_every``, shortened so that a checkpoint is due within about
    :data:`CHECKPOINT_SECONDS` of work in the slowest phase."""
    slowest = max(costs.round if t.steps else 0.0, costs.disc_step, costs.refiner_step, 1e-9)
    return max(1, min(t.checkpoint_every, int(CHECKPOINT_SECONDS / slowest)))


def fit_to_budget(t, costs: StepCosts, seconds: float) -> float:
    """Scale schedule ``t`` (a :class:`~simgan.config.TrainConfig`, changed in place) so that its
    steps take about ``seconds`` on this device; returns the scale (1.0: it already fits).

    Every phase shrinks by the same factor, the running average of R keeps the same horizon
    relative to the run, and sample grids stay as frequent relative to the run (up to 5 in all).
    Checkpoints follow the clock instead (:func:`checkpoint_interval`)."""
    full = costs.seconds(t)
    scale = min(1.0, max(seconds, 0.0) / full) if full > 0 else 1.0
    if scale >= 1.0:
        return 1.0
    t.steps = max(1, math.floor(t.steps * scale))
    for name in ("refiner_pretrain", "disc_pretrain"):
        n = getattr(t, name)
        setattr(t, name, max(1, round(n * scale)) if n else 0)
    if t.ema_decay > 0:  # horizon 1 / (1 - decay) R updates, scaled with the run
        t.ema_decay = max(0.5, 1.0 - (1.0 - t.ema_decay) / scale)
    total = t.refiner_pretrain + t.disc_pretrain + t.steps  # as many grids as before, up to 5
    t.sample_every = min(t.sample_every, max(1, math.ceil(total / 5), math.floor(t.sample_every * scale)))
    return scale


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def plan_lines(t, costs: StepCosts, device, *, start: int = 0, scale: float | None = None,
               budget_s: float | None = None) -> list[str]:
    """What the run will do from step ``start`` and about how long it will take, in words."""
    phases = []
    if t.refiner_pretrain:
        phases.append(_count(t.refiner_pretrain, "R pre-training step"))
    if t.disc_pretrain:
        phases.append(_count(t.disc_pretrain, "D pre-training step"))
    phases.append(f"{_count(t.steps, 'round')} of {costs.kg} R and {t.kd} D update(s)")
    where = "this CPU" if device.type == "cpu" else str(device)
    left = costs.seconds(t, start)
    lines = [f"plan: {', then '.join(phases)}; about {_minutes(left)} on {where}"
             + (f" from step {start}" if start else "")
             + f" (measured: {costs.round:.3g} s a round, {costs.disc_step:.3g} s a D step)"]
    if scale is not None and scale < 1.0:
        share = f"{scale:.2%}" if scale >= 1e-4 else "the shortest schedule, less than 0.01%"
        lines.append(f"--minutes: the schedule is cut to {share} of its length to fit the time budget")
        if budget_s is not None and t.steps <= 1 and left > budget_s:
            lines.append(f"--minutes: even the shortest schedule takes longer than the budget; "
                         f"give more minutes or a preset with fewer updates per round (now K_g {costs.kg})")
    elif scale is not None:
        lines.append("--minutes: the schedule fits the time budget as it is")
    elif left > 1800 and not start:
        lines.append("for a shorter run, --minutes M fits the whole schedule to M minutes")
    return lines
