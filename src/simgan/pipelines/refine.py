"""Refine a whole dataset with a trained refiner, keeping its labels (the point of S+U learning:
the refined images replace the synthetic ones as training data, §1, §3.1).

The input is streamed in batches (decode, refine, encode), so memory stays flat whatever the
dataset size. The output is a dataset in the interchange format (each image at the same relative
path, refined) or, for ``OUT.shards``, in the array format (:mod:`simgan.datasets.shards`: the
refined images as ``.npy`` shards, no codec per image); either way ``labels.jsonl`` with every line
byte-identical to the input's. The input may be a PNG folder or any set ``open_dataset`` reads
(the array format, HDF5, NPZ), read as arrays.

Nothing half-written ever looks complete: work goes to ``OUT.partial/``, which is renamed to
``OUT`` only at the end. An interrupted refine continues where it stopped when run again with
the same arguments. Under ``torchrun`` each process refines every ``world_size``-th batch and
rank 0 publishes the result; since every batch is refined exactly as in a single process, the
merged output is identical to a single-process run with the same batch size.

A sequence set (frames with ``sequence`` and ``frame`` labels, :mod:`simgan.datasets.sequences`)
is refined with one noise code per sequence, not per frame, so that a refiner that takes noise
gives every frame of a sequence the same look (a code drawn afresh per frame would make the
sequence flicker); variant ``v`` of every frame uses the same snapshot, as for single images.

A job array (SLURM's ``--array``) splits the same way with ``shard=(I, N)`` (``--shard I/N``):
task ``I`` refines every ``N``-th batch (or shard) into the shared ``OUT.partial``, holding a lock
of its own, and leaves a ``done`` mark. The tasks need not run at the same time and never talk to
each other: whichever task finds all ``N`` marks publishes ``OUT`` (the folder's lock elects one).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..datasets import atomic_write_bytes, from_model, open_dataset, spec_of, to_model
from ..datasets.conversion import output_format
from ..datasets.folder import DatasetWriter, ImageSpec, PartialDir, Record, json_line
from ..datasets.formats import sniff
from ..datasets.shards import SHARD_IMAGES, ShardWriter
from ..datasets.stream import FolderIndex
from ..datasets.workers import FileWorkers, default_workers
from ..errors import SimganError
from ..locks import Lock, LockBusy
from ..memory import one_arena, peak_rss_mib
from ..paths import check_no_overlap, partial_of
from ..runtime import DistInfo, autocast, inference_precision, init_distributed, set_threads
from ..training.rundir import load_refiner
from ..training.snapshots import load_snapshots

MANIFEST = ".simgan-refine.json"


@dataclass
class RefineResult:
    out: Path
    images: int  # the input's images (a job-array task: the images this task refined)
    seconds: float  # this call's refining time (a resumed call counts only its own work)
    images_per_s: float
    peak_rss_mib: float  # this process's peak resident memory (flat in the dataset's size)
    tasks_left: int = 0  # a job-array task (``shard``): the tasks not done yet; 0 once OUT is published


def parse_shard(shard) -> tuple[int, int] | None:
    """``shard`` (``"I/N"`` or ``(I, N)``: task I of N, counted from 0) as a checked pair."""
    if shard is None:
        return None
    if isinstance(shard, str):
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if m is None:
            raise SimganError(f"--shard must be I/N, task I of N counted from 0 (for example 3/8), not {shard!r}")
        shard = (int(m[1]), int(m[2]))
    i, n = (int(v) for v in shard)
    if n < 1 or not 0 <= i < n:
        raise SimganError(f"--shard {i}/{n}: the task I must be 0 to N-1 (SLURM: --array=0-{max(n - 1, 0)} and "
                          f"--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
    return i, n


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


class ArrayIndex:
    """A set read as arrays (the array format, HDF5, NPZ) seen as :class:`FolderIndex` is: records
    by position, each named by its labels' ``"file"`` (else ``img/NNNNNN.png``) with its labels line."""

    files = None

    def __init__(self, path, what: str = "input"):
        self.ds = open_dataset(path, what=what)
        self.root = Path(path)
        self.labelled = self.ds.labelled
        self.digits = max(6, len(str(len(self.ds) - 1)))

    def __len__(self) -> int:
        return len(self.ds)

    def _line(self, i: int) -> bytes | None:
        if not self.labelled:
            return None
        return self.ds.label_line(i) if hasattr(self.ds, "label_line") else json_line(self.ds.labels(i))

    def records(self, start: int, stop: int) -> list[Record]:
        stop = min(stop, len(self))
        if not self.labelled:
            lines = [None] * (stop - start)
        elif hasattr(self.ds, "label_lines"):
            lines = self.ds.label_lines(start, stop)
        else:
            lines = [self._line(i) for i in range(start, stop)]
        out = []
        for i, line in zip(range(start, stop), lines):
            rel = json.loads(line).get("file") if line is not None else None
            out.append(Record(rel if isinstance(rel, str) and rel else f"img/{i:0{self.digits}d}.png", line))
        return out

    def iter_label_lines(self):
        if hasattr(self.ds, "iter_label_lines"):  # the array format: one pass over its labels.jsonl
            yield from self.ds.iter_label_lines()
            return
        for i in range(len(self)):
            yield self._line(i)

    def read_batch(self, start: int, stop: int) -> np.ndarray:
        return self.ds.read_many(list(range(start, min(stop, len(self)))))


