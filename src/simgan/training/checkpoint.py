"""Everything a run needs to continue exactly, saved and restored: both networks (and R's running
average), both optimisers and loss scalers, the history buffer, the samplers' and the global random
states, the health monitor, K_g and the step. Under ``torchrun`` each process's own state (its
buffer and samplers) is gathered to rank 0, which writes ``RUN/checkpoints/last.pt`` atomically,
then ``RUN/refiner.safetensors`` (the weights refining uses). The snapshot ensemble's refiners
(:mod:`.snapshots`) are kept here too."""

from __future__ import annotations

import json

from ..errors import SimganError
from ..runtime import rng_state, set_rng_state
from .distributed import barrier, gather_to_main
from .rundir import CHECKPOINT_VERSION, RunDir, atomic_torch_save
from .snapshots import save_snapshot, snapshot_steps


class Checkpointer:
    def __init__(self, run: RunDir, cfg):
        self.run, self.cfg = run, cfg
        self._snapshots: tuple[tuple, set[int]] = ((), set())  # (the schedule they were computed for, steps)

    @staticmethod
    def shared_state(t) -> dict:
        """What every process holds alike: the networks (and R's running average), the optimisers
        and the loss scalers."""
        return {"refiner": t.R.state_dict(), "refiner_ema": t.ema.model.state_dict() if t.ema is not None else None,
                "discriminator": t.D.state_dict(), "opt_refiner": t.opt_r.state_dict(),
                "opt_discriminator": t.opt_d.state_dict(),
                "scalers": [t.scaler_r.state_dict(), t.scaler_d.state_dict()]}

    @staticmethod
    def own_state(t) -> dict:
        """What each process holds for itself: its history buffer, samplers and random streams."""
        return {"buffer": t.buffer.state_dict() if t.buffer is not None else None,
                "syn_sampler": t.syn_sampler.state_dict(), "real_sampler": t.real_sampler.state_dict(),
                "rng": rng_state()}

    @staticmethod
    def load_shared(t, state: dict) -> None:
        t.R.load_state_dict(state["refiner"])
        t.D.load_state_dict(state["discriminator"])
        if t.ema is not None:
            t.ema.model.load_state_dict(state["refiner_ema"] if state["refiner_ema"] is not None else state["refiner"])
        t.opt_r.load_state_dict(state["opt_refiner"])
        t.opt_d.load_state_dict(state["opt_discriminator"])
        # A GradScaler only has state in fp16; resuming into or out of fp16 starts a fresh one.
        for scaler, s in zip((t.scaler_r, t.scaler_d), state["scalers"]):
            if scaler.is_enabled() and s:
                scaler.load_state_dict(s)

    @staticmethod
    def load_own(t, mine: dict) -> None:
        if t.buffer is not None and mine["buffer"] is not None:
            t.buffer.load_state_dict(mine["buffer"])
        t.syn_sampler.load_state_dict(mine["syn_sampler"])
        t.real_sampler.load_state_dict(mine["real_sampler"])
        set_rng_state(mine["rng"])

    def save(self, t) -> None:
        """Atomically replace the checkpoint and the refiner file with trainer ``t``'s state."""
        gathered = gather_to_main(self.own_state(t), t.dist)
        if t.dist.is_main:
            state = {
                "version": CHECKPOINT_VERSION, "config": t.cfg.to_dict(), "step": t.step, "kg": t.kg,
                "world_size": t.dist.world_size, **self.shared_state(t),
                "health": t.monitor.health.state_dict(), "ranks": gathered,
                "task": t.task.state_dict() if t.task is not None else None,
            }
            atomic_torch_save(state, self.run.checkpoint)
            self.run.save_refiner(t.inference_refiner().state_dict(), t.cfg, t.step)
        barrier(t.dist)

    def snapshot_if_due(self, t) -> None:
        """Keep the refiner of this step when the snapshot ensemble asks for it (rank 0)."""
        if t.dist.is_main and t.step in self._snapshot_steps():
            save_snapshot(self.run.path, t.inference_refiner().state_dict(), t.cfg, t.step)

    def _snapshot_steps(self) -> set[int]:
        """The snapshot steps of the schedule as it is now (a time budget rescales it before the
        first step), computed again only when it changes."""
        t = self.cfg.train
        key = (t.snapshots, t.snapshot_span, t.steps, t.refiner_pretrain, t.disc_pretrain)
        if self._snapshots[0] != key:
            self._snapshots = (key, set(snapshot_steps(t)))
        return self._snapshots[1]

    def restore(self, t, ckpt: dict) -> None:
        """Put checkpoint ``ckpt`` back into trainer ``t``."""
        if ckpt["world_size"] != t.dist.world_size:
            raise SimganError(f"{self.run.checkpoint} was written by {ckpt['world_size']} process(es); resume it "
                              f"with the same number (now {t.dist.world_size})")
        self.load_shared(t, ckpt)
        t.monitor.health.load_state_dict(ckpt["health"])
        t.step, t.kg = ckpt["step"], ckpt["kg"]
        if self.run.metrics.exists():  # the verdict judges the whole run, not only what follows this resume
            rows = [json.loads(line) for line in self.run.metrics.read_text().splitlines() if line.strip()]
            t.monitor.rows = [r for r in rows if r.get("phase") == "adversarial" and r.get("step", 0) <= t.step]
        self.load_own(t, ckpt["ranks"][t.dist.rank])
        if t.step > t.total_steps:
            raise SimganError(f"{self.run.path} is already at step {t.step}, past the {t.total_steps} "
                              f"steps asked for; raise --steps to train further")
