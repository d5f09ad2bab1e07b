"""Refine a whole dataset with a trained refiner, keeping its labels (the point of S+U learning:
the refined images replace the synthetic ones as training data, §1, §3.1).

The input is streamed in batches (decode, refine, encode), so memory stays flat whatever the
dataset size. The output is a dataset in the same interchange format: each image at the same
relative path, refined, and ``labels.jsonl`` with every line byte-identical to the input's.

Nothing half-written ever looks complete: work goes to ``OUT.partial/``, which is renamed to
``OUT`` only at the end. An interrupted refine continues where it stopped when run again with
the same arguments. Under ``torchrun`` each process refines every ``world_size``-th batch and
rank 0 publishes the result; since every batch is refined exactly as in a single process, the
merged output is identical to a single-process run with the same batch size.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .datasets import LABELS_FILE, atomic_write_bytes, from_model, spec_of, to_model
from .datasets.folder import ImageSpec, PartialDir
from .datasets.pipeline import ImagePipeline, default_workers
from .datasets.stream import FolderIndex
from .devices import autocast, inference_precision, peak_rss_mib, set_threads
from .errors import SimganError
from .paths import check_no_overlap, partial_of
from .rundir import load_refiner
from .training import DistInfo, init_distributed

MANIFEST = ".simgan-refine.json"


@dataclass
class RefineResult:
    out: Path
    images: int
    seconds: float  # this call's refining time (a resumed call counts only its own work)
    images_per_s: float
    peak_rss_mib: float  # this process's peak resident memory (flat in the dataset's size)


def _out_name(rec_file: str, labelled: bool, variant: int | None = None) -> str:
    if variant is not None:  # --variants K: one file per refinement, NAME_vK.png
        return os.path.splitext(_out_name(rec_file, labelled))[0] + f"_v{variant}.png"
    if rec_file.lower().endswith(".png"):
        return rec_file
    if labelled:
        raise SimganError(f"refine writes PNG images, but the input lists {rec_file!r}; convert the dataset to "
                          f"PNG with `simgan convert` first (the labels must keep naming the right files)")
    return os.path.splitext(rec_file)[0] + ".png"


def check_output_names(index: FolderIndex) -> None:
    """Refuse two input images that would be written to one output file (``a.png`` and
    ``a.jpg`` of an unlabelled folder both become ``a.png``)."""
    if index.files is None:
        return
    seen: dict[str, str] = {}
    for f in index.files:
        name = _out_name(f, False)
        key = name.lower()  # also a clash on case-insensitive file systems
        if key in seen:
            raise SimganError(f"{index.root / seen[key]} and {index.root / f} would both be written as {name}; "
                              f"rename one of them")
        seen[key] = f


class _Progress:
    """Per-process count of finished batches, replaced atomically after each batch."""

    def __init__(self, partial: Path, info: DistInfo):
        self.path = partial / f".progress-{info.rank}-of-{info.world_size}.json"

    def load(self) -> int:
        if not self.path.exists():
            return 0
        return int(json.loads(self.path.read_text())["batches_done"])

    def save(self, done: int) -> None:
        atomic_write_bytes(self.path, json.dumps({"batches_done": done}).encode())


def inference_refiner(run, dev: torch.device, precision: str, *, trust_pickle: bool = False):
    """The refiner of ``run`` ready to refine on ``dev``: (model, config, step, precision), with
    ``precision`` resolved (:func:`simgan.devices.inference_precision`), the bf16 body on a CPU
    (:meth:`Refiner.for_inference`) and the run's memory layout."""
    model, cfg, step = load_refiner(run, dev, trust_pickle=trust_pickle)
    precision = inference_precision(precision, dev)
    if dev.type == "cpu":
        model = model.for_inference(precision)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, cfg, step, precision


