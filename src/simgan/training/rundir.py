"""The run directory: everything one training run writes, and how it is read back.

    RUN/config.yaml          the resolved configuration (preset + --config + flags)
    RUN/metrics.jsonl        one row per step: losses, D accuracies, mean |R(x)-x|, lr, images/s
    RUN/samples/             step_NNNNNNN.png grids (synthetic / refined / real) and loss_curves.png
    RUN/checkpoints/last.pt  the full training state, for --resume
    RUN/refiner.safetensors  the refiner's weights (running average if enabled), for refining
    RUN/refiner.json         its config and step (also in the .safetensors metadata)
    RUN/.simgan-lock         held while a process trains the run (pid and host inside)
    RUN/train.log            messages and warnings

Files are replaced atomically (write a temporary file, fsync, rename), so a run killed at any
moment keeps its last good checkpoint readable. Nothing is read back with pickle: the checkpoint
loads with ``torch.load(weights_only=True)`` (its non-tensor state is plain data) and the
refiner is a safetensors file; an older run's pickled ``refiner.pt`` needs ``--trust-pickle``.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import torch

from ..config import SimGANConfig, resolve_config
from ..files import atomic_write_bytes
from ..errors import SimganError

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
        self.refiner = self.path / "refiner.safetensors"
        self.refiner_info = self.path / "refiner.json"
        self.legacy_refiner = self.path / "refiner.pt"  # older simgan: a pickle, loaded only with --trust-pickle
        self.logfile = self.path / "train.log"
        self.created = False  # set when prepare() made the folder (not a resume)
        self.new_parents: list[Path] = []  # folders above it that prepare() made
        self.lock = None  # held from prepare() until release(): one process per run folder

    def is_run(self) -> bool:
        return self.config.is_file()

    def saved_config(self) -> SimGANConfig:
        import yaml
        try:
            return SimGANConfig.from_dict(yaml.safe_load(self.config.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise SimganError(f"cannot read {self.config}: {exc}") from None

    def prepare(self, cfg: SimGANConfig, *, resume: bool, trust_pickle: bool = False, echo=None) -> dict | None:
        """Create the run, or check that an existing one can be resumed with ``cfg``; either way
        the folder is locked (:class:`simgan.locks.Lock`) until :meth:`release`.

        Returns the checkpoint to resume from (None for a fresh start)."""
        from ..locks import Lock

        exists_msg = (f"--out {self.path} already exists; pass --resume to continue that run or "
                      f"choose a new folder")
        if self.path.exists() or self.path.is_symlink():
            if not resume:
                raise SimganError(exists_msg)
            if not self.path.is_dir() or not self.is_run():
                raise SimganError(f"--out {self.path} exists but is not a simgan run (no config.yaml); "
                                  f"choose a new folder")
            self.lock = Lock(self.path, echo=echo).acquire()
            try:
                return self._resume(cfg, trust_pickle, echo)
            except BaseException:
                self.release()
                raise
        self.new_parents = [p for p in self.path.parents if not p.exists()]  # removed again with a failed run
        try:
            self.path.mkdir(parents=True)
        except FileExistsError:
            raise SimganError(exists_msg) from None
        except OSError as exc:
            raise SimganError(f"cannot create --out {self.path}: {exc.strerror or exc}") from None
        self.created = True
        self.lock = Lock(self.path, echo=echo).acquire()
        self.samples.mkdir()
        self.checkpoint.parent.mkdir()
        cfg.save(self.config)
        return None

    def open_for(self, info, cfg: SimGANConfig, *, resume: bool, trust_pickle: bool = False, echo=None) -> dict | None:
        """:meth:`prepare` on rank 0 (which writes the run); every process of a ``torchrun`` launch
        then gets the checkpoint to resume from (None for a fresh start)."""
        from .distributed import barrier

        checkpoint = self.prepare(cfg, resume=resume, trust_pickle=trust_pickle, echo=echo) if info.is_main else None
        if info.enabled:
            barrier(info)
            if not info.is_main and self.checkpoint.exists():
                checkpoint = self.load_checkpoint(trust_pickle=trust_pickle)
        return checkpoint

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def remove(self) -> None:
        """Delete a run folder this object created (a run that failed before it started)."""
        if self.created:
            import shutil
            shutil.rmtree(self.path, ignore_errors=True)
            for parent in self.new_parents:  # deepest first; only folders this run made, and only if empty
                try:
                    parent.rmdir()
                except OSError:
                    break
            self.created = False
        self.release()

    def _resume(self, cfg: SimGANConfig, trust_pickle: bool, echo=None) -> dict | None:
        saved = self.saved_config()
        if saved.preset != cfg.preset:
            raise SimganError(f"{self.path} is a run of the {saved.preset} preset, not {cfg.preset}")
        if cfg.train.minutes is not None and cfg.train.minutes == saved.train.minutes and self.checkpoint.exists():
            from .budget import SCHEDULE  # a run fitted to its time budget goes on with that schedule
            for name in SCHEDULE:
                setattr(cfg.train, name, getattr(saved.train, name))
        check_resumable(self.path, saved, cfg)
        ckpt = None
        if self.checkpoint.exists():
            ckpt = self.load_checkpoint(trust_pickle=trust_pickle)
            self._truncate_metrics(ckpt["step"])
        cfg.save(self.config)
        if ckpt is None:
            (echo or self.log)(f"{self.path} has no checkpoint yet: --resume starts it over from step 0")
            self.metrics.unlink(missing_ok=True)
            return None
        self.log(f"resuming from step {ckpt['step']}")
        return ckpt

    def load_checkpoint(self, *, trust_pickle: bool = False) -> dict:
        ckpt = safe_torch_load(self.checkpoint, trust_pickle=trust_pickle, what="checkpoint")
        if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
            raise SimganError(f"{self.checkpoint} is not a simgan checkpoint of this version")
        return ckpt

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric rows logged after the checkpoint (they will be written again)."""
        if not self.metrics.exists():
            return
        keep = []
        for line in self.metrics.read_text(errors="replace").splitlines():
            try:
                if line.strip() and json.loads(line)["step"] <= step:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line of a killed run: written again from the checkpoint
        atomic_write_bytes(self.metrics, "".join(line + "\n" for line in keep).encode())

    def append_metrics(self, rows: list[dict]) -> None:
        with open(self.metrics, "a") as fh:
            for r in rows:
                fh.write(json.dumps({k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}) + "\n")

    def log(self, msg: str) -> None:
        with open(self.logfile, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

    def save_refiner(self, state_dict: dict, cfg: SimGANConfig, step: int) -> None:
        """``refiner.safetensors`` (the weights, with the config in its metadata) and
        ``refiner.json`` (the same config and step as plain JSON): nothing that loading could
        execute."""
        info = write_refiner_file(self.refiner, state_dict, cfg, step)
        atomic_write_bytes(self.refiner_info, (json.dumps(info, indent=1) + "\n").encode())


def refiner_metadata(info: dict) -> dict:
    return {"format": "simgan-refiner", "simgan": json.dumps(info)}


def write_refiner_file(path: Path, state_dict: dict, cfg: SimGANConfig, step: int) -> dict:
    """A self-contained refiner file, written atomically: the weights as safetensors with the
    config and step in its metadata (what :func:`read_refiner_file` reads back). Returns that info."""
    from safetensors.torch import save as st_save

    info = {"version": CHECKPOINT_VERSION, "step": step, "config": cfg.to_dict()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_write_bytes(path, st_save(tensors, metadata=refiner_metadata(info)))
    return info


def check_resumable(path: Path, saved: SimGANConfig, cfg: SimGANConfig) -> None:
    """Refuse a change of any setting a resumed run must keep, naming it."""
    bad = [(f"{section}.{key}" if key else section, old, new)
           for (section, key), old, new in config_differences(saved, cfg)
           if (section, key) not in RESUMABLE_CHANGES]
    if bad:
        listed = "; ".join(f"{name} = {old!r}, not {new!r}" for name, old, new in bad)
        raise SimganError(f"{path} was trained with {listed}; a resumed run keeps its settings (only "
                          f"{', '.join(f'{s}.{k}' for s, k in sorted(RESUMABLE_CHANGES))} may change)")


TRUST_HINT = ("it is a pickle file, which can run arbitrary code when loaded; if you trust where it came from, "
              "pass --trust-pickle")


def safe_torch_load(path: Path, *, trust_pickle: bool = False, what: str = "file"):
    """``torch.load`` with ``weights_only=True`` (tensors and plain data only); a file that needs
    more is refused unless ``trust_pickle``, and the error says so."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        if not trust_pickle and "weights_only" in str(exc):
            raise SimganError(f"{what} {path} holds more than tensors and plain data: {TRUST_HINT}") from None
        raise SimganError(f"cannot read {what} {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SimganError(f"cannot read {what} {path}: {first}") from None


def load_refiner(run: str | os.PathLike, device: torch.device, *, trust_pickle: bool = False):
    """The trained refiner of a run (or of an exported ``.safetensors`` file), in eval mode on
    ``device``, with its config and step.

    Reads ``RUN/refiner.safetensors`` and ``RUN/refiner.json``. A run of an older simgan that has
    only the pickled ``RUN/refiner.pt`` is loaded only with ``trust_pickle``."""
    from ..models.refiner import Refiner

    path = Path(run)
    if path.is_file() and path.suffix == ".safetensors":
        state, info = read_refiner_file(path)
        where = path
    else:
        rd = RunDir(path)
        if not rd.path.is_dir():
            raise SimganError(f"run folder not found: {rd.path}")
        if rd.refiner.is_file():
            state, info = read_refiner_file(rd.refiner, rd.refiner_info if rd.refiner_info.is_file() else None)
            where = rd.refiner
        elif rd.legacy_refiner.is_file():
            if not trust_pickle:
                raise SimganError(f"{rd.path} holds only refiner.pt, written by an older simgan: {TRUST_HINT} "
                                  f"(then `simgan export` makes a safe refiner.safetensors of it)")
            old = safe_torch_load(rd.legacy_refiner, trust_pickle=True, what="refiner")
            if not isinstance(old, dict) or old.get("version") != CHECKPOINT_VERSION:
                raise SimganError(f"{rd.legacy_refiner} is not a simgan refiner of this version")
            state, info, where = old["refiner"], old, rd.legacy_refiner
        else:
            raise SimganError(f"{rd.path} holds no trained refiner (refiner.safetensors); is it a simgan run that "
                              f"has reached its first checkpoint?")
    try:
        cfg = SimGANConfig.from_dict(info["config"])
        step = int(info["step"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SimganError(f"{where}: its config is not a simgan config ({exc})") from None
    if not cfg.image.channels:
        raise SimganError(f"{where}: its config does not give the image shape")
    model = Refiner(cfg.refiner, cfg.image.channels)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise SimganError(f"{where} does not match its config: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval(), cfg, step


def read_refiner_file(path: Path, info_path: Path | None = None) -> tuple[dict, dict]:
    """Weights and info (``version``, ``step``, ``config``) of a ``.safetensors`` refiner; the
    info comes from ``info_path`` (a run's ``refiner.json``) when given, else from the file's
    metadata (an exported file)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SimganError(f"cannot read refiner {path}: not a readable safetensors file ({first})") from None
    try:
        if info_path is not None:
            info = json.loads(info_path.read_text())
        else:
            info = json.loads(meta.get("simgan", "null"))
    except (OSError, ValueError) as exc:
        raise SimganError(f"cannot read the config of refiner {path}: {exc}") from None
    if not isinstance(info, dict) or info.get("version") != CHECKPOINT_VERSION:
        raise SimganError(f"{path} is not a simgan refiner of this version (no simgan config "
                          f"{'in ' + info_path.name if info_path else 'in its metadata'})")
    return state, info


def export_refiner(run: str | os.PathLike, out: str | os.PathLike, *, trust_pickle: bool = False) -> Path:
    """Write a run's refiner as one self-contained ``.safetensors`` file (its config and step in
    the metadata) for sharing; ``simgan refine --run FILE.safetensors`` reads it back."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise SimganError(f"--out {out}: the file name must end in .safetensors")
    if out.exists() or out.is_symlink():
        raise SimganError(f"--out {out} already exists; choose a new file name")
    if not out.parent.is_dir():
        raise SimganError(f"--out {out}: folder {out.parent} does not exist")
    model, cfg, step = load_refiner(run, torch.device("cpu"), trust_pickle=trust_pickle)
    write_refiner_file(out, model.state_dict(), cfg, step)
    return out


def resolve_train_config(out, *, preset_name: str | None = None, config_file=None, overrides: dict | None = None,
                         resume: bool = False) -> SimGANConfig:
    """The configuration a ``simgan train`` call runs with.

    A fresh run: preset, then ``--config`` file, then flags. A resumed run: the run's own
    ``config.yaml`` with the flags given now on top (the trainer then checks that only the
    settings in :data:`RESUMABLE_CHANGES` changed: the run length, device, precision, compilation
    and the logging, sampling and checkpoint intervals)."""
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
