"""The optimisers of the paper's settings (§3: SGD for eyes and hands; Adam in the generic preset)."""

from __future__ import annotations

import torch

from ..config import TrainConfig


def make_optimizer(params, t: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """SGD with momentum or Adam, as the training settings name."""
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=t.momentum)
    return torch.optim.Adam(params, lr=lr, betas=tuple(t.betas))