def _done(value) -> Future:
    fut: Future = Future()
    fut.set_result(value)
    return fut


class _Progress:
    """Per-process count of finished batches, replaced atomically after each batch."""

    def __init__(self, partial: Path, part: int, parts: int):
        self.path = partial / f".progress-{part}-of-{parts}.json"

    def load(self) -> int:
        if not self.path.exists():
            return 0
        return int(json.loads(self.path.read_text())["batches_done"])

    def save(self, done: int) -> None:
        # Atomic (a kill -9 leaves the old count or the new one) but not flushed to the disk: the
        # images it counts are not either, and an fsync per small batch is a visible share of a
        # fast CPU refine.
        atomic_write_bytes(self.path, json.dumps({"batches_done": done}).encode(), durable=False)


def inference_refiner(run, dev: torch.device, precision: str, *, trust_pickle: bool = False):
    """The refiner of ``run`` ready to refine on ``dev``: (model, config, step, precision), with
    ``precision`` resolved (:func:`simgan.runtime.inference_precision`) and the model prepared
    by :func:`ready_for_inference`."""
    model, cfg, step = load_refiner(run, dev, trust_pickle=trust_pickle)
    precision = inference_precision(precision, dev)
    return ready_for_inference(model, cfg, dev, precision), cfg, step, precision


