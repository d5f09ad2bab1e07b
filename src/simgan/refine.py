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
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .datasets import LABELS_FILE, atomic_write_bytes, encode_png, from_model, spec_of, to_model
from .datasets.folder import ImageSpec
from .datasets.stream import FolderIndex
from .devices import autocast, peak_rss_mib, resolve_precision, set_threads
from .errors import SimganError
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


def refine_dataset(run, input, out, *, batch_size: int = 256, device: str = "auto", precision: str = "auto",
                   threads: int = 4, progress: bool = True, echo=None, variants: int = 1) -> RefineResult:
    """Refine every image of the interchange folder ``input`` with the refiner of ``run``.

    Writes ``out`` (which must not exist). Run again with the same arguments after an
    interruption to continue; the finished folder appears only once complete.

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
        return _refine(run, input, out, batch_size, dev, precision, threads, progress and info.is_main, echo, info,
                       variants)
    finally:
        if info.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _refine(run, input, out, batch_size, dev, precision, threads, progress, echo, info: DistInfo,
            variants: int = 1) -> RefineResult:
    say = echo or (lambda msg: None)
    if batch_size < 1:
        raise SimganError("--batch-size must be >= 1")
    out = Path(out)
    if out.exists():
        raise SimganError(f"output {out} already exists; choose a new folder or remove it")
    index = FolderIndex(input, what="input")
    first = index.records(0, 1)[0]
    spec = spec_of(index.read(first))
    model, cfg, step = load_refiner(run, dev)
    precision = resolve_precision(precision, dev)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    want = ImageSpec(cfg.image.height, cfg.image.width, cfg.image.channels, cfg.image.bit_depth)
    if spec != want:
        raise SimganError(f"the run {run} refines {want.describe()} images (preset {cfg.preset}) but {input} holds "
                          f"{spec.describe()} images ({first.file})")
    n = len(index)
    n_batches = (n + batch_size - 1) // batch_size
    partial = out.with_name(out.name + ".partial")
    manifest = {
        "run": str(Path(run).resolve()), "refiner_step": step, "input": str(Path(input).resolve()),
        "images": n, "batch_size": batch_size, "world_size": info.world_size, "precision": precision,
    }
    if variants > 1:
        manifest["variants"] = variants

    # -- create or resume OUT.partial (rank 0), then everyone checks the same manifest ------------
    if info.is_main:
        mpath = partial / MANIFEST
        if partial.exists():
            try:
                old = json.loads(mpath.read_text())
            except (OSError, json.JSONDecodeError):
                old = None
            if old != manifest:
                raise SimganError(f"{partial} holds an unfinished refine with other inputs or settings; remove it "
                                  f"to start over (or rerun with the same --run, --input, --batch-size, "
                                  f"--precision and process count to continue it)")
            say(f"continuing the unfinished refine in {partial}")
        else:
            partial.mkdir(parents=True)
            atomic_write_bytes(mpath, json.dumps(manifest, indent=1).encode())
    if info.enabled:
        dist.barrier()

    tracker = _Progress(partial, info)
    mine = list(range(info.rank, n_batches, info.world_size))
    done = tracker.load()
    todo = mine[done:]
    max_value = spec.max_value
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, initial=min(n, done * batch_size * info.world_size), desc="refine", unit="img",
                   dynamic_ncols=True)

    def load(b: int):
        recs = index.records(b * batch_size, (b + 1) * batch_size)
        images = list(pool.map(index.read, recs))
        for rec, img in zip(recs, images):
            if spec_of(img) != spec:
                raise SimganError(f"{index.root / rec.file} is {spec_of(img).describe()} but the run refines "
                                  f"{spec.describe()} images")
        return recs, np.stack(images)

    def save(recs, refined: np.ndarray, variant: int | None) -> None:
        names = [_out_name(r.file, index.labelled, variant) for r in recs]
        for d in {os.path.dirname(nm) for nm in names}:
            (partial / d).mkdir(parents=True, exist_ok=True)
        list(pool.map(lambda a: encode_png(partial / a[0], a[1]), zip(names, refined)))

    t0 = time.perf_counter()
    count = 0
    with ThreadPoolExecutor(max(1, threads)) as pool, ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
        pending_read = reader.submit(load, todo[0]) if todo else None
        pending_write = None
        for k, b in enumerate(todo):
            recs, pixels = pending_read.result()
            pending_read = reader.submit(load, todo[k + 1]) if k + 1 < len(todo) else None
            x = to_model(pixels, max_value, device=dev)
            if cfg.train.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            outs = []
            for v in range(variants):
                noise = None
                if getattr(model, "noise_channels", 0):
                    g = torch.Generator().manual_seed(b * 1000 + v)
                    noise = torch.randn(x.shape[0], model.noise_channels, *x.shape[2:], generator=g).to(dev)
                with torch.no_grad(), autocast(dev, precision):
                    y = model(x, noise) if noise is not None else model(x)
                outs.append(from_model(y.float(), max_value))
            if pending_write is not None:
                pending_write.result()
                tracker.save(done)
                if bar is not None:
                    bar.update(last_count * info.world_size)
            pending_write = writer.submit(
                lambda r=recs, o=outs: [save(r, ov, v if variants > 1 else None) for v, ov in enumerate(o)])
            done += 1
            last_count = len(recs)
            count += len(recs)
        if pending_write is not None:
            pending_write.result()
            tracker.save(done)
            if bar is not None:
                bar.update(last_count * info.world_size)
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
        if out.exists():
            raise SimganError(f"output {out} appeared while refining; the result is left in {partial}")
        os.replace(partial, out)
    if info.enabled:
        dist.barrier()
    total = count * (info.world_size if info.enabled else 1)
    return RefineResult(out, n, seconds, total / max(seconds, 1e-9), peak_rss_mib())


def refine_array(run, images: np.ndarray, *, batch_size: int = 256, device: str = "auto",
                 precision: str = "auto") -> np.ndarray:
    """Refine an in-memory ``N×H×W×C`` array (for notebooks and evaluation code)."""
    from .devices import resolve_device
    dev = resolve_device(device)
    model, cfg, _ = load_refiner(run, dev)
    precision = resolve_precision(precision, dev)
    max_value = (1 << (cfg.image.bit_depth or 8)) - 1
    out = np.empty_like(images)
    for s in range(0, len(images), batch_size):
        x = to_model(images[s:s + batch_size], max_value, device=dev)
        with torch.no_grad(), autocast(dev, precision):
            out[s:s + batch_size] = from_model(model(x).float(), max_value)
    return out


def remove_partial(out) -> None:
    """Forget an unfinished refine of ``out``."""
    shutil.rmtree(Path(out).with_name(Path(out).name + ".partial"), ignore_errors=True)
