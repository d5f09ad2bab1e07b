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
    return _save_figure(fig, path)


def save_animation(columns: Sequence[np.ndarray], labels: Sequence[str], frames: int, path: Path, *,
                   scale: int | None = None, fps: float = 10.0, pad: int = 2) -> Path:
    """An animated GIF: each of ``columns`` (N×H×W×C images, sequences of ``frames`` frames one
    after another) is a column, each sequence a row, all playing in step (slowed to ``fps``)."""
    cols = [_to_display(c) for c in columns]
    n_seq = min(len(c) for c in cols) // frames
    h, w = cols[0].shape[1:3]
    if scale is None:
        scale = max(1, min(3, 160 // max(h, w)))
    cw, ch, top = w * scale, h * scale, 14
    size = (len(cols) * (cw + pad) + pad, top + n_seq * (ch + pad) + pad)
    pictures = []
    for t in range(frames):
        canvas = Image.new("RGB", size, (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        for c, (images, label) in enumerate(zip(cols, labels)):
            x = pad + c * (cw + pad)
            draw.text((x + 2, 1), label, fill=(0, 0, 0))
            for r in range(n_seq):
                tile = Image.fromarray(images[r * frames + t]).resize((cw, ch), Image.NEAREST)
                canvas.paste(tile, (x, top + pad + r * (ch + pad)))
        pictures.append(canvas.convert("P", palette=Image.ADAPTIVE))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:], duration=int(1000 / fps), loop=0)
    tmp.replace(path)
    return path


def save_curves(curves: dict, path: Path, *, xlabel: str, ylabel: str, scale: float = 1.0) -> Path:
    """One line per entry of ``curves`` (name -> values at x = 0, 1, ...; NaN: no value)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, ys in curves.items():
        ax.plot(np.arange(len(ys)), np.asarray(ys, float) * scale, label=name, linewidth=1.0)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_yscale("log")
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save_figure(fig, path)


def _save_figure(fig, path: Path) -> Path:
    """Write a matplotlib figure to ``path`` by one rename (never half-written), and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path