def ready_for_inference(model: torch.nn.Module, cfg, dev: torch.device, precision: str) -> torch.nn.Module:
    """``model`` (a refiner with its weights loaded) for refining: on a CPU fused and in bf16 where
    asked (:meth:`Refiner.for_inference`), in the run's memory layout."""
    if dev.type == "cpu":
        model = model.for_inference(precision, channels_last=cfg.train.channels_last)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def refine_dataset(run, input, out, *, batch_size: int | None = None, device: str = "auto", precision: str = "auto",
                   workers: int | None = None, progress: bool = True, echo=None,
                   trust_pickle: bool = False, variants: int = 1, format: str = "auto",
                   shard_size: int = SHARD_IMAGES, shard=None) -> RefineResult:
    """Refine every image of ``input`` (a PNG folder, or the array format, HDF5, NPZ) with the
    refiner of ``run``. ``format``: ``png`` (a folder of PNG files), ``shards`` (the array format)
    or ``auto`` (shards when ``out`` ends in ``.shards``); ``shard_size``: input images per shard,
    rounded to whole batches.

    Writes ``out`` (which must not exist). Run again with the same arguments after an
    interruption to continue; the finished folder appears only once complete. ``workers``:
    processes that decode and encode the image files (default: none on a CPU, all cores but one
    on a GPU; see :mod:`simgan.datasets.workers`); ``batch_size`` defaults to 16 on a CPU and
    4096 on a GPU. ``precision="auto"`` refines in fp16 on a GPU (closer to fp32's 8-bit pixels than
    bf16, at the same speed; docs/results/speed.md); on a CPU it is bf16 where native, else fp32.

    ``variants = K > 1`` writes K refinements of each image, ``NAME_v0.png`` ... ``NAME_v{K-1}.png``,
    each with the input's labels (the paper's "several refined images per synthetic image"); they
    differ when the refiner takes a noise code (``refiner.noise_channels``) or the run kept snapshots
    (``train.snapshots``). The code is drawn from a generator seeded by the batch and variant, so a
    refine is reproducible.

    ``shard = "I/N"`` makes this call task I of a job array of N (SLURM's ``--array``): it refines
    every N-th batch into the shared ``OUT.partial``, and the task that finds the others done
    publishes ``OUT`` (:attr:`RefineResult.tasks_left` says how many are not). The tasks can run
    at any time, on any machines that see the same folder, and together write exactly what one
    process writes.
    """
    one_arena()  # before torch starts its threads: refine's memory stays flat with the set's size
    set_threads()
    task = parse_shard(shard)
    if variants < 1:
        raise SimganError("--variants must be >= 1")
    if shard_size < 1:
        raise SimganError("--shard-size must be >= 1")
    info, dev = init_distributed(device)
    try:
        if task is not None and info.enabled:
            raise SimganError("--shard splits a refine into job-array tasks, and torchrun into processes: use one "
                              "of the two")
        return _refine(run, input, out, batch_size, dev, precision, workers, progress and info.is_main, echo, info,
                       trust_pickle, variants, output_format(out, format), shard_size, task)
    finally:
        if info.enabled and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class _Job:
    """One refine, checked and ready: the input, the refiner, and how the work is cut into batches
    (batch ``b`` of ``n_batches`` goes to part ``b % parts``: a torchrun process's rank, or a
    job-array task)."""

    index: FolderIndex | ArrayIndex
    models: list[torch.nn.Module]  # the final refiner, then its snapshots (training.snapshots)
    channels_last: bool
    spec: ImageSpec
    precision: str
    batch_size: int
    variants: int
    dev: torch.device
    info: DistInfo
    manifest: dict
    part: int = 0
    parts: int = 1
    sequence_ids: np.ndarray | None = None  # a sequence set: each image's sequence (one noise code each)

    @property
    def n_batches(self) -> int:
        return (len(self.index) + self.batch_size - 1) // self.batch_size

    @property
    def bar_scale(self) -> int:
        """Under torchrun the bar (rank 0's) shows the whole job, guessed from rank 0's share; a
        job-array task's bar shows its own share."""
        return self.parts if self.info.enabled else 1

    def read(self, io, b: int, recs) -> Future:
        """Batch ``b``'s pixels: decoded by the file workers, or read from the arrays."""
        if isinstance(self.index, ArrayIndex):
            return _done(self.index.read_batch(b * self.batch_size, (b + 1) * self.batch_size))
        return io.decode([self.index.root / r.file for r in recs])

    def out_names(self, recs) -> list[list[str]]:
        """The output files of records ``recs``, one list per variant."""
        return [[_out_name(r.file, self.index.labelled, v if self.variants > 1 else None) for r in recs]
                for v in range(self.variants)]


def _refine(run, input, out, batch_size, dev, precision, workers, progress, echo, info: DistInfo,
            trust_pickle: bool = False, variants: int = 1, fmt: str = "png",
            shard_size: int = SHARD_IMAGES, task: tuple[int, int] | None = None) -> RefineResult:
    """Check the arguments and the input, then refine into ``OUT.partial`` and publish."""
    if batch_size is None:
        # A GPU needs large batches to be busy. On a CPU small ones keep the activations in cache.
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
    job = _open_job(run, input, dev, precision, trust_pickle, batch_size, variants, info)
    if fmt == "shards":
        job.manifest["format"] = "shards"
        job.manifest["shard_images"] = shard_images(batch_size, shard_size)
    work = _refine_shards if fmt == "shards" else _refine_batches
    if task is not None:
        job.part, job.parts = task
        job.manifest["tasks"] = job.parts
        return _refine_task(job, out, work, workers, progress, echo)
    with _open_output(out, job.manifest, info, echo) as writer:
        count, seconds = work(job, writer, workers, progress)
        if info.enabled:
            dist.barrier()
        if info.is_main:
            _publish(writer, job)
    if info.enabled:
        dist.barrier()
    total = count * (info.world_size if info.enabled else 1)
    return RefineResult(out, len(job.index), seconds, total / max(seconds, 1e-9), peak_rss_mib())


