"""Locks, concurrent runs, resume across precisions, and loading only what cannot run code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from simgan.errors import SimganError

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env():
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return env


def _wait_for_lock(path: Path, child: subprocess.Popen, timeout: float = 120.0) -> dict:
    from simgan.locks import read_lock_info
    t0 = time.time()
    while time.time() - t0 < timeout:
        info = read_lock_info(path)
        if info and info.get("pid") == child.pid:
            return info
        if child.poll() is not None:
            raise AssertionError(f"the child exited early: {child.communicate()}")
        time.sleep(0.1)
    raise AssertionError(f"no lock {path} after {timeout} s")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(syn, real, config, run): tiny sets and one trained run, shared by the tests that only read
    them (a test that resumes works on a copy)."""
    from conftest import TINY_CONFIG, make_discs

    from simgan.config import resolve_config
    from simgan.datasets import write_dataset
    from simgan.training import train
    w = tmp_path_factory.mktemp("safety")
    syn, labels = make_discs(48, seed=1)
    real, _ = make_discs(48, seed=2, real=True)
    syn_dir, real_dir = write_dataset(w / "syn", syn, labels), write_dataset(w / "real", real)
    cfg_file = w / "tiny.yaml"
    cfg_file.write_text(TINY_CONFIG)
    cfg = resolve_config(None, config_file=cfg_file, overrides={"train": {"checkpoint_every": 2}})
    train(cfg, syn_dir, real_dir, w / "run", progress=False, echo=lambda m: None)
    return syn_dir, real_dir, cfg_file, w / "run"


def _copy_run(world, dst: Path) -> Path:
    import shutil
    shutil.copytree(world[3], dst)
    return dst


def train_args(syn, real, out, cfg, *extra):
    return ["train", "--synthetic", syn, "--real", real, "--out", out, "--preset", "generic", "--config", cfg,
            "--quiet", *extra]


# ----------------------------------------------------------------------------------------------
# the lock itself


def test_lock_refuses_a_second_holder_and_takes_over_a_stale_one(tmp_path):
    from simgan.locks import LOCK_FILE, Lock

    said = []
    a = Lock(tmp_path, echo=said.append).acquire()
    with pytest.raises(SimganError, match=f"is in use by pid {os.getpid()}"):
        Lock(tmp_path).acquire()
    a.release()
    assert not (tmp_path / LOCK_FILE).exists()
    # A lock file left by a process that died (no flock held on it): taken over, and said.
    (tmp_path / LOCK_FILE).write_text(json.dumps({"simgan": 1, "pid": 999999999, "host": "elsewhere"}))
    b = Lock(tmp_path, echo=said.append).acquire()
    assert said and "took over the stale lock" in said[-1] and "999999999" in said[-1]
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    b.release()


# ----------------------------------------------------------------------------------------------
# concurrent runs (real processes)

SLOW_REFINE = """
import sys, time
import simgan.datasets.workers as r  # where refine's file work calls encode_png
encode = r.encode_png
def slow(path, image):
    time.sleep(0.25)
    encode(path, image)
r.encode_png = slow
from simgan.cli import main
main(sys.argv[1:])
"""


def test_two_refines_into_one_out_and_a_killed_one_taken_over(cli, world, tmp_path):
    syn, real, _, run = world
    out = tmp_path / "ref"
    args = ["refine", "--run", run, "--input", syn, "--out", out, "--batch-size", "4", "--workers", "0", "--quiet"]
    child = subprocess.Popen([sys.executable, "-c", SLOW_REFINE, *map(str, args)], env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_lock(tmp_path / "ref.partial" / ".simgan-lock", child)
        code, _, err = cli(*args)  # a second refine into the same --out while the first works
        assert code == 2 and err.strip() == f"simgan: error: {tmp_path / 'ref.partial'} is in use by pid " \
                                            f"{child.pid}; wait for it to finish or stop it"
    finally:
        child.kill()
        child.wait()
    assert not out.exists() and (tmp_path / "ref.partial").is_dir()  # the killed one left its work
    code, stdout, err = cli(*args)  # run again: the stale lock is taken over and the refine continues
    assert code == 0, err
    assert f"took over the stale lock of {tmp_path / 'ref.partial'} from pid {child.pid}" in err
    assert "continuing the unfinished refine" in err and "refined 48 images" in stdout
    assert (out / "labels.jsonl").read_bytes() == (syn / "labels.jsonl").read_bytes()
    assert not (tmp_path / "ref.partial").exists() and not (out / ".simgan-lock").exists()
    fresh = tmp_path / "fresh"
    assert cli("refine", "--run", run, "--input", syn, "--out", fresh, "--batch-size", "4", "--quiet")[0] == 0
    names = sorted(p.relative_to(fresh) for p in fresh.rglob("*.png"))
    assert names == sorted(p.relative_to(out) for p in out.rglob("*.png")) and len(names) == 48
    assert all((out / n).read_bytes() == (fresh / n).read_bytes() for n in names)


def test_resume_while_training_is_refused(cli, world, tmp_path):
    syn, real, tiny_config, _ = world
    run = tmp_path / "run"
    long = train_args(syn, real, run, tiny_config, "--steps", "100000", "--checkpoint-every", "100000")
    child = subprocess.Popen([sys.executable, "-m", "simgan", *map(str, long)], env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_lock(run / ".simgan-lock", child)
        code, _, err = cli(*train_args(syn, real, run, tiny_config, "--resume"))
        assert code == 2 and f"{run} is in use by pid {child.pid}" in err and len(err.strip().splitlines()) == 1
        code, _, err = cli(*train_args(syn, real, run, tiny_config))  # a second fresh training into it
        assert code == 2 and "already exists" in err
    finally:
        child.kill()
        child.wait()
    code, _, err = cli(*train_args(syn, real, run, tiny_config, "--resume", "--steps", "3",
                                   "--checkpoint-every", "100"))
    assert code == 0, err
    assert f"took over the stale lock of {run} from pid {child.pid}" in err
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 3 + 2 + 3 + 1))  # one row per step, in order: no duplicates
    assert not (run / ".simgan-lock").exists()


