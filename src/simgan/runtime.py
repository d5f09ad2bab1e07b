"""The runtime both training and refining share: devices, numeric precision, the ``torchrun``
process group, and the global random state a checkpoint saves.

``--device auto`` picks CUDA when present, else CPU. ``--precision auto`` picks bfloat16 where
the hardware computes it natively (CUDA GPUs from Ampere on; CPUs with AVX512-BF16 or AMX),
float16 on older GPUs, and float32 elsewhere — bfloat16 on a CPU without native support is
emulated and many times slower than float32.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .errors import SimganError
from .memory import keep_freed_memory


def resolve_device(name: str | None = "auto") -> torch.device:
    """The torch device for ``--device``. A GPU always comes back with its index (``cuda:0``, never
    a bare ``cuda``), because tensors report the indexed form and ``torch.device("cuda") !=
    torch.device("cuda:0")``: comparing a tensor's device with an unindexed one would always differ."""
    name = (name or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SimganError(f"--device {name} was asked for but no CUDA GPU is available on this machine")
        dev = torch.device(name)
        if dev.index is None:
            return torch.device("cuda", torch.cuda.current_device())
        if dev.index >= torch.cuda.device_count():
            raise SimganError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
        return dev
    if name == "cpu":
        return torch.device("cpu")
    raise SimganError(f"unknown device {name!r}; use cpu, cuda or cuda:N")


# oneDNN ISA levels (``ONEDNN_MAX_CPU_ISA``) below which it computes bfloat16 without AVX512-BF16 or AMX.
_ISAS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def onednn_isa_cap() -> str | None:
    """The instruction set oneDNN (PyTorch's CPU convolutions) is limited to by the environment
    (``ONEDNN_MAX_CPU_ISA``, or its older name ``DNNL_MAX_CPU_ISA``), upper-cased; ``None`` when
    it may use everything the CPU has. Capping it makes one machine behave like an older CPU:
    ``ONEDNN_MAX_CPU_ISA=AVX2`` computes as an AVX2-only CPU does."""
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(var, "").strip().upper()
        if value and value not in ("ALL", "DEFAULT"):
            return value
    return None


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The feature flags of this CPU (``/proc/cpuinfo``; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _cpuinfo_has_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX) and oneDNN is not capped
    below those instructions (:func:`onednn_isa_cap`): where it is, bf16 is emulated and ``auto``
    picks fp32."""
    return _cpuinfo_has_bf16() and onednn_isa_cap() not in _ISAS_WITHOUT_BF16


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> the fastest safe format on ``device``; explicit choices are checked."""
    precision = precision.lower()
    if precision == "auto":
        if native_bf16(device):
            return "bf16"
        return "fp16" if device.type == "cuda" else "fp32"
    if precision not in PRECISION_DTYPES:
        raise SimganError(f"unknown precision {precision!r}; use fp32, bf16, fp16 or auto")
    if precision == "fp16" and device.type == "cpu":
        raise SimganError("--precision fp16 is for GPUs; on CPU use fp32 or bf16")
    return precision


def inference_precision(precision: str, device: torch.device) -> str:
    """Like :func:`resolve_precision`, but ``auto`` on a GPU is fp16 for refining: inference only,
    values bounded, and fp16's three more mantissa bits give fp32's 8-bit pixels more often than
    bf16 does, at the same speed."""
    if precision.lower() == "auto" and device.type == "cuda":
        return "fp16"
    return resolve_precision(precision, device)


def autocast(device: torch.device, precision: str):
    """Mixed-precision context for ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISION_DTYPES[precision])


def set_threads() -> None:
    """Use every core for intra-op work unless the user set OMP_NUM_THREADS, and keep freed
    activation memory in the process (:func:`keep_freed_memory`)."""
    if "OMP_NUM_THREADS" not in os.environ:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, n))
    keep_freed_memory()


def deterministic_kernels(device: torch.device) -> None:
    """Ask cuDNN for deterministic algorithms on a GPU, so that a run and the same run resumed
    from a checkpoint compute the same weights (``--resume`` continues exactly, as on a CPU).
    cuDNN's default choice of backward-convolution algorithm accumulates in a varying order, so
    identical runs would differ in R's weights; the deterministic ones cost little speed."""
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------
# distributed set-up (torchrun): PyTorch's own process group; DDP wraps the networks in training


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), resolve_device(device_name)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank), device


# ----------------------------------------------------------------------------------------------
# random state (a resumed run continues exactly)


def rng_state() -> dict:
    """The global random states as tensors and plain data (a checkpoint loads with
    ``torch.load(weights_only=True)``: no pickled numpy or Python objects)."""
    key, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"key": key, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": [version, list(internal), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved: the torch, numpy, Python (and CUDA) generators."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    if isinstance(npst, dict):
        np.random.set_state((npst["key"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                             npst["cached_gaussian"]))
    else:  # a checkpoint of an older simgan (loaded with --trust-pickle)
        np.random.set_state(npst)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, ValueError):
            pass  # written on a machine with another GPU count: CUDA's streams start afresh
