"""Temporal consistency in R's training, for refining videos (the paper's second future work, §5).

A refiner trained on single images and applied frame by frame makes a sequence flicker: nothing
asks it to change two views of the same scene the same way. Two terms ask it, each an option
(``temporal`` in the config, off in every recipe):

* **the flow term** (``temporal.weight``, Lai et al., "Learning Blind Video Temporal
  Consistency", ECCV 2018, with the simulator's true flow instead of a flow network): for a frame
  ``t`` drawn in R's batch whose frame ``t - 1`` exists, R also refines frame ``t - 1`` with the
  same noise code, and its change to frame ``t`` must match its change to frame ``t - 1`` moved by
  the ground-truth flow, outside occlusions (:func:`simgan.models.losses.flow_consistency_loss`).
  The synthetic set must be a sequence set with ``flow.npy`` (:mod:`simgan.datasets.sequences`).
* **the shift term** (``temporal.shift``, Eilertsen et al., "Single-frame Regularization for
  Temporally Stable CNNs", CVPR 2019): R of the batch moved by a small random motion (sub-pixel
  shift, turn and zoom) must be R of the batch, moved the same way
  (:func:`simgan.models.losses.shift_consistency_loss`). It needs no sequences, so a user
  without flow can use it.

Both are weighed like one patch's realism loss, as task consistency is, and logged per round
(``r_flow``, ``r_shift``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..config import SimGANConfig
from ..datasets.sequences import open_sequences
from ..errors import SimganError
from ..models import losses


class FlowPairs:
    """For each image of the synthetic set: the index of the frame before it in its sequence
    (-1 for a first frame), and the flow and unoccluded pixels from that frame to it, on the
    training device."""

    def __init__(self, previous: np.ndarray, flow: torch.Tensor, valid: torch.Tensor):
        self.previous = torch.from_numpy(previous)
        self.flow, self.valid = flow, valid

    @classmethod
    def load(cls, dataset, device: torch.device, distributed: bool) -> "FlowPairs":
        if distributed:
            raise SimganError("temporal.weight (the flow term) trains on one process only for now: each process "
                              "would need whole sequences; run it without torchrun")
        seqs = open_sequences(dataset, need_flow=True)
        previous = np.full(len(seqs.dataset), -1, np.int64)
        for frames in seqs.sequences.values():
            previous[frames[1:]] = frames[:-1]
        valid = torch.from_numpy(np.asarray(seqs.occlusion) == 0)
        valid[torch.from_numpy(previous < 0)] = False
        if not valid.any():
            raise SimganError("temporal.weight: the synthetic set's occlusion.npy leaves no pixel where the flow holds")
        return cls(previous, torch.from_numpy(np.array(seqs.flow)).to(device), valid.to(device))

    def describe(self) -> str:
        n = int((self.previous >= 0).sum())
        return f"temporal consistency: the flow term on {n} frame pairs of the synthetic sequences"

    def loss(self, refiner, x_source, idx: torch.Tensor, x: torch.Tensor, refined: torch.Tensor,
             z: torch.Tensor | None) -> torch.Tensor:
        """The flow term on the images of the batch (``idx``, their pixels ``x`` and refinements
        ``refined`` under codes ``z``) that have a frame before them; NaN-free zero if none has."""
        prev = self.previous[idx.cpu()]
        sel = torch.nonzero(prev >= 0).flatten()
        if len(sel) == 0:
            return refined.float().sum() * 0.0
        x_prev = x_source.batch(prev[sel].to(idx.device))
        refined_prev, _ = refiner(x_prev, None if z is None else z[sel.to(z.device)])
        cur = idx[sel.to(idx.device)].to(self.flow.device)
        return losses.flow_consistency_loss(refined[sel], x[sel], refined_prev, x_prev, self.flow[cur], self.valid[cur])


def shift_term(refiner, x: torch.Tensor, refined: torch.Tensor, z: torch.Tensor | None, cfg: SimGANConfig,
               receptive_field: int) -> torch.Tensor:
    """The shift term for the batch ``x`` (refined as ``refined`` under codes ``z``): one random
    small motion per step (a sub-pixel shift of up to ``temporal.max_shift`` pixels, a turn of up
    to 2 degrees and a zoom of up to 3%, resampled bilinearly), drawn from torch's generator
    (saved with the checkpoint). Whole-pixel shifts alone would test nothing: R, a convolution
    stack without striding, follows them exactly away from the border."""
    h, w = x.shape[2:]
    shift, turn, zoom = (torch.rand(4) * 2 - 1).split([2, 1, 1])
    shift = shift * cfg.temporal.max_shift
    angle, scale = float(turn) * math.radians(2.0), 1.0 + 0.03 * float(zoom)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    cx, cy = xs - (w - 1) / 2, ys - (h - 1) / 2
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    flow = torch.stack([c * cx - s * cy - cx + float(shift[0]), s * cx + c * cy - cy + float(shift[1])], -1)
    flow = flow[None].expand(x.shape[0], h, w, 2).to(x.device)
    moved, _ = refiner(losses.warp(x, flow).to(x.dtype), z)
    reach = cfg.temporal.max_shift + 0.035 * max(h, w) + 1  # how far the motion carries a pixel, at most
    margin = int(min(math.ceil(reach) + receptive_field // 2, max(min(h, w) // 4, 1)))
    return losses.shift_consistency_loss(moved, losses.warp(refined, flow), margin)
