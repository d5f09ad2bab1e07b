"""PyTorch DDP under torchrun, on CPU with the gloo backend and 2 processes: training (each
rank its own shard and buffer, rank 0 writes the run) and sharded refining (identical output)."""

import json
import os
import subprocess

import torch
from conftest import torchrun_cmd


def run_torchrun(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run(torchrun_cmd(2) + ["-m", "simgan", "--", *map(str, args)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_ddp_training_two_processes(tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    run_torchrun(["train", "--synthetic", syn, "--real", real, "--out", tmp_path / "run", "--preset", "generic",
                  "--config", tiny_config, "--quiet"], tmp_path)
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 12))  # one row per step: only rank 0 writes
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["ranks"]) == 2
    b0, b1 = (r["buffer"]["images"] for r in ckpt["ranks"])
    assert b0.shape == b1.shape and not torch.equal(b0, b1)  # each rank keeps its own history
    assert ckpt["ranks"][0]["syn_sampler"]["n"] == 24  # each rank trains on half of the 48 images
    assert (run / "refiner.safetensors").exists() and any((run / "samples").glob("step_*.png"))


def test_sharded_refine_equals_single_process(tiny_sets, tiny_config, tmp_path):
    from simgan.config import resolve_config
    from simgan.pipelines.refine import refine_dataset
    from simgan.training import train
    syn, real = tiny_sets
    train(resolve_config("generic", config_file=tiny_config), syn, real, tmp_path / "run", progress=False)
    refine_dataset(tmp_path / "run", syn, tmp_path / "single", batch_size=5, progress=False)
    run_torchrun(["refine", "--run", tmp_path / "run", "--input", syn, "--out", tmp_path / "sharded",
                  "--batch-size", "5", "--quiet"], tmp_path)
    files = lambda p: {f.relative_to(p).as_posix(): f.read_bytes() for f in sorted(p.rglob("*"))
                       if f.is_file() and f.name != "refine.json"}
    single, sharded = files(tmp_path / "single"), files(tmp_path / "sharded")
    assert len(single) == 49 and single == sharded
    assert not (tmp_path / "sharded.partial").exists()



def test_two_process_refine_into_shards_equals_single_process(tiny_sets, tiny_config, tmp_path):
    from simgan.config import resolve_config
    from simgan.pipelines.refine import refine_dataset
    from simgan.training import train
    syn, real = tiny_sets
    train(resolve_config("generic", config_file=tiny_config), syn, real, tmp_path / "run", progress=False)
    refine_dataset(tmp_path / "run", syn, tmp_path / "single.shards", batch_size=5, shard_size=10, progress=False)
    run_torchrun(["refine", "--run", tmp_path / "run", "--input", syn, "--out", tmp_path / "two.shards",
                  "--batch-size", "5", "--shard-size", "10", "--quiet"], tmp_path)
    files = lambda p: {f.relative_to(p).as_posix(): f.read_bytes() for f in sorted(p.rglob("*"))
                       if f.is_file() and f.name != "refine.json"}
    single, two = files(tmp_path / "single.shards"), files(tmp_path / "two.shards")
    assert len(single) == 5 + 2 and single == two  # 5 shards, labels.jsonl, shards.json