def _open_job(run, input, dev, precision, trust_pickle, batch_size, variants, info: DistInfo) -> _Job:
    """Index the input, load the refiner, and check that it refines images like the input's."""
    if sniff(input) is not None:  # the array format, HDF5, NPZ, ...: read as arrays
        index = ArrayIndex(input)
        spec = index.ds.spec
    else:
        index = FolderIndex(input, what="input")
        check_output_names(index)
        spec = spec_of(index.read(index.records(0, 1)[0]))
    first = index.records(0, 1)[0]
    model, cfg, step = load_refiner(run, dev, trust_pickle=trust_pickle)
    precision = inference_precision(precision, dev)
    # variant v: snapshot v mod K (0: the final R), each loaded as trained, then made ready
    models = [ready_for_inference(m, cfg, dev, precision) for m in load_snapshots(run, model, dev, limit=variants)]
    want = ImageSpec(cfg.image.height, cfg.image.width, cfg.image.channels, cfg.image.bit_depth)
    if spec != want:
        raise SimganError(f"the run {run} refines {want.describe()} images (preset {cfg.preset}) but {input} holds "
                          f"{spec.describe()} images ({first.file})")
    manifest = {
        "run": str(Path(run).resolve()), "refiner_step": step, "input": str(Path(input).resolve()),
        "images": len(index), "batch_size": batch_size, "world_size": info.world_size, "precision": precision,
    }
    if variants > 1:
        manifest["variants"] = variants
    if len(models) > 1:
        manifest["snapshots"] = len(models)
    ids = sequence_ids(index) if cfg.refiner.noise_channels else None
    if ids is not None:
        manifest["noise"] = "per sequence"
    return _Job(index, models, cfg.train.channels_last, spec, precision, batch_size, variants, dev, info, manifest,
                info.rank, info.world_size, ids)


def sequence_ids(index) -> np.ndarray | None:
    """Each image's ``sequence`` label when every image has integer ``sequence`` and ``frame``
    labels (a sequence set), else ``None``. Reads the labels once, only when the first image
    has them."""
    first = index.records(0, 1)[0].labels() if index.labelled else {}
    if "sequence" not in first or "frame" not in first:
        return None
    ids = np.empty(len(index), np.int64)
    for i, line in enumerate(index.iter_label_lines()):
        rec = json.loads(line)
        s, f = rec.get("sequence"), rec.get("frame")
        if not (isinstance(s, int) and isinstance(f, int)) or isinstance(s, bool) or isinstance(f, bool):
            return None  # not a sequence set after all: a code per image
        ids[i] = s
    return ids


def sequence_noise(model: torch.nn.Module, ids: np.ndarray, variant: int) -> torch.Tensor:
    """Noise codes for images of sequences ``ids``: one per sequence (and variant), drawn from a
    generator seeded by them, so every frame of a sequence gets the same code wherever it is."""
    codes = {}
    for s in np.unique(ids).tolist():
        g = torch.Generator().manual_seed((int(s) * 1009 + variant) % (2 ** 63))
        codes[s] = model.sample_noise(1, generator=g)
    return torch.cat([codes[s] for s in ids.tolist()])


def _open_output(out: Path, manifest: dict, info: DistInfo, echo) -> DatasetWriter:
    """Create or continue ``OUT.partial``: rank 0 owns and locks it (a resumable
    :class:`DatasetWriter`) and continues it only when its manifest matches this refine's;
    the other processes join it once rank 0 is done."""
    writer = None
    if info.is_main:
        writer = DatasetWriter(out, resume=True, echo=echo)
        _claim(writer, manifest, echo)
    if info.enabled:
        dist.barrier()
    return writer if writer is not None else DatasetWriter(out, resume=True, owner=False)


def _claim(writer: DatasetWriter, manifest: dict, echo, joined: str = "continuing the unfinished refine in") -> None:
    """Write this refine's manifest into a new ``OUT.partial``, or check that an existing one
    holds the same refine (else refuse, and leave it as it is; ``joined``: what to say if not)."""
    if writer.created:
        writer.write_text(MANIFEST, json.dumps(manifest, indent=1).encode())
        return
    if not _same_refine(writer.partial, manifest, missing=False):
        writer.release()
        _refuse(writer.partial)
    if echo is not None:
        echo(f"{joined} {writer.partial}")


def _same_refine(partial: Path, manifest: dict, *, missing: bool) -> bool:
    """Whether ``partial``'s manifest is ``manifest`` (``missing``: the answer without one)."""
    try:
        old = json.loads((partial / MANIFEST).read_text())
    except FileNotFoundError:
        return missing
    except (OSError, ValueError):
        return False
    return old == manifest