# ----------------------------------------------------------------------------------------------
# resume


def test_resume_across_precisions_fp32_bf16_fp32(cli, world, tmp_path):
    syn, real, tiny_config, _ = world
    run = _copy_run(world, tmp_path / "run")  # trained in fp32 to step 11
    code, _, err = cli(*train_args(syn, real, run, tiny_config, "--resume", "--precision", "bf16", "--steps", "7"))
    assert code == 0, err
    assert "resuming from step 11" in (run / "train.log").read_text()
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 12 and ckpt["config"]["train"]["precision"] == "bf16"
    code, _, err = cli(*train_args(syn, real, run, tiny_config, "--resume", "--precision", "fp32", "--steps", "8"))
    assert code == 0, err
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 13 and ckpt["config"]["train"]["precision"] == "fp32"
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 14))


def test_history_buffer_resumes_on_another_device_type():
    """A CUDA generator's state cannot be loaded into a CPU generator (or back): the buffer
    reseeds deterministically instead of crashing."""
    from simgan.training.history import ImageHistoryBuffer
    a = ImageHistoryBuffer(8, (1, 4, 4), "cpu", seed=3)
    a.push(torch.rand(6, 1, 4, 4))
    state = a.state_dict()
    state["device"] = "cuda"  # as written by a run on a GPU
    state["generator"] = torch.randint(0, 255, (16,), dtype=torch.uint8)  # a CUDA generator's (shorter) state
    b, c = ImageHistoryBuffer(8, (1, 4, 4), "cpu"), ImageHistoryBuffer(8, (1, 4, 4), "cpu")
    b.load_state_dict(state)
    c.load_state_dict(state)
    assert len(b) == 6 and torch.equal(b.sample(3), c.sample(3))


def test_resume_with_the_same_config_is_accepted_and_a_change_is_named(cli, world, tmp_path):
    syn, real, tiny_config, _ = world
    run = _copy_run(world, tmp_path / "run")
    code, _, err = cli(*train_args(syn, real, run, tiny_config, "--resume", "--steps", "7"))
    assert code == 0, err
    changed = tmp_path / "changed.yaml"
    changed.write_text(tiny_config.read_text().replace("lr: 0.02", "lr: 0.05").replace("kd: 1", "kd: 2"))
    before = (run / "config.yaml").read_bytes()
    code, _, err = cli(*train_args(syn, real, run, changed, "--resume"))
    assert code == 2 and "train.lr = 0.02, not 0.05" in err and "train.kd = 1, not 2" in err
    assert (run / "config.yaml").read_bytes() == before


def test_preset_in_the_config_file_is_honoured(cli, world, tmp_path):
    syn, real, tiny_config, _ = world
    code, _, err = cli("train", "--synthetic", syn, "--real", real, "--out", tmp_path / "run", "--config",
                       tiny_config, "--quiet", "--steps", "1")
    assert code == 0, err  # no --preset: the file's "preset: generic", not eyes (24x16 images)
    assert "preset: generic" in (tmp_path / "run" / "config.yaml").read_text()


# ----------------------------------------------------------------------------------------------
# safe loading


class Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_pickled_refiner_is_refused_without_trust_pickle_and_its_payload_never_runs(cli, world, tmp_path):
    import yaml
    syn, real, tiny_config, _ = world
    run = _copy_run(world, tmp_path / "run")
    from safetensors.torch import load_file
    weights = load_file(run / "refiner.safetensors")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    # An older run: only the pickled refiner.pt. Loads with --trust-pickle, refuses without.
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.yaml").write_text((run / "config.yaml").read_text())
    torch.save({"version": 1, "config": cfg, "step": 11, "refiner": weights}, old / "refiner.pt")
    code, _, err = cli("refine", "--run", old, "--input", syn, "--out", tmp_path / "r1", "--quiet")
    assert code == 2 and "--trust-pickle" in err and not (tmp_path / "r1").exists()
    code, _, err = cli("refine", "--run", old, "--input", syn, "--out", tmp_path / "r1", "--quiet", "--trust-pickle")
    assert code == 0, err
    # A hostile one: its payload would create tmp_path/pwned when unpickled.
    evil = tmp_path / "evil"
    evil.mkdir()
    torch.save({"version": 1, "config": cfg, "step": 11, "refiner": Payload(str(tmp_path / "pwned"))},
               evil / "refiner.pt")
    code, _, err = cli("refine", "--run", evil, "--input", syn, "--out", tmp_path / "r2", "--quiet")
    assert code == 2 and "--trust-pickle" in err and "arbitrary code" in err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "r2").exists()
    # The same payload in a checkpoint: train --resume refuses it too.
    torch.save({"version": 1, "step": 3, "x": Payload(str(tmp_path / "pwned"))}, run / "checkpoints" / "last.pt")
    code, _, err = cli(*train_args(syn, real, run, tiny_config, "--resume", "--steps", "9"))
    assert code == 2 and "--trust-pickle" in err and not (tmp_path / "pwned").exists()


def test_export_gives_a_file_refine_reads(cli, world, tmp_path):
    syn, real, tiny_config, run = world
    code, out, err = cli("export", "--run", run, "--out", tmp_path / "eyes.safetensors")
    assert code == 0, err
    from safetensors import safe_open
    with safe_open(str(tmp_path / "eyes.safetensors"), framework="pt") as fh:
        assert json.loads(fh.metadata()["simgan"])["config"]["preset"] == "generic"
    assert cli("refine", "--run", run, "--input", syn, "--out", tmp_path / "a", "--quiet")[0] == 0
    assert cli("refine", "--run", tmp_path / "eyes.safetensors", "--input", syn, "--out", tmp_path / "b",
               "--quiet")[0] == 0
    a = sorted((tmp_path / "a").rglob("*.png"))
    assert len(a) == 48 and all(p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes()
                                for p in a)


def test_never_deletes_a_user_partial_folder(cli, tmp_path):
    mine = tmp_path / "x.partial"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    code, _, err = cli("simulate", "eyes", "--n", "2", "--out", tmp_path / "x", "--quiet")
    assert code == 2 and "did not create" in err
    assert (mine / "thesis.tex").read_text() == "years of work"
    # A .partial simgan made and abandoned (its marker names a dead process) is reused.
    code, _, err = cli("simulate", "eyes", "--n", "2", "--out", tmp_path / "y", "--quiet")
    assert code == 0
    from simgan.datasets.folder import PartialDir
    d = PartialDir(tmp_path / "z")
    (d.path / "junk.png").write_bytes(b"x")
    del d  # as if the process died: the lock file stays, its flock goes
    code, _, err = cli("simulate", "eyes", "--n", "2", "--out", tmp_path / "z", "--quiet")
    assert code == 0, err and "took over the stale lock" in err
    assert not (tmp_path / "z" / "junk.png").exists() and len(list((tmp_path / "z" / "img").iterdir())) == 2


@pytest.mark.parametrize("fmt", ["png", "shards"])
def test_a_full_disk_during_refine_is_one_line_and_the_rerun_continues(cli, world, tmp_path, monkeypatch, fmt):
    import errno

    import numpy as np

    import simgan.datasets.shards as shards_mod
    import simgan.datasets.workers as workers_mod
    syn, _, _, run = world
    out = tmp_path / ("ref.shards" if fmt == "shards" else "ref")
    calls = {"n": 0}

    def full(path, *rest, **kw):
        calls["n"] += 1
        if calls["n"] > 1:  # the first batch or shard gets written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *rest, **kw)

    if fmt == "png":
        real = workers_mod.encode_png
        monkeypatch.setattr(workers_mod, "encode_png", full)
    else:
        real = shards_mod.np.save
        monkeypatch.setattr(shards_mod.np, "save", full)
    args = ["refine", "--run", run, "--input", syn, "--out", out, "--batch-size", "4", "--shard-size", "4", "--quiet"]
    code, _, err = cli(*args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("simgan: error: cannot write ")
    assert "no space left on the device" in lines[0] and "OUT.partial" in lines[0]
    assert not out.exists() and out.with_name(out.name + ".partial").is_dir()  # kept for the rerun
    monkeypatch.undo()
    code, stdout, err = cli(*args)
    assert code == 0 and "continuing the unfinished refine" in err, err
    fresh = tmp_path / ("fresh.shards" if fmt == "shards" else "fresh")
    assert cli(*_swap(args, out, fresh))[0] == 0
    from simgan.datasets import open_dataset
    assert np.array_equal(open_dataset(out).load(), open_dataset(fresh).load())


def _swap(args, old, new):
    return [new if a == old else a for a in args]


def test_a_read_only_output_is_one_line(cli, world, tmp_path, monkeypatch):
    import errno

    import simgan.datasets.folder as folder_mod
    syn = world[0]

    def read_only(*a, **kw):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / ".conv.partial.new1"))

    monkeypatch.setattr(folder_mod.Path, "mkdir", read_only)
    code, _, err = cli("convert", syn, "--out", tmp_path / "conv.shards")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "the file system is read-only" in lines[0]
