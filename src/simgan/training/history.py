"""The history of refined images (§2.3, Figure 4).

D should classify every refined image R ever produced as fake, not only the latest ones, or it
forgets old artifacts and R brings them back. So D's mini-batch of ``b`` refined images takes
``b/2`` from the current R and ``b/2`` sampled from a buffer of ``B`` earlier refined images; after
each D step, ``b/2`` random buffer slots are replaced by the newly refined images. ``B`` is fixed.

The buffer lives on the training device and is saved in checkpoints (with its random state), so
a resumed run continues exactly.
"""

from __future__ import annotations

import torch


class ImageHistoryBuffer:
    def __init__(self, capacity: int, image_shape: tuple[int, int, int], device: torch.device,
                 seed: int = 0, dtype: torch.dtype = torch.float32):
        if capacity < 1:
            raise ValueError("history buffer capacity must be >= 1")
        self.capacity = capacity
        self.device = torch.device(device)
        self.images = torch.empty((capacity, *image_shape), device=self.device, dtype=dtype)
        self.size = 0  # slots filled so far (the buffer fills up first, then replaces)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    def sample(self, n: int) -> torch.Tensor:
        """``n`` distinct images drawn uniformly from the filled part of the buffer."""
        if n > self.size:
            raise ValueError(f"cannot sample {n} images from a history of {self.size}")
        idx = torch.randperm(self.size, generator=self.generator, device=self.device)[:n]
        return self.images[idx]

    @torch.no_grad()
    def push(self, batch: torch.Tensor) -> None:
        """Add refined images: fill empty slots first, then replace random slots (§2.3)."""
        batch = batch.detach().to(self.images.dtype)
        n = batch.shape[0]
        free = min(n, self.capacity - self.size)
        if free:
            self.images[self.size:self.size + free] = batch[:free]
            self.size += free
        rest = n - free
        if rest:
            slots = torch.randperm(self.capacity, generator=self.generator, device=self.device)[:rest]
            self.images[slots] = batch[free:free + rest]

    def state_dict(self) -> dict:
        return {
            "capacity": self.capacity,
            "size": self.size,
            "images": self.images[:self.size].cpu(),
            "generator": self.generator.get_state(),
            "device": self.device.type,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"history buffer of the checkpoint holds {state['capacity']} images, not {self.capacity}")
        self.size = int(state["size"])
        self.images[:self.size] = state["images"].to(self.device, self.images.dtype)
        if state.get("device", "cpu") == self.device.type:
            self.generator.set_state(state["generator"])
        else:
            # A generator's state is specific to its device type (CPU and CUDA generators are
            # different algorithms), so a run resumed on another device reseeds from the saved
            # state: deterministic, though not the draws the old device would have made.
            seed = int.from_bytes(bytes(state["generator"].flatten()[-8:].tolist()), "little") ^ self.size
            self.generator.manual_seed(seed & ((1 << 63) - 1))
