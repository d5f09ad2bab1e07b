"""TensorBoard view of a run, beside ``RUN/metrics.jsonl`` (which stays the source of truth).

Writes to ``RUN/tb/``: every metric of every logged row as a scalar (``loss/d``, ``accuracy/d_real``,
...; the step is the row's global step), each sample grid (synthetic / refined / real, as in
Figure 5) as an image, and the resolved configuration as text. ``tensorboard --logdir RUN``
then shows the run. A resumed run purges the events written after its checkpoint's step, so the
curves match ``metrics.jsonl`` exactly.

On by default when the ``tensorboard`` package is installed (``pip install simgan[tensorboard]``);
``simgan train --no-tensorboard`` turns it off, ``--tensorboard`` insists on it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import SimganError

# metrics.jsonl key -> TensorBoard tag (grouped so that related curves share a panel)
TAGS = {
    "d_loss": "loss/d", "r_loss_real": "loss/r_realism", "r_loss_reg": "loss/r_self_regularisation",
    "d_acc_real": "accuracy/d_real", "d_acc_refined": "accuracy/d_refined",
    "mean_abs_diff": "refinement/mean_abs_change", "kg": "schedule/kg", "lr": "schedule/lr",
    "images_per_s": "speed/images_per_s", "r_diversity": "loss/r_diversity", "r_task": "loss/r_task",
    "r_flow": "loss/r_flow", "r_shift": "loss/r_shift",
}


def available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def wanted(setting: bool | None) -> bool:
    """``None``: on when the package is installed. ``True`` without the package is an error."""
    if setting is None:
        return available()
    if setting and not available():
        raise SimganError("--tensorboard needs the tensorboard package: pip install 'simgan[tensorboard]'")
    return bool(setting)


class TensorBoardLog:
    """One run's event file in ``RUN/tb/`` (rank 0 only)."""

    def __init__(self, run_path: Path, *, start_step: int = 0):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(str(Path(run_path) / "tb"), purge_step=start_step or None)

    def config(self, yaml_text: str) -> None:
        # Markdown code block: TensorBoard's text panel keeps the YAML's indentation.
        self.writer.add_text("config", "```\n" + yaml_text + "\n```", 0)

    def rows(self, rows: list[dict]) -> None:
        for r in rows:
            for key, tag in TAGS.items():
                v = r.get(key)
                if isinstance(v, (int, float)) and np.isfinite(v):
                    self.writer.add_scalar(tag, v, r["step"])
        self.writer.flush()

    def grid(self, png: Path, step: int) -> None:
        from PIL import Image
        with Image.open(png) as im:
            image = np.asarray(im.convert("RGB"))
        self.writer.add_image("samples", image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
