"""`simgan refine`: whole-dataset refinement, labels byte-identical, resume, flat streaming,
precision equivalence, job arrays."""

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from simgan.config import resolve_config
from simgan.datasets import ImageFolder, decode_image
from simgan.errors import SimganError
from simgan.pipelines.refine import parse_shard, refine_dataset
from simgan.training import train


@pytest.fixture
def trained(tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    cfg = resolve_config("generic", config_file=tiny_config)
    train(cfg, syn, real, tmp_path / "run", progress=False)
    return tmp_path / "run", syn


def folder_bytes(path: Path) -> dict:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
            and p.name != "refine.json"}


def test_refine_keeps_labels_byte_identical(trained, tmp_path):
    run, syn = trained
    res = refine_dataset(run, syn, tmp_path / "out", batch_size=10, progress=False)
    assert res.images == 48
    out = ImageFolder.open(tmp_path / "out", need_labels=True)
    assert (tmp_path / "out" / "labels.jsonl").read_bytes() == (syn / "labels.jsonl").read_bytes()
    src = ImageFolder.open(syn)
    assert [r.file for r in out.records] == [r.file for r in src.records]
    a, b = src.load(), out.load()
    assert a.shape == b.shape and a.dtype == b.dtype
    assert not np.array_equal(a, b)  # the refiner changed the pixels
    assert not (tmp_path / "out.partial").exists()
    prov = json.loads((tmp_path / "out" / "refine.json").read_text())
    assert prov["images"] == 48 and prov["refiner_step"] == 11


def test_interrupted_refine_resumes_to_identical_output(trained, tmp_path, monkeypatch):
    run, syn = trained
    refine_dataset(run, syn, tmp_path / "straight", batch_size=8, progress=False)

    import simgan.datasets.workers as refine_mod  # where refine's file work calls encode_png
    real_encode = refine_mod.encode_png

    def failing_encode(path, image):
        if Path(path).name == "000020.png":
            raise KeyboardInterrupt  # like a Ctrl-C in the middle of the third batch (images 16-23)
        real_encode(path, image)

    monkeypatch.setattr(refine_mod, "encode_png", failing_encode)
    with pytest.raises(KeyboardInterrupt):
        refine_dataset(run, syn, tmp_path / "resumed", batch_size=8, progress=False)
    assert not (tmp_path / "resumed").exists()  # nothing that looks complete
    partial = tmp_path / "resumed.partial"
    assert partial.exists() and not (partial / "labels.jsonl").exists()
    progress = json.loads(next(partial.glob(".progress-*.json")).read_text())
    # The two encoding threads may finish batches out of order, but a batch counts as done only
    # once it and every batch before it are written: exactly the two before the failed one.
    assert progress["batches_done"] == 2
    assert all((partial / f).exists() for f in sorted(folder_bytes(tmp_path / "straight"))[:16]
               if f.endswith(".png"))
    monkeypatch.setattr(refine_mod, "encode_png", real_encode)
    res = refine_dataset(run, syn, tmp_path / "resumed", batch_size=8, progress=False)
    assert res.images == 48
    assert folder_bytes(tmp_path / "resumed") == folder_bytes(tmp_path / "straight")


def test_partial_of_other_inputs_is_not_resumed(trained, tmp_path):
    run, syn = trained
    (tmp_path / "out.partial").mkdir()
    (tmp_path / "out.partial" / ".simgan-refine.json").write_text("{}")
    # Without simgan's marker the folder is the user's: refused, never touched.
    with pytest.raises(SimganError, match="did not create it"):
        refine_dataset(run, syn, tmp_path / "out", progress=False)
    assert (tmp_path / "out.partial" / ".simgan-refine.json").read_text() == "{}"
    # With it (a stale lock of a dead process) it is simgan's, but of other inputs: not resumed.
    (tmp_path / "out.partial" / ".simgan-lock").write_text('{"simgan": 1, "pid": 999999999, "host": "x"}')
    with pytest.raises(SimganError, match="unfinished refine with other inputs"):
        refine_dataset(run, syn, tmp_path / "out", progress=False)
    assert (tmp_path / "out.partial" / ".simgan-refine.json").read_text() == "{}"


def test_unlabelled_input_writes_png_folder(trained, tmp_path):
    run, syn = trained
    from PIL import Image
    src = tmp_path / "jpgs"
    src.mkdir()
    for i in range(3):
        Image.fromarray(decode_image(syn / f"img/{i:06d}.png")[:, :, 0]).save(src / f"{i}.bmp")
    refine_dataset(run, src, tmp_path / "out", progress=False)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["0.png", "1.png", "2.png"]
    assert not (tmp_path / "out" / "labels.jsonl").exists()


