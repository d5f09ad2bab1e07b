"""Pixel values in the models: ``[-1, 1]``, converted exactly to and from 8- and 16-bit files.

``x -> x * 2 / M - 1`` and back with ``round((y + 1) * M / 2)``, ``M = 2**bits - 1``: the round
trip of every 8-bit and 16-bit value is exact in float32 (tested).
"""

from __future__ import annotations

import numpy as np
import torch


def to_model(batch: torch.Tensor | np.ndarray, max_value: int, *, device=None,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``N x H x W x C`` integer pixels -> ``N x C x H x W`` floats in [-1, 1].

    The result is channels-last in memory (the layout convolutions run fastest in on CPU).
    """
    if isinstance(batch, np.ndarray):
        if batch.dtype == np.uint16:
            batch = batch.astype(np.int32)
        batch = torch.from_numpy(np.ascontiguousarray(batch))
    if device is not None:
        batch = batch.to(device, non_blocking=True)
    x = batch.permute(0, 3, 1, 2).to(dtype)
    return x.mul_(2.0 / max_value).sub_(1.0)


def from_model(x: torch.Tensor, max_value: int) -> np.ndarray:
    """``N x C x H x W`` floats in [-1, 1] -> ``N x H x W x C`` uint8/uint16 numpy pixels."""
    y = x.detach().float().add(1.0).mul_(max_value / 2.0).round_().clamp_(0, max_value)
    y = y.permute(0, 2, 3, 1).cpu()
    if max_value <= 255:
        return y.to(torch.uint8).numpy()
    return y.to(torch.int32).numpy().astype(np.uint16)