def _refuse(partial: Path):
    raise SimganError(f"{partial} holds an unfinished refine with other inputs or settings; remove it to start "
                      f"over (or rerun with the same --run, --input, --batch-size, --precision and process count or "
                      f"--shard N to continue it)")


def _quiet(_msg: str) -> None:
    """Job-array tasks hand ``OUT.partial``'s lock to each other: taking it over is routine."""


def _partial_lock(out: Path, patience: float = 60.0) -> DatasetWriter:
    """``OUT.partial`` locked by this job-array task (created if missing). Other tasks hold the
    lock only for moments (to join, or to publish), so a busy lock is tried again for a while."""
    from ..locks import LOCK_FILE, read_lock_info

    deadline = time.monotonic() + patience
    while True:
        try:
            return DatasetWriter(out, resume=True, echo=_quiet)
        except LockBusy:
            if time.monotonic() > deadline:
                raise
        except SimganError:  # another task created the folder at the same moment: join it
            if time.monotonic() > deadline or read_lock_info(partial_of(out) / LOCK_FILE) is None:
                raise
        time.sleep(0.1)


def _task_dir(partial: Path, k: int, n: int) -> Path:
    return partial / f".task-{k}-of-{n}"


def _refine_task(job: _Job, out: Path, work, workers: int, progress: bool, echo) -> RefineResult:
    """Task ``job.part`` of a job array of ``job.parts``: join (or create) ``OUT.partial``, refine
    this task's share under a lock of its own, mark it done, and publish if every task is."""
    if not _same_refine(partial_of(out), job.manifest, missing=True):
        _refuse(partial_of(out))  # before taking any lock: a refused task leaves the folder as it was
    writer = _partial_lock(out)
    created = writer.created
    try:
        _claim(writer, job.manifest, echo if not created else None,
               joined=f"task {job.part}/{job.parts} joins the job array's")
    finally:
        writer.release()  # the folder's lock only elects; each task holds its own below
    writer = DatasetWriter(out, resume=True, owner=False)
    tdir = _task_dir(writer.partial, job.part, job.parts)
    tdir.mkdir(exist_ok=True)
    lock = Lock(tdir, what=f"task {job.part}/{job.parts} of {writer.partial}", echo=echo).acquire()
    try:
        count, seconds = work(job, writer, workers, progress)
        atomic_write_bytes(tdir / "done", b"")
    finally:
        lock.release()
    left = _publish_if_last(out, job)
    return RefineResult(out, count, seconds, count / max(seconds, 1e-9), peak_rss_mib(), left)


def _publish_if_last(out: Path, job: _Job) -> int:
    """Publish ``OUT`` when every task of the job array is done; returns how many are not. Of two
    tasks that finish together, the one that takes the folder's lock publishes."""
    partial = partial_of(out)
    left = sum(not (_task_dir(partial, k, job.parts) / "done").is_file() for k in range(job.parts))
    if left:
        return left
    try:
        writer = DatasetWriter(out, resume=True, echo=_quiet)
    except LockBusy:
        return 0  # another task is publishing
    except SimganError:
        # another task is publishing: between removing the folder's marker and renaming it, the
        # folder looks like someone else's for a moment
        deadline = time.monotonic() + 30.0
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if out.exists():
            return 0
        raise
    with writer:
        _publish(writer, job)
    return 0


def _refine_batches(job: _Job, writer: DatasetWriter, workers: int, progress: bool) -> tuple[int, float]:
    """Refine this process's batches not done yet, in order. With file workers (a GPU), decoding
    runs ``depth`` batches ahead and encoding trails behind, so the workers stay busy while the
    model runs; without (a CPU), each batch is decoded, refined and encoded in turn in this
    thread, because there the model needs every core (docs/results/speed.md). A batch counts as done
    (:class:`_Progress`) only once all its files are written, in order. Returns (images refined,
    seconds)."""
    n, bs = len(job.index), job.batch_size
    tracker = _Progress(writer.partial, job.part, job.parts)
    done = tracker.load()
    mine = list(range(job.part, job.n_batches, job.parts))
    todo = mine[done:]
    bar = None
    if progress:
        from tqdm import tqdm
        size = [min(bs, n - b * bs) for b in mine]
        bar = tqdm(total=n if job.bar_scale > 1 else sum(size), initial=sum(size[:done]) * job.bar_scale,
                   desc="refine", unit="img", dynamic_ncols=True)
    t0 = time.perf_counter()
    count = 0
    with FileWorkers(workers, job.spec) as io:
        depth = 4 if io.workers else 0

        def start_read(b: int):
            recs = job.index.records(b * job.batch_size, (b + 1) * job.batch_size)
            dsts = [[writer.image_path(name) for name in names] for names in job.out_names(recs)]
            return b, dsts, job.read(io, b, recs)

        reads: deque = deque()
        writes: deque = deque()
        for k in range(len(todo)):
            while len(reads) <= depth and k + len(reads) < len(todo):
                reads.append(start_read(todo[k + len(reads)]))
            b, dsts, pending = reads.popleft()
            outs = _refine_batch(job, pending.result(), b)
            writes.append((len(dsts[0]), [io.encode(names, o) for names, o in zip(dsts, outs)]))
            count += len(dsts[0])
            while len(writes) > depth or (writes and k == len(todo) - 1):
                m, futs = writes.popleft()
                for fut in futs:
                    fut.result()
                done += 1
                tracker.save(done)
                if bar is not None:
                    bar.update(m * job.bar_scale)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    return count, seconds


