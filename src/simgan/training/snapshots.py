"""Snapshot ensemble of the refiner: R kept at several points of the end of training, and one
refinement per snapshot (Huang et al., "Snapshot Ensembles: Train 1, get M for free", ICLR 2017;
the paper's "several refined images per synthetic image", §3.1).

A refiner trained adversarially does not converge to one point: from round to round it wanders
between ways of being realistic (on the digits demo, background colours and stroke polarity), and
which one the last round lands on is chance (docs/results/digits.md). Refining each image once
with each of several snapshots gives the images all of those ways at once.

With ``train.snapshots = K > 1`` the run keeps ``K - 1`` earlier refiners evenly spaced over the
last ``train.snapshot_span`` of the adversarial steps, as ``RUN/snapshots/refiner_step_N.safetensors``
(self-contained refiner files, like ``simgan export``'s); the K-th is the run's final refiner.
``simgan refine --variants V`` refines variant ``v`` with snapshot ``v mod K``, newest first, so
variant 0 is always the final refiner and ``--variants 1`` is unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import TrainConfig

FOLDER = "snapshots"


def snapshot_steps(t: TrainConfig) -> list[int]:
    """The steps (counted like the run's, pre-training included) after which a snapshot is kept,
    newest first; the final step is not among them (it is ``refiner.safetensors``)."""
    if t.snapshots <= 1 or t.steps <= 0:
        return []
    start = t.refiner_pretrain + t.disc_pretrain
    span = t.snapshot_span * t.steps
    rounds = {t.steps - round(i * span / (t.snapshots - 1)) for i in range(1, t.snapshots)}
    return sorted((start + r for r in rounds if 0 < r < t.steps), reverse=True)


def snapshot_path(run: Path, step: int) -> Path:
    return Path(run) / FOLDER / f"refiner_step_{step:07d}.safetensors"


def save_snapshot(run: Path, state_dict: dict, cfg, step: int) -> None:
    """One snapshot: a self-contained refiner file (weights, config and step)."""
    from .rundir import write_refiner_file

    path = snapshot_path(run, step)
    path.parent.mkdir(exist_ok=True)
    write_refiner_file(path, state_dict, cfg, step)


def saved_snapshot_steps(run) -> list[int]:
    """The steps of the snapshots a run folder holds, newest first: whatever schedule wrote them
    (a run resumed with a longer ``--steps`` keeps the snapshots of its first schedule)."""
    folder = Path(run) / FOLDER
    steps = []
    for path in folder.glob("refiner_step_*.safetensors") if folder.is_dir() else []:
        try:
            steps.append(int(path.stem[len("refiner_step_"):]))
        except ValueError:
            continue
    return sorted(steps, reverse=True)


def load_snapshots(run, final: torch.nn.Module, device: torch.device, *, limit: int) -> list[torch.nn.Module]:
    """The refiners a refine cycles through, at most ``limit``: ``final`` first, then the run's
    saved snapshots, newest first. An exported refiner file has no snapshots."""
    import copy

    from .rundir import read_refiner_file

    models = [final]
    run = Path(run)
    if not run.is_dir():
        return models
    for step in saved_snapshot_steps(run)[:max(0, limit - 1)]:
        state, _ = read_refiner_file(snapshot_path(run, step))
        model = copy.deepcopy(final)
        model.load_state_dict(state)  # copied into final's dtype and memory layout
        models.append(model.to(device).eval())
    return models
