"""A running average of the refiner's weights (Salimans et al., "Improved Techniques for Training
GANs", 2016), which the paper notes combines with the history of refined images (§2.3). A GAN's
refiner wanders from round to round; the average settles where it wanders. Refining then uses the
averaged weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """``average = decay * average + (1 - decay) * weights`` after every refiner update; buffers
    (batch-norm statistics) are copied as they are."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).requires_grad_(False).eval()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()), 1.0 - self.decay)
        for mine, theirs in zip(self.model.buffers(), model.buffers()):
            mine.copy_(theirs)