def test_bf16_refine_matches_fp32(tmp_path):
    """bf16 gives the same 8-bit pixels as fp32 on >= 99% of pixels, never more than 2 levels off,
    for the eyes preset's refiner making SimGAN-sized corrections (random weights, |R(x) - x| ~ 4 levels)."""
    from conftest import eyes_refiner_run
    run, syn, images = eyes_refiner_run(tmp_path, 24)
    refine_dataset(run, syn, tmp_path / "fp32", precision="fp32", progress=False)
    refine_dataset(run, syn, tmp_path / "bf16", precision="bf16", progress=False)
    a = ImageFolder.open(tmp_path / "fp32").load().astype(int)
    b = ImageFolder.open(tmp_path / "bf16").load().astype(int)
    assert np.abs(a - images.astype(int)).mean() > 3  # the refiner really changes the images
    diff = np.abs(a - b)
    assert (diff == 0).mean() >= 0.99, (diff == 0).mean()
    assert diff.max() <= 2


def test_memory_does_not_hold_records(trained, tmp_path):
    """Refining keeps 8 bytes per image of index, not the records themselves."""
    from simgan.datasets.stream import FolderIndex
    run, syn = trained
    idx = FolderIndex(syn)
    assert idx.offsets.dtype == np.int64 and len(idx) == 48 and idx.files is None
    recs = idx.records(10, 13)
    lines = (syn / "labels.jsonl").read_bytes().splitlines()
    assert [r.line for r in recs] == lines[10:13]