def shard_images(batch_size: int, wanted: int = SHARD_IMAGES) -> int:
    """Input images per shard of a refine into the array format: about ``wanted``, a whole number
    of batches, so that each batch (and the noise code it is refined with) is the same as in a PNG
    refine."""
    return batch_size * max(1, round(wanted / batch_size))


def _refine_shards(job: _Job, writer: DatasetWriter, workers: int, progress: bool) -> tuple[int, float]:
    """Refine into the array format: shard ``k`` (whole batches of the input, each image's K
    variants in a row) goes to the process of rank ``k % world_size``, and is written whole by
    one rename; a shard already in ``OUT.partial`` is done (the resume granularity). With file
    workers (PNG input on a GPU) the next batches are decoded while this one is refined; array
    input is read a batch at a time, just before it is refined, since reading ahead on this
    thread would overlap nothing. Every shard is assembled in one buffer, made once: memory stays
    that of one shard and one batch, whatever the number of shards. Returns (images refined,
    seconds)."""
    n, K = len(job.index), job.variants
    per = job.manifest["shard_images"]
    shards = ShardWriter.join(writer, job.spec, n * K, per * K)
    mine = range(job.part, shards.n_shards, job.parts)
    todo = [k for k in mine if not shards.done(k)]
    bar = None
    if progress:
        from tqdm import tqdm
        total = sum(min(per, n - k * per) for k in mine)
        left = sum(min(per, n - k * per) for k in todo)
        bar = tqdm(total=n if job.bar_scale > 1 else total, initial=(total - left) * job.bar_scale, desc="refine",
                   unit="img", dynamic_ncols=True)
    t0 = time.perf_counter()
    count = 0
    batches = [b for k in todo for b in range(k * per // job.batch_size,
                                             min(job.n_batches, (k + 1) * per // job.batch_size))]
    buf = np.empty((min(per, n) * K, job.spec.height, job.spec.width, job.spec.channels), job.spec.dtype) \
        if todo else None
    with FileWorkers(workers, job.spec) as io:
        depth = 4 if io.workers else 0
        reads: deque = deque()
        nxt = 0

        def start_read(b: int) -> tuple[int, Future]:
            return b, job.read(io, b, job.index.records(b * job.batch_size, (b + 1) * job.batch_size))

        for k in todo:
            out, at = buf[:shards.rows(k)], 0
            while at < len(out):
                while len(reads) <= depth and nxt < len(batches):
                    reads.append(start_read(batches[nxt]))
                    nxt += 1
                b, pending = reads.popleft()
                variants = _refine_batch(job, pending.result(), b)
                m = variants[0].shape[0]
                for v, o in enumerate(variants):  # image i's variants in a row, as labels.jsonl lists them
                    out[at + v: at + m * K: K] = o
                at += m * K
                count += m
                if bar is not None:
                    bar.update(m * job.bar_scale)
            shards.write_shard(k, out)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    return count, seconds


def _refine_batch(job: _Job, pixels: np.ndarray, b: int) -> list[np.ndarray]:
    """R(x) for one decoded batch ``b``, once per variant; a refiner that takes noise gets it from
    a generator seeded by batch and variant, so a refine is reproducible."""
    x = to_model(pixels, job.spec.max_value, device=job.dev)
    if job.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    outs = []
    for v in range(job.variants):
        model = job.models[v % len(job.models)]
        g = torch.Generator().manual_seed(b * 1000 + v)  # R's noise code, if it takes one
        z = None
        if job.sequence_ids is not None:
            ids = job.sequence_ids[b * job.batch_size:b * job.batch_size + x.shape[0]]
            z = sequence_noise(model, ids, v).to(device=x.device, dtype=x.dtype)
        with torch.no_grad(), autocast(job.dev, job.precision):
            y = model(x, z, generator=g)
        outs.append(from_model(y.float(), job.spec.max_value))
    return outs


def _label_lines(index: FolderIndex, variants: int):
    """The output's ``labels.jsonl`` lines: the input's, byte for byte; with variants, each line
    once per variant with its ``"file"`` renamed."""
    for line in index.iter_label_lines():
        if variants == 1:
            yield line
            continue
        rec = json.loads(line)
        for v in range(variants):
            yield json.dumps({**rec, "file": _out_name(rec["file"], True, v)}).encode() if "file" in rec else line


def _publish(writer: DatasetWriter, job: _Job) -> None:
    """Rank 0, once every process is done: labels copied line for line, the provenance
    ``refine.json``, the resume bookkeeping removed, then one rename to ``OUT``."""
    if job.index.labelled:
        writer.add_lines(_label_lines(job.index, job.variants))
    if job.manifest.get("format") == "shards":
        ShardWriter.join(writer, job.spec, len(job.index) * job.variants,
                         job.manifest["shard_images"] * job.variants).write_manifest()
    provenance = dict(job.manifest, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    writer.write_text("refine.json", json.dumps(provenance, indent=1).encode())
    for f in writer.partial.glob(".progress-*.json"):
        f.unlink()
    for d in writer.partial.glob(".task-*-of-*"):  # a job array's task locks and done marks
        shutil.rmtree(d)
    (writer.partial / MANIFEST).unlink()
    writer.finish()


def refine_array(run, images: np.ndarray, *, batch_size: int = 256, device: str = "auto",
                 precision: str = "auto") -> np.ndarray:
    """Refine an in-memory ``N×H×W×C`` array (for notebooks and evaluation code)."""
    from ..runtime import resolve_device
    dev = resolve_device(device)
    model, cfg, _, precision = inference_refiner(run, dev, precision)
    max_value = (1 << (cfg.image.bit_depth or 8)) - 1
    out = np.empty_like(images)
    for s in range(0, len(images), batch_size):
        x = to_model(images[s:s + batch_size], max_value, device=dev)
        if cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        g = torch.Generator().manual_seed(s)  # R's noise code, if any: reproducible
        with torch.no_grad(), autocast(dev, precision):
            out[s:s + batch_size] = from_model(model(x, generator=g).float(), max_value)
    return out


class BatchRefiner:
    """A run's refiner as a callable on batches of arrays, for engines that hand out numpy batches:
    Ray Data's ``map_batches`` (the README's example), or any other. ``batch[column]`` (``N×H×W×C``
    or ``N×H×W`` integer pixels) comes back refined; every other column passes through unchanged,
    so labels travel with their images. A refiner that takes a noise code draws it from a
    generator seeded by the batch's first ``seed`` value when the batch has that column, else by 0.
    """

    def __init__(self, run, *, device: str = "auto", precision: str = "auto", column: str = "image"):
        from ..runtime import resolve_device

        set_threads()
        self.dev = resolve_device(device)
        self.model, self.cfg, _, self.precision = inference_refiner(run, self.dev, precision)
        self.max_value = (1 << (self.cfg.image.bit_depth or 8)) - 1
        self.column = column

    def __call__(self, batch: dict) -> dict:
        images = np.asarray(batch[self.column])
        flat = images.ndim == 3
        x = to_model(images[..., None] if flat else images, self.max_value, device=self.dev)
        if self.cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        seed = int(np.asarray(batch["seed"]).reshape(-1)[0]) if "seed" in batch and len(images) else 0
        with torch.no_grad(), autocast(self.dev, self.precision):
            y = self.model(x, generator=torch.Generator().manual_seed(seed))
        out = from_model(y.float(), self.max_value).astype(images.dtype, copy=False)
        return {**batch, self.column: out[..., 0] if flat else out}


def remove_partial(out) -> None:
    """Forget an unfinished refine of ``out`` (only an ``OUT.partial`` that simgan made)."""
    if partial_of(out).exists():
        PartialDir(out, resume=True).remove()
