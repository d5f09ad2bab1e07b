"""Sequence sets: datasets whose images are the frames of sequences (the paper's second future
work, §5: refining videos), and the ground-truth motion between frames.

Every image has two labels, ``sequence`` (its number) and ``frame`` (0 .. T-1), and a sequence's
frames follow each other in the set's order. Beside ``labels.jsonl`` the folder may hold, in the
images' order:

* ``flow.npy``: ``N x H x W x 2`` float32, the *backward* flow: the pixel ``(x, y)`` of frame ``t``
  shows what frame ``t - 1`` showed at ``(x + u, y + v)`` (:func:`warp` of frame ``t - 1`` by it
  gives frame ``t``); zeros in a sequence's first frame;
* ``occlusion.npy``: ``N x H x W`` uint8, 1 where the flow does not hold (what was hidden in frame
  ``t - 1``, what moves otherwise than the flow says, and all of a sequence's first frame).

Both are plain ``.npy`` files (``numpy.load``). :func:`open_sequences` checks a set before a
measure relies on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SimganError

FLOW_FILE = "flow.npy"
OCCLUSION_FILE = "occlusion.npy"


def warp(previous: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``previous`` (``n x H x W`` or ``n x H x W x C``) sampled bilinearly at ``(x + u, y + v)``
    for every pixel ``(x, y)``, ``flow`` ``n x H x W x 2`` holding ``(u, v)``; positions outside
    the image take the nearest border pixel."""
    a = np.asarray(previous, np.float64)
    squeeze = a.ndim == 3
    if squeeze:
        a = a[..., None]
    n, H, W, _ = a.shape
    if flow.shape != (n, H, W, 2):
        raise SimganError(f"flow of shape {flow.shape} does not fit frames of shape {a.shape[:3]} (need N x H x W x 2)")
    x = np.clip(np.arange(W)[None, None, :] + flow[..., 0], 0, W - 1)
    y = np.clip(np.arange(H)[None, :, None] + flow[..., 1], 0, H - 1)
    x0 = np.clip(np.floor(x).astype(np.int64), 0, max(W - 2, 0))
    y0 = np.clip(np.floor(y).astype(np.int64), 0, max(H - 2, 0))
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    i = np.arange(n)[:, None, None]
    top = a[i, y0, x0] * (1 - fx) + a[i, y0, x1] * fx
    bottom = a[i, y1, x0] * (1 - fx) + a[i, y1, x1] * fx
    out = top * (1 - fy) + bottom * fy
    return out[..., 0] if squeeze else out


@dataclass
class SequenceSet:
    """A dataset of sequences: the dataset, each sequence's frame indices in frame order, and the
    ground-truth flow and occlusion when the folder holds them (``None`` otherwise)."""

    dataset: object
    sequences: dict[int, np.ndarray]
    flow: np.ndarray | None
    occlusion: np.ndarray | None

    @property
    def frames(self) -> int:
        return len(next(iter(self.sequences.values())))


def open_sequences(path, *, need_flow: bool = False) -> SequenceSet:
    """Open a sequence set (a folder, or a dataset already open) and check it (one line naming the problem otherwise): every image has
    integer ``sequence`` and ``frame`` labels; each sequence has frames 0 .. T-1 exactly once, in
    order and next to each other; every sequence has the same T; ``flow.npy`` and
    ``occlusion.npy``, when present (required with ``need_flow``), have one row per image of the
    images' size."""
    from ..datasets import open_dataset

    if isinstance(path, (str, os.PathLike)):
        ds = open_dataset(path)
    else:
        ds, path = path, getattr(path, "root", None)
        if path is None:
            raise SimganError("a sequence set must be a folder (its flow.npy lies beside its labels.jsonl)")
    n = len(ds)
    seq = np.empty(n, np.int64)
    frame = np.empty(n, np.int64)
    for i in range(n):
        lab = ds.labels(i)
        s, f = lab.get("sequence"), lab.get("frame")
        if not (isinstance(s, int) and isinstance(f, int)) or isinstance(s, bool) or isinstance(f, bool):
            raise SimganError(f"{path}: {ds.describe(i)} has no integer 'sequence' and 'frame' labels; a sequence "
                              f"set needs both (simgan simulate eyes --sequences N --frames T)")
        seq[i], frame[i] = s, f
    sequences: dict[int, np.ndarray] = {}
    starts = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])
    for a, b in zip(starts, np.r_[starts[1:], n]):
        s = int(seq[a])
        if s in sequences:
            raise SimganError(f"{path}: the frames of sequence {s} are not next to each other ({ds.describe(a)})")
        got = frame[a:b]
        if not np.array_equal(got, np.arange(b - a)):
            seen, dup = set(), None
            for f in got.tolist():
                if f in seen:
                    dup = f
                    break
                seen.add(f)
            what = (f"frame {dup} twice" if dup is not None else
                    f"frame {next(f for f in range(b - a) if f not in seen)} missing" if len(seen) < b - a or max(seen) >= b - a
                    else "frames out of order")
            raise SimganError(f"{path}: sequence {s} has {what} (it needs frames 0 .. T-1 once each, in order)")
        sequences[s] = np.arange(a, b)
    lengths = {len(v) for v in sequences.values()}
    if len(lengths) > 1:
        raise SimganError(f"{path}: sequences of different lengths ({sorted(lengths)[:3]}); all need the same "
                          f"number of frames")
    spec = ds.spec if hasattr(ds, "spec") else None
    shape = (n, spec.height, spec.width) if spec is not None else None
    flow = occlusion = None
    root = Path(path)
    if (root / FLOW_FILE).exists() or need_flow:
        flow = _load(root / FLOW_FILE, shape + (2,) if shape else None, np.float32, path)
        occlusion = _load(root / OCCLUSION_FILE, shape, np.uint8, path)
        if shape is None and (flow.shape[:3] != occlusion.shape or flow.shape[0] != n):
            raise SimganError(f"{root / FLOW_FILE}: shape {flow.shape} does not fit {n} frames")
    return SequenceSet(ds, sequences, flow, occlusion)


def _load(file: Path, shape, dtype, path) -> np.ndarray:
    if not file.exists():
        raise SimganError(f"{path}: no {file.name}; the flicker measure needs the simulator's flow "
                          f"(simgan simulate eyes --sequences N --frames T writes it)")
    try:
        a = np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SimganError(f"{file}: not a readable .npy array ({exc})") from None
    if a.dtype != dtype or (shape is not None and a.shape != shape):
        raise SimganError(f"{file}: {a.dtype} {a.shape}, expected {np.dtype(dtype)} {shape}")
    return a
