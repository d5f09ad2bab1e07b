"""Training on several processes (``torchrun``): each process trains on its own shard of both sets
with its own history buffer, PyTorch's DistributedDataParallel averages R's and D's gradients, and
rank 0 writes the run directory. These helpers are the only places the loop meets the process group."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..runtime import DistInfo


def wrap_for_training(module: nn.Module, info: DistInfo, device: torch.device, *, compile_: bool) -> nn.Module:
    """``module`` as the training step calls it: under DDP when there are several processes (its
    gradients averaged across them), compiled with ``compile_``."""
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP
        module = DDP(module, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(module) if compile_ else module


def average(values: torch.Tensor, images: int, info: DistInfo) -> tuple[torch.Tensor, int]:
    """Metric rows averaged over the processes, and the images all of them drew."""
    if not info.enabled:
        return values, images
    dist.all_reduce(values)
    values /= info.world_size
    counts = torch.tensor([images], dtype=torch.float64)
    dist.all_reduce(counts)
    return values, int(counts.item())


def all_max(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Each of ``values``, the largest over the processes (the same on all of them)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def gather_to_main(obj, info: DistInfo) -> list | None:
    """Every process's ``obj``, in rank order, on rank 0 (None on the others)."""
    if not info.enabled:
        return [obj]
    gathered = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def finish(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
