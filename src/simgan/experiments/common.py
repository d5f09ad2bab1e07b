"""What the demos share: a run's new output folder, its numbered and timed steps, and the SimGAN
config a demo trains (a preset of :mod:`simgan.presets` with the run's seed and device)."""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from pathlib import Path

from ..config import SimGANConfig, resolve_config
from ..errors import SimganError
from ..presets import merge_settings


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        raise SimganError(f"--seed must be in 0 .. 2**32 - 1, got {seed!r}")
    return seed


def check_new_out(out) -> Path:
    out = Path(out)
    if out.exists():
        raise SimganError(f"--out {out} already exists; choose a new folder")
    return out


def demo_config(preset: str, overrides: dict, *, seed: int, device: str, config_overrides: dict | None = None,
                **sections: dict) -> SimGANConfig:
    """The preset ``preset`` with a demo's ``overrides`` (not modified), the run's seed and device,
    any further ``sections`` (e.g. ``image={...}``), then a user's ``config_overrides`` (``simgan
    demo --set``: for measuring an option on the demo's domain) merged in."""
    merged = merge_settings(copy.deepcopy(overrides), {"train": {"seed": seed, "device": device}, **sections})
    cfg = resolve_config(preset, overrides=merged)
    return cfg.override(config_overrides).validate() if config_overrides else cfg


class DemoRun:
    """One demo run: its output folder (created here; it must be new), ``data/`` inside it, and
    numbered steps, each printed as a heading and timed (``with run.step("train", "2/6 ..."):``)."""

    def __init__(self, out: Path, echo):
        out.mkdir(parents=True)
        self.out, self.data, self.echo = out, out / "data", echo
        self.timings: dict[str, float] = {}
        self.t_all = time.perf_counter()

    @contextmanager
    def step(self, key: str, label: str):
        self.echo(f"\n== {label}")
        t = time.perf_counter()
        yield
        self.timings[key] = time.perf_counter() - t

    def finish(self) -> float:
        """Records and returns the whole run's minutes."""
        self.timings["total"] = time.perf_counter() - self.t_all
        return self.timings["total"] / 60
