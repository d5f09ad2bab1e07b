"""simgan: Simulated+Unsupervised learning with SimGAN (Shrivastava et al., CVPR 2017).

The Python API (the CLI only wraps it)::

    import simgan
    cfg = simgan.resolve_config("eyes", overrides={"train": {"steps": 2000}})
    run = simgan.train(cfg, synthetic="synth/", real="real/", out="runs/eyes")
    simgan.refine_dataset(run="runs/eyes", input="synth/", out="refined/")
"""

from .config import PRESETS, SimGANConfig, preset, resolve_config
from .errors import SimganError

__all__ = ["PRESETS", "SimGANConfig", "SimganError", "preset", "resolve_config"]
__version__ = "0.1.0"