def refine_dataset(run, input, out, *, batch_size: int | None = None, device: str = "auto", precision: str = "auto",
                   workers: int | None = None, progress: bool = True, echo=None,
                   trust_pickle: bool = False, variants: int = 1) -> RefineResult:
    """Refine every image of the interchange folder ``input`` with the refiner of ``run``.

    Writes ``out`` (which must not exist). Run again with the same arguments after an
    interruption to continue; the finished folder appears only once complete. ``workers``:
    processes that decode and encode the image files (default: none on a CPU, all cores but one
    on a GPU; see :mod:`simgan.datasets.pipeline`); ``batch_size`` defaults to 16 on a CPU and
    4096 on a GPU. ``precision="auto"`` refines in fp16 on a GPU:
    it gives fp32's 8-bit pixels on 99.95% of pixels where bf16 gives 96.9% (measured on an H100,
    eyes refiner), at the same speed; on a CPU it is bf16 where native, else fp32.

    ``variants = K > 1`` writes K refinements of each image, ``NAME_v0.png`` ... ``NAME_v{K-1}.png``,
    each with the input's labels (the paper's "several refined images per synthetic image"); they
    differ only when the refiner takes noise (``refiner.noise_channels``). A refiner's noise is
    drawn from a generator seeded by the batch and variant, so a refine is reproducible.
    """
    set_threads()
    if variants < 1:
        raise SimganError("--variants must be >= 1")
    info, dev = init_distributed(device)
    try:
        return _refine(run, input, out, batch_size, dev, precision, workers, progress and info.is_main, echo, info,
                       trust_pickle, variants)
    finally:
        if info.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _refine(run, input, out, batch_size, dev, precision, workers, progress, echo, info: DistInfo,
            trust_pickle: bool = False, variants: int = 1) -> RefineResult:
    say = echo or (lambda msg: None)
    if batch_size is None:
        # A GPU needs large batches to be busy. On a CPU small ones keep the activations in cache:
        # bf16 on 2 AVX512-BF16 cores ran the eyes refiner at 512 images/s at batch 16 and 238 at 256.
        batch_size = 4096 if dev.type == "cuda" else 16
    if batch_size < 1:
        raise SimganError("--batch-size must be >= 1")
    if workers is None:
        workers = default_workers(dev.type)
    if workers < 0:
        raise SimganError("--workers must be >= 0")
    out = Path(out)
    check_no_overlap({"--run": run, "--input": input}, {"--out": out})
    if out.exists():
        raise SimganError(f"output {out} already exists; choose a new folder or remove it")
    index = FolderIndex(input, what="input")
    check_output_names(index)
    first = index.records(0, 1)[0]
    spec = spec_of(index.read(first))
    model, cfg, step, precision = inference_refiner(run, dev, precision, trust_pickle=trust_pickle)
    want = ImageSpec(cfg.image.height, cfg.image.width, cfg.image.channels, cfg.image.bit_depth)
    if spec != want:
        raise SimganError(f"the run {run} refines {want.describe()} images (preset {cfg.preset}) but {input} holds "
                          f"{spec.describe()} images ({first.file})")
    n = len(index)
    n_batches = (n + batch_size - 1) // batch_size
    partial = partial_of(out)
    manifest = {
        "run": str(Path(run).resolve()), "refiner_step": step, "input": str(Path(input).resolve()),
        "images": n, "batch_size": batch_size, "world_size": info.world_size, "precision": precision,
    }
    if variants > 1:
        manifest["variants"] = variants

    # -- create or resume OUT.partial (rank 0, locked), then everyone checks the same manifest -----
    pdir = None
    if info.is_main:
        pdir = PartialDir(out, resume=True, echo=echo)
        mpath = partial / MANIFEST
        if not pdir.created:
            try:
                old = json.loads(mpath.read_text())
            except (OSError, ValueError):
                old = None
            if old != manifest:
                pdir.release()
                raise SimganError(f"{partial} holds an unfinished refine with other inputs or settings; remove it "
                                  f"to start over (or rerun with the same --run, --input, --batch-size, "
                                  f"--precision and process count to continue it)")
            say(f"continuing the unfinished refine in {partial}")
        else:
            atomic_write_bytes(mpath, json.dumps(manifest, indent=1).encode())
    if info.enabled:
        dist.barrier()
    try:
        return _refine_into(partial, pdir, index, model, cfg, spec, precision, batch_size, n, n_batches, manifest,
                            dev, workers, progress, info, out, variants)
    except BaseException as exc:
        if pdir is not None and pdir.lock.held:
            # Bad input found by the call that made OUT.partial: nothing is left behind. An
            # interruption (or a failure while continuing an earlier refine) keeps it to resume.
            if pdir.created and isinstance(exc, SimganError):
                pdir.remove()
            else:
                pdir.release()
        raise


