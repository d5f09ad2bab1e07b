"""The experiments end to end: the demos (eyes §3.1, digits, hands §3.2), the ablation of §3.1
and the speed benchmark. Each builds on the public API only.

:func:`run_demo` is what ``simgan demo NAME`` calls; each demo's module is imported only when run.
"""

from __future__ import annotations

import time

from ..errors import SimganError

DEMOS = ("eyes", "digits", "hands", "video")


def run_demo(name: str = "eyes", out=None, *, quick: bool = False, full: bool = False, device: str = "auto",
             seed: int = 0, echo=print, config_overrides: dict | None = None) -> dict:
    """Run demo ``name`` into the new folder ``out`` (default ``simgan-demo[-NAME]-DATE-TIME``).

    ``quick``: small data and few steps; ``full`` (hands only): the paper's 224x224 settings;
    ``config_overrides`` (nested dict, ``simgan demo --set``) go over the demo's recipe.
    Returns the demo's result (its folder, report and figures)."""
    if name not in DEMOS:
        raise SimganError(f"unknown demo {name!r}; choose one of {', '.join(DEMOS)}")
    if full and name != "hands":
        raise SimganError("--full is for `simgan demo hands` (the paper's 224x224 settings)")
    if quick and full:
        raise SimganError("--quick and --full contradict each other; give one")
    if seed < 0:
        raise SimganError(f"--seed must be >= 0, got {seed}")
    out = out or f"simgan-demo{'' if name == 'eyes' else '-' + name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if name == "digits":
        from .demo_digits import run_digits_demo
        return run_digits_demo(out, quick=quick, device=device, seed=seed, echo=echo,
                               config_overrides=config_overrides)
    if name == "video":
        from .demo_video import run_video_demo
        return run_video_demo(out, quick=quick, device=device, seed=seed, echo=echo, config_overrides=config_overrides)
    if name == "hands":
        from .demo_hands import run_hands_demo
        return run_hands_demo(out, mode="quick" if quick else "full" if full else "default", device=device,
                              seed=seed, echo=echo, config_overrides=config_overrides)
    from .demo_eyes import run_demo as run_eyes_demo
    return run_eyes_demo(out, quick=quick, device=device, seed=seed, echo=echo, config_overrides=config_overrides)
