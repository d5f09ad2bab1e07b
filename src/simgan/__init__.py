"""simgan: Simulated+Unsupervised learning with SimGAN (Shrivastava et al., CVPR 2017).

The Python API (the CLI only wraps it)::

    import simgan
    cfg = simgan.resolve_config("eyes", overrides={"train": {"steps": 2000}})
    run = simgan.train(cfg, synthetic="synth/", real="real/", out="runs/eyes")        # Algorithm 1
    simgan.refine_dataset(run.run, input="synth/", out="refined/")                    # labels kept
    simgan.evaluate_gaze({"synthetic": "synth/", "refined": "refined/"}, test="real_test/", out="eval/gaze")
    simgan.evaluate_task({"synthetic": "synth/", "refined": "refined/"}, test="real_test/", label="KEY")

``train``, ``refine_dataset`` and the ``evaluate_*`` functions are imported on first use, so
``import simgan`` stays light (no torch import for reading a config).
"""

from .config import PRESETS, SimGANConfig, preset, resolve_config
from .errors import SimganError

_LAZY = {
    "train": ("training", "train"),
    "refine_dataset": ("pipelines.refine", "refine_dataset"),
    "refine_array": ("pipelines.refine", "refine_array"),
    "BatchRefiner": ("pipelines.refine", "BatchRefiner"),
    "evaluate_gaze": ("evaluation", "evaluate_gaze"),
    "evaluate_realism": ("evaluation", "evaluate_realism"),
    "evaluate_preservation": ("evaluation", "evaluate_preservation"),
    "evaluate_task": ("evaluation", "evaluate_task"),
}

__all__ = ["PRESETS", "SimGANConfig", "SimganError", "preset", "resolve_config", *_LAZY]
__version__ = "0.1.0"


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'simgan' has no attribute {name!r}")
