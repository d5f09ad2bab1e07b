"""Task consistency (beyond the paper): a frozen task network that R must not fool.

SimGAN keeps labels with self-regularisation alone (Eq. 4): R may change whatever D asks for as
long as the image stays close to x. A refiner pushed hard towards realism can move what the label
describes. CyCADA's semantic consistency (Hoffman et al., ICML 2018) and RetinaGAN's detector
consistency (Ho et al., 2021) add a second guard: a task network trained on the *source* images
and their labels is frozen, and the translated image must give the same task output as the source.

Here the task network is :class:`~simgan.evaluation.task.TaskNet`, the small model of
``simgan evaluate task``, trained before Algorithm 1 on the synthetic set's ``task.label`` for
``task.steps`` mini-batches:

* ``class`` labels: it learns the classes; the term is the cross-entropy of its logits on R(x)
  against the class it gives x (CyCADA's form);
* ``vector`` and ``points`` labels: it regresses the labels standardised by their spread on the
  synthetic set; the term is the mean squared change of its output from x to R(x)
  (:func:`simgan.models.losses.task_consistency_loss`).

Its outputs on every synthetic image are computed once, so the term costs one forward and
backward pass of a small network per refiner step. The network and those outputs are part of
the checkpoint: a resumed run uses the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import TaskConfig
from ..datasets import Dataset
from ..errors import SimganError
from ..models.losses import task_consistency_loss
from .distributed import DistInfo

BATCH = 64


class TaskConsistency:
    """The frozen task network and its outputs on the synthetic images of this process."""

    def __init__(self, net: torch.nn.Module, reference: torch.Tensor, kind: str, classes: list | None,
                 fit: float | None = None):
        self.net = net.eval().requires_grad_(False)
        self.reference, self.kind, self.classes = reference, kind, classes
        self.fit = fit  # accuracy (class) or R² (vector, points) on the synthetic set

    @classmethod
    def train(cls, labels: "TaskLabels", source, dist: DistInfo, *, steps: int, seed: int,
              augment: bool = False) -> "TaskConsistency":
        """Learn ``labels`` (this process's share of them) from the images of ``source`` (the same
        share of the synthetic set, :class:`~.sampling.ImageSource`) for ``steps`` mini-batches.
        Under ``torchrun`` rank 0's network is given to every process."""
        from ..evaluation.task import TaskNet, encode_targets

        kind, classes, y = labels.kind, labels.classes, labels.y
        spec, dev = source.spec, source.device
        y = encode_targets(y, kind, spec.height, spec.width)
        if kind == "class":
            t = torch.from_numpy(y).to(dev)
        else:
            mean, std = y.mean(0), y.std(0)
            std[std < 1e-8] = 1.0
            t = torch.from_numpy((y - mean) / std).to(dev)
        outputs = len(classes) if kind == "class" else t.shape[1]
        g = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = TaskNet(spec.channels, outputs).to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        lossf = torch.nn.CrossEntropyLoss() if kind == "class" else torch.nn.MSELoss()
        net.train()
        for _ in range(steps):
            idx = torch.randint(len(source), (min(BATCH, len(source)),), generator=g)
            x = source.batch(idx)
            loss = lossf(net(appearance_jitter(x, g) if augment else x), t[idx.to(t.device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if dist.enabled:
            for p in net.parameters():
                torch.distributed.broadcast(p.data, 0)
        return cls.on(net, source, kind, classes, t)

    @classmethod
    def on(cls, net: torch.nn.Module, source, kind: str, classes: list | None,
           truth: torch.Tensor | None = None) -> "TaskConsistency":
        """``net`` frozen, with its outputs on every image of ``source`` (and, given the encoded
        labels ``truth``, how well it fits them)."""
        net.eval()
        with torch.no_grad():
            out = torch.cat([net(source.batch(torch.arange(i, min(i + 512, len(source)))))
                             for i in range(0, len(source), 512)]).float()
        reference = out.argmax(1) if kind == "class" else out
        fit = None
        if truth is not None and kind == "class":
            fit = float((reference == truth).float().mean())
        elif truth is not None:
            fit = float(1 - (out - truth).pow(2).mean() / truth.var(0, unbiased=False).clamp(min=1e-8).mean())
        return cls(net, reference, kind, classes, fit)

    def loss(self, refined: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The term for refined images ``refined`` of the synthetic images ``idx``."""
        return task_consistency_loss(self.net(refined), self.reference[idx.to(self.reference.device)], self.kind)

    def describe(self, label: str) -> str:
        what = f"{len(self.classes)} classes" if self.kind == "class" else f"{self.kind} of {self.reference.shape[1]}"
        fit = f"{self.fit:.0%} right" if self.kind == "class" else f"R² {self.fit:.2f}"
        return f"task consistency: a network learnt {label!r} ({what}) on the synthetic set, {fit} there"

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the network (the same in every process) and what it learnt."""
        return {"net": self.net.state_dict(), "kind": self.kind, "classes": self.classes, "fit": self.fit,
                "outputs": int(self.reference.shape[1]) if self.kind != "class" else len(self.classes)}

    @classmethod
    def from_state(cls, state: dict, source) -> "TaskConsistency":
        """The checkpoint's network, with its outputs on ``source`` computed again."""
        from ..evaluation.task import TaskNet

        net = TaskNet(source.spec.channels, state["outputs"])
        net.load_state_dict(state["net"])
        tc = cls.on(net.to(source.device), source, state["kind"], state["classes"])
        tc.fit = state["fit"]
        return tc


def appearance_jitter(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Images (in [-1, 1]) with a random look each: per image and channel a gain in [0.4, 1.2]
    whose sign flips half the time (polarity) and an offset in [-0.5, 0.5], then Gaussian noise of
    a random strength up to 0.2. What stays is the layout of edges, which is what a label of
    the synthetic set describes."""
    n, c = x.shape[:2]
    gain = torch.empty(n, c, 1, 1).uniform_(0.4, 1.2, generator=g)
    sign = torch.where(torch.rand(n, 1, 1, 1, generator=g) < 0.5, -1.0, 1.0)
    offset = torch.empty(n, c, 1, 1).uniform_(-0.5, 0.5, generator=g)
    sigma = torch.empty(n, 1, 1, 1).uniform_(0.0, 0.2, generator=g)
    noise = torch.randn(x.shape, generator=g) * sigma
    jitter = (x.cpu() * gain * sign + offset + noise).clamp(-1, 1)
    return jitter.to(x.device, x.dtype)


@dataclass
class TaskLabels:
    kind: str
    classes: list | None
    y: np.ndarray  # class indices, or N×K×2 points / N×D vectors, of this process's share


def read_labels(cfg: TaskConfig, syn_ds: Dataset, dist: DistInfo) -> TaskLabels:
    """The synthetic set's ``cfg.label``, checked before anything is written: one line naming the
    first record without it, or a value of another kind."""
    from ..evaluation.task import KINDS, class_names, infer_kind, label_values, targets

    if not getattr(syn_ds, "labelled", False):
        raise SimganError(f"task consistency needs the synthetic set's {cfg.label!r} labels, and it has no "
                          "labels.jsonl")
    values = label_values(syn_ds, cfg.label, "synthetic set")
    kind = cfg.kind or infer_kind(values)
    if kind not in KINDS:
        raise SimganError(f"task.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    classes = class_names(values) if kind == "class" else None
    y = targets(values, kind, "synthetic set", classes)
    if kind == "class" and len(classes) < 2:
        raise SimganError(f"the synthetic set's {cfg.label!r} labels hold one class only; task consistency needs "
                          "two or more")
    return TaskLabels(kind, classes, y[dist.rank::dist.world_size] if dist.enabled else y)
