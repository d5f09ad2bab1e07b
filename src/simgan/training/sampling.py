"""Data for Algorithm 1: each set decoded once into an integer array, mini-batches drawn from
shuffled epochs (saveable, so a resumed run draws the same batches) and normalised to [-1, 1]
on the training device. Under ``torchrun`` each process holds its own shard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import SimGANConfig, for_image_shape
from ..datasets import Dataset, ImageSpec, open_dataset, to_model
from ..errors import SimganError
from ..runtime import DistInfo


class BatchSampler:
    """Mini-batch indices from shuffled epochs, with a saveable random state."""

    def __init__(self, n: int, seed: int):
        self.n = n
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.generator)
        self.pos = 0

    def next(self, b: int) -> torch.Tensor:
        out = []
        while b > 0:
            if self.pos >= self.n:
                self.perm = torch.randperm(self.n, generator=self.generator)
                self.pos = 0
            take = min(b, self.n - self.pos)
            out.append(self.perm[self.pos:self.pos + take])
            self.pos += take
            b -= take
        return out[0] if len(out) == 1 else torch.cat(out)

    def state_dict(self) -> dict:
        return {"n": self.n, "generator": self.generator.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != self.n:
            raise SimganError(f"the checkpoint was trained on a set of {state['n']} images, this one holds {self.n}")
        self.generator.set_state(state["generator"])
        self.perm = state["perm"]
        self.pos = int(state["pos"])


class ImageSource:
    """A set of images as one ``N×H×W×C`` integer tensor; ``batch(idx)`` returns floats in
    [-1, 1] on the training device, channels-last. On a GPU the whole set lives in GPU memory
    when it fits in a quarter of it; otherwise batches are copied from pinned memory asynchronously.
    """

    def __init__(self, array: np.ndarray, spec: ImageSpec, device: torch.device):
        self.spec = spec
        self.device = device
        data = torch.from_numpy(array if array.dtype == np.uint8 else array.astype(np.int32))
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if data.numel() * data.element_size() < free // 4:
                data = data.to(device)
            else:
                data = data.pin_memory()
        self.data = data

    def __len__(self) -> int:
        return self.data.shape[0]

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        if self.data.device != idx.device and self.data.device.type == "cuda":
            idx = idx.to(self.data.device)
        x = self.data[idx]
        if not x.is_cuda and self.device.type == "cuda":  # a set too large for the GPU: copy from pinned memory
            x = x.pin_memory().to(self.device, non_blocking=True)
        return to_model(x, self.spec.max_value)


def load_shard(ds: Dataset, dist_info: DistInfo, cache: Path | None) -> np.ndarray:
    if dist_info.enabled:
        return ds.read_many(list(range(dist_info.rank, len(ds), dist_info.world_size)))
    return ds.load(cache=cache)


def check_image_spec(cfg: SimGANConfig, spec: ImageSpec, what: str, path) -> None:
    want = cfg.image
    mismatch = [(name, getattr(want, name), getattr(spec, name))
                for name in ("height", "width", "channels", "bit_depth")
                if getattr(want, name) is not None and getattr(want, name) != getattr(spec, name)]
    if mismatch:
        want_spec = ImageSpec(want.height or spec.height, want.width or spec.width,
                              want.channels or spec.channels, want.bit_depth or spec.bit_depth)
        hint = " (use --preset generic for other image shapes)" if cfg.preset != "generic" else ""
        raise SimganError(f"{what} {path} holds {spec.describe()} images but the {cfg.preset} preset is "
                          f"for {want_spec.describe()} images{hint}")


def open_training_sets(cfg: SimGANConfig, synthetic, real) -> tuple[SimGANConfig, ImageSpec, Dataset, Dataset]:
    """Both sets opened and checked against each other and the config; the config with the data's
    image shape filled in (and what derives from it, :func:`simgan.config.for_image_shape`)."""
    syn_ds = synthetic if isinstance(synthetic, Dataset) else open_dataset(synthetic, what="synthetic set")
    real_ds = real if isinstance(real, Dataset) else open_dataset(real, what="real set")
    spec = syn_ds.spec
    if real_ds.spec != spec:
        for ds in (real_ds, syn_ds):  # a set of mixed sizes is the more useful thing to say
            ds.read_many(list(range(min(len(ds), 64))), threads=1)
        raise SimganError(f"the synthetic images are {spec.describe()} but the real images are "
                          f"{real_ds.spec.describe()}; both sets must share size and channels")
    check_image_spec(cfg, spec, "synthetic set", getattr(syn_ds, "root", synthetic))
    cfg = cfg.override({"image": {"height": spec.height, "width": spec.width,
                                  "channels": spec.channels, "bit_depth": spec.bit_depth}})
    return for_image_shape(cfg, spec.height, spec.width), spec, syn_ds, real_ds
