"""Task consistency: the frozen task network, its term in R's loss, its checkpoint and its errors."""

import json

import numpy as np
import pytest
import torch

from simgan.config import resolve_config
from simgan.datasets import open_dataset, write_dataset
from simgan.errors import SimganError
from simgan.models.refiner import Refiner
from simgan.runtime import DistInfo
from simgan.training import train
from simgan.training.sampling import ImageSource
from simgan.training.task_consistency import TaskConsistency, read_labels


def tiny(tiny_config, **task):
    return resolve_config("generic", config_file=tiny_config, overrides={"task": task} if task else None)


def source_of(path):
    ds = open_dataset(path)
    return ds, ImageSource(ds.load(), ds.spec, torch.device("cpu"))


def test_the_network_learns_the_label_and_gives_x_its_own_output(tiny_sets):
    syn, _ = tiny_sets
    ds, src = source_of(syn)
    cfg = resolve_config("generic", overrides={"task": {"weight": 1.0, "label": "pupil", "steps": 150}}).task
    labels = read_labels(cfg, ds, DistInfo())
    assert labels.kind == "vector" and labels.y.shape == (48, 2)
    tc = TaskConsistency.train(labels, src, DistInfo(), steps=150, seed=0)
    assert tc.fit > 0.5  # R² on the standardised disc centres
    idx = torch.arange(8)
    assert float(tc.loss(src.batch(idx), idx)) < 1e-10  # x itself: no change of the task output
    assert float(tc.loss(src.batch(idx).flip(3), idx)) > 0.1  # mirrored discs: the centres moved
    assert not any(p.requires_grad for p in tc.net.parameters())


def test_class_labels_use_the_class_the_network_gave_x(tmp_path, tiny_sets):
    syn, _ = tiny_sets
    ds = open_dataset(syn)
    images = ds.load()
    recs = [{"side": "left" if ds.labels(i)["pupil"][0] < 12 else "right"} for i in range(len(ds))]
    ds2, src = source_of(write_dataset(tmp_path / "cls", images, recs))
    cfg = resolve_config("generic", overrides={"task": {"weight": 1.0, "label": "side"}}).task
    labels = read_labels(cfg, ds2, DistInfo())
    assert labels.kind == "class" and labels.classes == ["left", "right"]
    tc = TaskConsistency.train(labels, src, DistInfo(), steps=100, seed=0)
    assert tc.reference.dtype == torch.int64 and tc.reference.shape == (48,)
    assert "2 classes" in tc.describe("side")


def test_one_class_is_refused(tmp_path, tiny_sets):
    syn, _ = tiny_sets
    ds = open_dataset(syn)
    ds2 = open_dataset(write_dataset(tmp_path / "one", ds.load(), [{"c": 3}] * len(ds)))
    cfg = resolve_config("generic", overrides={"task": {"weight": 1.0, "label": "c"}}).task
    with pytest.raises(SimganError, match="one class"):
        read_labels(cfg, ds2, DistInfo())


def test_training_logs_the_term_and_keeps_the_network(tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    said = []
    train(tiny(tiny_config, weight=1.0, label="pupil", steps=50), syn, real, tmp_path / "run", progress=False,
          echo=said.append)
    assert any(line.startswith("task consistency: a network learnt 'pupil' (vector of 2)") for line in said)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["r_task"]) for r in rows if r["phase"] == "adversarial")
    assert not any("r_task" in r for r in rows if r["phase"] != "adversarial")
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["task"]["kind"] == "vector" and ckpt["task"]["outputs"] == 2
    off = torch.load(_run_off(tiny_sets, tiny_config, tmp_path), weights_only=True)
    assert off["task"] is None


def _run_off(tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    train(tiny(tiny_config), syn, real, tmp_path / "off", progress=False)
    return tmp_path / "off" / "checkpoints" / "last.pt"


def test_resume_with_task_consistency_is_exact(tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    on = {"weight": 1.0, "label": "pupil", "steps": 30}
    train(tiny(tiny_config, **on), syn, real, tmp_path / "straight", progress=False)
    cfg = tiny(tiny_config, **on).override({"train": {"steps": 3}})
    train(cfg, syn, real, tmp_path / "split", progress=False)
    train(tiny(tiny_config, **on), syn, real, tmp_path / "split", resume=True, progress=False)
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)
    for name in a["refiner"]:
        assert torch.equal(a["refiner"][name], b["refiner"][name]), name


def test_a_heavy_term_keeps_the_task_output(tiny_sets, tiny_config, tmp_path):
    """R trained with a large task weight changes the frozen network's output less than R trained
    without it (the same seed, data and schedule)."""
    syn, real = tiny_sets
    on = {"weight": 30.0, "label": "pupil", "steps": 150}
    train(tiny(tiny_config, **on), syn, real, tmp_path / "on", progress=False)
    train(tiny(tiny_config), syn, real, tmp_path / "off", progress=False)
    _, src = source_of(syn)
    ckpt = torch.load(tmp_path / "on" / "checkpoints" / "last.pt", weights_only=True)
    tc = TaskConsistency.from_state(ckpt["task"], src)
    cfg = tiny(tiny_config)
    idx = torch.arange(len(src))
    change = {}
    for name in ("on", "off"):
        R = Refiner(cfg.refiner, 1)
        R.load_state_dict(torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)["refiner"])
        with torch.no_grad():
            change[name] = float(tc.loss(R.eval()(src.batch(idx), generator=torch.Generator().manual_seed(0)), idx))
    assert change["on"] < 0.5 * change["off"], change


def test_appearance_jitter_changes_the_look_not_the_layout():
    from simgan.training.task_consistency import appearance_jitter

    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 2:6, 2:6] = 1.0  # a bright square on black
    y = appearance_jitter(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert torch.equal(y, appearance_jitter(x, torch.Generator().manual_seed(0)))  # reproducible
    inside, outside = y[:, :, 2:6, 2:6].mean((1, 2, 3)), y[:, :, :2, :].mean((1, 2, 3))
    flipped = inside < outside
    assert 10 < int(flipped.sum()) < 54  # polarity flips for about half of the images
    assert ((inside - outside).abs() > 0.2).all()  # the square still stands out in every one


def test_an_augmented_task_network_still_learns_the_label(tiny_sets):
    syn, _ = tiny_sets
    ds, src = source_of(syn)
    cfg = resolve_config("generic", overrides={"task": {"weight": 1.0, "label": "pupil"}}).task
    tc = TaskConsistency.train(read_labels(cfg, ds, DistInfo()), src, DistInfo(), steps=150, seed=0, augment=True)
    assert tc.fit > 0.3