def _refine_into(partial, pdir, index, model, cfg, spec, precision, batch_size, n, n_batches, manifest, dev,
                 workers, progress, info, out, variants) -> RefineResult:
    tracker = _Progress(partial, info)
    mine = list(range(info.rank, n_batches, info.world_size))
    done = tracker.load()
    todo = mine[done:]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, initial=min(n, done * batch_size * info.world_size), desc="refine", unit="img",
                   dynamic_ncols=True)

    def batch_files(b: int):
        recs = index.records(b * batch_size, (b + 1) * batch_size)
        names = [[partial / _out_name(r.file, index.labelled, v if variants > 1 else None) for r in recs]
                 for v in range(variants)]
        return [index.root / r.file for r in recs], names

    t0 = time.perf_counter()
    count = 0
    with ImagePipeline(workers, spec) as io:
        # Decoding runs `depth` batches ahead and encoding trails behind: the I/O workers stay busy
        # while the model runs. A batch counts as done only once all its files are written, in order.
        depth = 2 if io.workers == 0 else 4

        def start_read(b: int):
            srcs, dsts = batch_files(b)
            return dsts, io.decode(srcs)

        reads = deque(start_read(b) for b in todo[:depth])
        writes: deque = deque()
        for k, b in enumerate(todo):
            dsts, pending = reads.popleft()
            if k + depth < len(todo):
                reads.append(start_read(todo[k + depth]))
            pixels = pending.result()
            x = to_model(pixels, spec.max_value, device=dev)
            if cfg.train.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            outs = []
            for v in range(variants):
                noise = None
                if getattr(model, "noise_channels", 0):
                    g = torch.Generator().manual_seed(b * 1000 + v)
                    noise = model.sample_noise(x.shape[0], *x.shape[2:], generator=g, device=dev)
                with torch.no_grad(), autocast(dev, precision):
                    y = model(x, noise) if noise is not None else model(x)
                outs.append(from_model(y.float(), spec.max_value))
            for d in {p.parent for p in dsts[0]}:
                d.mkdir(parents=True, exist_ok=True)
            writes.append((len(dsts[0]), [io.encode(names, o) for names, o in zip(dsts, outs)]))
            count += len(dsts[0])
            while len(writes) > depth or (writes and k == len(todo) - 1):
                m, futs = writes.popleft()
                for fut in futs:
                    fut.result()
                done += 1
                tracker.save(done)
                if bar is not None:
                    bar.update(m * info.world_size)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()

    # -- publish: labels copied line for line, then one rename ----------------------------------
    if info.enabled:
        dist.barrier()
    if info.is_main:
        if index.labelled:
            tmp = partial / f".{LABELS_FILE}.tmp"
            with open(tmp, "wb") as fh:
                for line in index.iter_label_lines():
                    if variants == 1:
                        fh.write(line + b"\n")
                        continue
                    rec = json.loads(line)
                    for v in range(variants):
                        fh.write(json.dumps({**rec, "file": _out_name(rec["file"], True, v)}).encode() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, partial / LABELS_FILE)
        provenance = dict(manifest, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        atomic_write_bytes(partial / "refine.json", json.dumps(provenance, indent=1).encode())
        for f in partial.glob(".progress-*.json"):
            f.unlink()
        (partial / MANIFEST).unlink()
        pdir.publish()
    if info.enabled:
        dist.barrier()
    total = count * (info.world_size if info.enabled else 1)
    return RefineResult(out, n, seconds, total / max(seconds, 1e-9), peak_rss_mib())


def refine_array(run, images: np.ndarray, *, batch_size: int = 256, device: str = "auto",
                 precision: str = "auto") -> np.ndarray:
    """Refine an in-memory ``N×H×W×C`` array (for notebooks and evaluation code)."""
    from .devices import resolve_device
    dev = resolve_device(device)
    model, cfg, _, precision = inference_refiner(run, dev, precision)
    max_value = (1 << (cfg.image.bit_depth or 8)) - 1
    out = np.empty_like(images)
    for s in range(0, len(images), batch_size):
        x = to_model(images[s:s + batch_size], max_value, device=dev)
        if cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast(dev, precision):
            out[s:s + batch_size] = from_model(model(x).float(), max_value)
    return out


def remove_partial(out) -> None:
    """Forget an unfinished refine of ``out`` (only an ``OUT.partial`` that simgan made)."""
    if partial_of(out).exists():
        PartialDir(out, resume=True).remove()
