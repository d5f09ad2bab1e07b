"""Pictures a run writes: the sample grid (synthetic / refined / real rows, as in Figure 5) and
the loss curves (the authors' blog, Figure 7). The authors stop training by looking at samples,
not at losses, so both are written as training goes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw


def _to_display(images: np.ndarray) -> np.ndarray:
    """N×H×W×C uint8/uint16 -> N×H×W×3 uint8 for display."""
    if images.dtype == np.uint16:
        images = (images.astype(np.float32) / 257.0).round().astype(np.uint8)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images


def save_grid(rows: Sequence[np.ndarray], labels: Sequence[str], path: Path, *, scale: int | None = None,
              pad: int = 2, label_width: int = 72) -> Path:
    """One row per array of N×H×W×C images, upscaled without smoothing, with a label per row."""
    rows = [_to_display(r) for r in rows]
    n = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    if scale is None:
        scale = max(1, min(4, 192 // max(h, w)))
    cw, ch = w * scale, h * scale
    canvas = Image.new("RGB", (label_width + n * (cw + pad) + pad, len(rows) * (ch + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (images, label) in enumerate(zip(rows, labels)):
        y = pad + r * (ch + pad)
        draw.text((4, y + ch // 2 - 6), label, fill=(0, 0, 0))
        for c, img in enumerate(images):
            tile = Image.fromarray(img).resize((cw, ch), Image.NEAREST)
            canvas.paste(tile, (label_width + pad + c * (cw + pad), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    canvas.save(tmp, format="PNG")
    tmp.replace(path)
    return path


CURVES = [
    ("D loss (Eq. 2)", ["d_loss"]),
    ("D accuracy", ["d_acc_real", "d_acc_refined"]),
    ("R realism loss (Eq. 3)", ["r_loss_real"]),
    ("R self-regularisation", ["r_loss_reg"]),
    ("mean |R(x) - x|", ["mean_abs_diff"]),
]


def save_loss_curves(metrics_path: Path, path: Path) -> Path | None:
    """Plot the metrics log (``metrics.jsonl``) against the training step."""
    if not metrics_path.exists():
        return None
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    if not rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2))
    for ax, (title, keys) in zip(axes, CURVES):
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=key, linewidth=0.9)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if len(keys) > 1 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    # Mark where the phases of Algorithm 1 begin.
    starts = {}
    for r in rows:
        starts.setdefault(r.get("phase"), r["step"])
    for ax in axes:
        for phase, step in starts.items():
            if phase != "refiner-pretrain":
                ax.axvline(step, color="gray", linestyle=":", linewidth=0.8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path