def test_peak_memory_is_the_refining_process_own():
    """The peak memory refine reports (and `simgan bench` records) is the process's own high-water
    mark: a small child of a large parent must not report the parent's size, as Linux's
    ru_maxrss does across fork and exec."""
    import subprocess
    import sys
    parent = np.ones(1024 * 2 ** 20 // 8)  # 1 GiB resident in this process
    child = subprocess.run([sys.executable, "-c", "from simgan.memory import peak_rss_mib; print(peak_rss_mib())"],
                           capture_output=True, text=True, check=True)
    assert parent.sum() > 0
    assert 10 < float(child.stdout) < 700  # importing torch: ~220 MiB


def test_worker_processes_write_the_same_files(trained, tmp_path):
    """File work in worker processes (the GPU default) gives byte-identical output to the in-process
    threads (the CPU default), and a file of the wrong size is still named in one error line."""
    from simgan.datasets import encode_png
    from simgan.errors import SimganError
    run, syn = trained
    refine_dataset(run, syn, tmp_path / "threads", batch_size=10, workers=0, progress=False)
    refine_dataset(run, syn, tmp_path / "procs", batch_size=10, workers=2, progress=False)
    assert folder_bytes(tmp_path / "threads") == folder_bytes(tmp_path / "procs")

    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(syn, bad)
    victim = sorted(bad.rglob("*.png"))[30]
    encode_png(victim, np.zeros((5, 7, 1), np.uint8))
    with pytest.raises(SimganError, match=victim.name):
        refine_dataset(run, bad, tmp_path / "bad_out", batch_size=10, workers=2, progress=False)


def test_keep_freed_memory_takes_where_glibc():
    """The allocator setting refine and training rely on for speed (memory.keep_freed_memory)
    takes on Linux with glibc, and is a no-op that says so elsewhere."""
    import platform

    from simgan.memory import keep_freed_memory
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc


def test_refine_keeps_one_allocator_arena_where_glibc():
    """Refine caps glibc at one arena before its threads start (memory.one_arena), so the freed
    blocks it keeps are one working set, not one per thread; in a fresh process, as refine runs."""
    import platform
    import subprocess
    import sys
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    out = subprocess.run([sys.executable, "-c", "from simgan.memory import one_arena; print(one_arena())"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split()[-1] == str(glibc)



def test_refine_into_the_array_format_holds_the_png_refine_pixels(trained, tmp_path):
    from simgan.datasets import open_dataset
    from simgan.datasets.shards import ShardImages

    run, syn = trained
    refine_dataset(run, syn, tmp_path / "png", batch_size=5, progress=False)
    res = refine_dataset(run, syn, tmp_path / "out.shards", batch_size=5, shard_size=12, progress=False)
    arr = open_dataset(tmp_path / "out.shards")
    assert isinstance(arr, ShardImages) and res.images == 48 and arr.shard_size == 10  # 12 -> whole batches of 5
    assert (tmp_path / "out.shards" / "labels.jsonl").read_bytes() == (syn / "labels.jsonl").read_bytes()
    assert np.array_equal(arr.load(), ImageFolder.open(tmp_path / "png").load())
    # array in, array out: the same pixels again
    refine_dataset(run, tmp_path / "out.shards", tmp_path / "twice.shards", batch_size=5, progress=False)
    refine_dataset(run, tmp_path / "png", tmp_path / "twice_png", batch_size=5, progress=False)
    assert np.array_equal(open_dataset(tmp_path / "twice.shards").load(), ImageFolder.open(tmp_path / "twice_png").load())


def test_variants_into_the_array_format(trained, tmp_path):
    from simgan.datasets import open_dataset

    run, syn = trained
    refine_dataset(run, syn, tmp_path / "png", batch_size=8, variants=2, progress=False)
    refine_dataset(run, syn, tmp_path / "v.shards", batch_size=8, variants=2, progress=False)
    png, arr = ImageFolder.open(tmp_path / "png"), open_dataset(tmp_path / "v.shards")
    assert len(arr) == 96 and np.array_equal(arr.load(), png.load())  # image i's variants in a row, as labels list them
    assert (tmp_path / "v.shards" / "labels.jsonl").read_bytes() == (tmp_path / "png" / "labels.jsonl").read_bytes()


def test_interrupted_refine_into_shards_resumes_to_identical_output(trained, tmp_path, monkeypatch):
    import simgan.pipelines.refine as refine_mod

    run, syn = trained
    refine_dataset(run, syn, tmp_path / "straight.shards", batch_size=4, shard_size=8, progress=False)
    real = refine_mod._refine_batch

    def failing(job, pixels, b):
        if b == 5:  # the third shard's second batch
            raise KeyboardInterrupt
        return real(job, pixels, b)

    monkeypatch.setattr(refine_mod, "_refine_batch", failing)
    with pytest.raises(KeyboardInterrupt):
        refine_dataset(run, syn, tmp_path / "resumed.shards", batch_size=4, shard_size=8, progress=False)
    partial = tmp_path / "resumed.shards.partial"
    assert not (tmp_path / "resumed.shards").exists()
    assert sorted(p.name for p in partial.glob("images-*.npy")) == ["images-000000.npy", "images-000001.npy"]
    monkeypatch.setattr(refine_mod, "_refine_batch", real)
    res = refine_dataset(run, syn, tmp_path / "resumed.shards", batch_size=4, shard_size=8, progress=False)
    assert res.images == 48
    assert folder_bytes(tmp_path / "resumed.shards") == folder_bytes(tmp_path / "straight.shards")


# -- job arrays: --shard I/N --------------------------------------------------------------------
# The tasks refine into one OUT.partial, in any order or at once, and together write exactly what
# one process writes.
def test_tasks_in_any_order_write_what_one_process_writes(trained, tmp_path):
    run, syn = trained
    refine_dataset(run, syn, tmp_path / "one", batch_size=5, progress=False)
    out = tmp_path / "tasks"
    lefts = [refine_dataset(run, syn, out, batch_size=5, progress=False, shard=f"{i}/3").tasks_left for i in (2, 0)]
    assert lefts == [2, 1] and not out.exists()  # nothing that looks complete before the last task
    res = refine_dataset(run, syn, out, batch_size=5, progress=False, shard=(1, 3))
    assert res.tasks_left == 0 and res.images == 15  # batches 1, 4, 7 of 10 (48 images)
    assert folder_bytes(out) == folder_bytes(tmp_path / "one")  # no task marks or locks left either
    with pytest.raises(SimganError, match="already exists"):  # a task run again after the end
        refine_dataset(run, syn, out, batch_size=5, progress=False, shard="1/3")

def test_tasks_into_the_array_format(trained, tmp_path):
    run, syn = trained
    refine_dataset(run, syn, tmp_path / "one.shards", batch_size=4, shard_size=8, progress=False)
    for i in (1, 0):
        refine_dataset(run, syn, tmp_path / "t.shards", batch_size=4, shard_size=8, progress=False, shard=(i, 2))
    assert folder_bytes(tmp_path / "t.shards") == folder_bytes(tmp_path / "one.shards")


def test_tasks_at_the_same_time_publish_once(trained, tmp_path):
    run, syn = trained
    refine_dataset(run, syn, tmp_path / "one", batch_size=4, progress=False)
    start, results, errors = threading.Barrier(3), [], []

    def task(i):
        start.wait()
        try:
            results.append(refine_dataset(run, syn, tmp_path / "out", batch_size=4, progress=False, shard=(i, 3)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=task, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sum(r.images for r in results) == 48
    assert folder_bytes(tmp_path / "out") == folder_bytes(tmp_path / "one")


def test_an_interrupted_task_resumes(trained, tmp_path, monkeypatch):
    import simgan.pipelines.refine as refine_mod

    run, syn = trained
    refine_dataset(run, syn, tmp_path / "one", batch_size=4, progress=False)
    real = refine_mod._refine_batch

    def failing(job, pixels, b):
        if b == 6:  # task 0's fourth batch
            raise KeyboardInterrupt
        return real(job, pixels, b)

    monkeypatch.setattr(refine_mod, "_refine_batch", failing)
    with pytest.raises(KeyboardInterrupt):
        refine_dataset(run, syn, tmp_path / "out", batch_size=4, progress=False, shard="0/2")
    monkeypatch.setattr(refine_mod, "_refine_batch", real)
    assert refine_dataset(run, syn, tmp_path / "out", batch_size=4, progress=False, shard="1/2").tasks_left == 1
    res = refine_dataset(run, syn, tmp_path / "out", batch_size=4, progress=False, shard="0/2")
    assert res.tasks_left == 0 and res.images == 12  # batches 6, 8, 10: the rest of task 0's
    assert folder_bytes(tmp_path / "out") == folder_bytes(tmp_path / "one")


def test_a_task_of_another_job_array_is_refused(trained, tmp_path):
    run, syn = trained
    refine_dataset(run, syn, tmp_path / "out", batch_size=4, progress=False, shard="0/2")
    before = folder_bytes(tmp_path / "out.partial")
    with pytest.raises(SimganError, match="unfinished refine with other inputs or settings"):
        refine_dataset(run, syn, tmp_path / "out", batch_size=4, progress=False, shard="1/3")
    with pytest.raises(SimganError, match="unfinished refine"):  # nor continued without --shard
        refine_dataset(run, syn, tmp_path / "out", batch_size=4, progress=False)
    assert folder_bytes(tmp_path / "out.partial") == before


def test_the_same_task_twice_at_once_is_refused(trained, tmp_path):
    from simgan.locks import Lock

    run, syn = trained
    refine_dataset(run, syn, tmp_path / "out", batch_size=4, progress=False, shard="1/2")
    (tmp_path / "out.partial" / ".task-0-of-2").mkdir()
    held = Lock(tmp_path / "out.partial" / ".task-0-of-2").acquire()  # task 0 running elsewhere
    try:
        with pytest.raises(SimganError, match="task 0/2 .* is in use"):
            refine_dataset(run, syn, tmp_path / "out", batch_size=4, progress=False, shard="0/2")
    finally:
        held.release()


@pytest.mark.parametrize("bad", ["3/3", "-1/2", "1/0", "x", "1-2", "2"])
def test_bad_shard(bad):
    with pytest.raises(SimganError, match="--shard"):
        parse_shard(bad)


def test_shard_parses():
    assert parse_shard("3/8") == (3, 8) and parse_shard((0, 1)) == (0, 1) and parse_shard(None) is None


def test_a_sequence_set_gets_one_noise_code_per_sequence(trained, tmp_path):
    from simgan.datasets import write_dataset

    run, syn = trained
    x = ImageFolder.open(syn).load()[:2]
    frames = np.concatenate([np.repeat(x[:1], 4, 0), np.repeat(x[:1], 4, 0), np.repeat(x[1:], 4, 0)])
    labels = [{"sequence": s, "frame": f} for s in range(3) for f in range(4)]
    write_dataset(tmp_path / "seq", frames, labels)
    write_dataset(tmp_path / "frames", frames, [{"n": i} for i in range(12)])
    res = refine_dataset(run, tmp_path / "seq", tmp_path / "out", batch_size=3, progress=False)
    assert res.images == 12
    y = ImageFolder.open(tmp_path / "out").load()
    # one look per sequence, across batches; two sequences of the same image get two looks
    assert all(np.array_equal(y[0], y[i]) for i in range(1, 4)) and np.array_equal(y[8], y[11])
    assert not np.array_equal(y[0], y[4])
    assert json.loads((tmp_path / "out" / "refine.json").read_text())["noise"] == "per sequence"
    # the same frames without sequence labels: a code per image, so frames of one image differ
    refine_dataset(run, tmp_path / "frames", tmp_path / "per_image", batch_size=3, progress=False)
    z = ImageFolder.open(tmp_path / "per_image").load()
    assert not all(np.array_equal(z[0], z[i]) for i in range(1, 4))
