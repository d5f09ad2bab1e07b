"""The run directory: everything one training run writes, and how it is read back.

    RUN/config.yaml          the resolved configuration (preset + --config + flags)
    RUN/metrics.jsonl        one row per step: losses, D accuracies, mean |R(x)-x|, lr, images/s
    RUN/samples/             step_NNNNNNN.png grids (synthetic / refined / real) and loss_curves.png
    RUN/checkpoints/last.pt  the full training state, for --resume
    RUN/refiner.pt           the refiner's weights (running average if enabled), for refining
    RUN/train.log            messages and warnings

Files are replaced atomically (write a temporary file, fsync, rename), so a run killed at any
moment keeps its last good checkpoint readable.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import torch

from .config import SimGANConfig
from .datasets import atomic_write_bytes
from .errors import SimganError

CHECKPOINT_VERSION = 1
# Settings a resumed run may change; every other setting must match the run's config.yaml.
RESUMABLE_CHANGES = {
    ("train", "steps"), ("train", "device"), ("train", "precision"), ("train", "compile"),
    ("train", "log_every"), ("train", "sample_every"), ("train", "checkpoint_every"),
}


def atomic_torch_save(obj, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def config_differences(a: SimGANConfig, b: SimGANConfig) -> list[tuple[tuple[str, str], object, object]]:
    da, db = a.to_dict(), b.to_dict()
    out = []
    for section in da:
        if isinstance(da[section], dict):
            for key in da[section]:
                if da[section][key] != db[section].get(key):
                    out.append(((section, key), da[section][key], db[section].get(key)))
        elif da[section] != db[section]:
            out.append(((section, ""), da[section], db[section]))
    return out


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.metrics = self.path / "metrics.jsonl"
        self.samples = self.path / "samples"
        self.checkpoint = self.path / "checkpoints" / "last.pt"
        self.refiner = self.path / "refiner.pt"
        self.logfile = self.path / "train.log"
        self.created = False  # set when prepare() made the folder (not a resume)

    def is_run(self) -> bool:
        return self.config.is_file()

    def saved_config(self) -> SimGANConfig:
        import yaml
        try:
            return SimGANConfig.from_dict(yaml.safe_load(self.config.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise SimganError(f"cannot read {self.config}: {exc}") from None

    def prepare(self, cfg: SimGANConfig, *, resume: bool) -> dict | None:
        """Create the run, or check that an existing one can be resumed with ``cfg``.

        Returns the checkpoint to resume from (None for a fresh start)."""
        if self.path.exists():
            if not resume:
                raise SimganError(f"--out {self.path} already exists; pass --resume to continue that run or "
                                  f"choose a new folder")
            if not self.path.is_dir() or not self.is_run():
                raise SimganError(f"--out {self.path} exists but is not a simgan run (no config.yaml); "
                                  f"choose a new folder")
            saved = self.saved_config()
            if saved.preset != cfg.preset:
                raise SimganError(f"{self.path} is a run of the {saved.preset} preset, not {cfg.preset}")
            for (section, key), old, new in config_differences(saved, cfg):
                if (section, key) not in RESUMABLE_CHANGES:
                    raise SimganError(f"{self.path} was trained with {section}.{key} = {old!r}, not {new!r}; a "
                                      f"resumed run keeps its settings (only the step count, device and "
                                      f"precision may change)")
            cfg.save(self.config)
            if not self.checkpoint.exists():
                self.log("resume asked for but no checkpoint yet: starting from step 0")
                self.metrics.unlink(missing_ok=True)
                return None
            ckpt = self.load_checkpoint()
            self._truncate_metrics(ckpt["step"])
            self.log(f"resuming from step {ckpt['step']}")
            return ckpt
        self.path.mkdir(parents=True)
        self.created = True
        self.samples.mkdir()
        self.checkpoint.parent.mkdir()
        cfg.save(self.config)
        return None

    def load_checkpoint(self) -> dict:
        try:
            ckpt = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
            raise SimganError(f"cannot read checkpoint {self.checkpoint}: {exc}") from None
        if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
            raise SimganError(f"{self.checkpoint} is not a simgan checkpoint of this version")
        return ckpt

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric rows logged after the checkpoint (they will be written again)."""
        if not self.metrics.exists():
            return
        keep = [line for line in self.metrics.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        atomic_write_bytes(self.metrics, "".join(line + "\n" for line in keep).encode())

    def append_metrics(self, rows: list[dict]) -> None:
        with open(self.metrics, "a") as fh:
            for r in rows:
                fh.write(json.dumps({k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}) + "\n")

    def log(self, msg: str) -> None:
        with open(self.logfile, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

    def save_refiner(self, state_dict: dict, cfg: SimGANConfig, step: int) -> None:
        atomic_torch_save({"version": CHECKPOINT_VERSION, "config": cfg.to_dict(), "step": step,
                           "refiner": state_dict}, self.refiner)


def load_refiner(run: str | os.PathLike, device: torch.device):
    """The trained refiner of a run, in eval mode on ``device``, with its config and step."""
    from .refiner import Refiner

    rd = RunDir(Path(run))
    if not rd.path.is_dir():
        raise SimganError(f"run folder not found: {rd.path}")
    if not rd.refiner.is_file():
        raise SimganError(f"{rd.path} holds no trained refiner (refiner.pt); is it a simgan run that has "
                          f"reached its first checkpoint?")
    try:
        state = torch.load(rd.refiner, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise SimganError(f"cannot read {rd.refiner}: {exc}") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise SimganError(f"{rd.refiner} is not a simgan refiner of this version")
    cfg = SimGANConfig.from_dict(state["config"])
    model = Refiner(cfg.refiner, cfg.image.channels)
    try:
        model.load_state_dict(state["refiner"])
    except RuntimeError as exc:
        raise SimganError(f"{rd.refiner} does not match its config: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval(), cfg, state["step"]
