"""The optimisers of the paper's settings (§3: SGD for eyes and hands; Adam in the generic preset),
and of the task models that measure refinement (:mod:`simgan.evaluation.supervised`)."""

from __future__ import annotations

import torch

from ..config import TrainConfig


def optimizer(params, name: str, lr: float, *, momentum: float = 0.9,
              betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """SGD with momentum (``name="sgd"``) or Adam (anything else)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas))


def make_optimizer(params, t: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """The optimiser the training settings name (their momentum and betas)."""
    return optimizer(params, t.optimizer, lr, momentum=t.momentum, betas=t.betas)
