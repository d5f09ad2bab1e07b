"""RUN/tb/: the metrics, sample grids and config of a run, read back with TensorBoard's own reader."""

import json

import pytest

from simgan.config import resolve_config
from simgan.training import train

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

pytest.importorskip("tensorboard")


def events(run):
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_five_step_run_writes_every_metric(tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    cfg = resolve_config("generic", config_file=tiny_config,
                         overrides={"train": {"refiner_pretrain": 1, "disc_pretrain": 1, "steps": 3,
                                              "log_every": 1, "sample_every": 2}})
    run = tmp_path / "run"
    train(cfg, syn, real, run, progress=False)  # tensorboard installed: on by default
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 5
    acc = events(run)
    tags = acc.Tags()
    by_tag = {t: {e.step: e.value for e in acc.Scalars(t)} for t in tags["scalars"]}
    # every value of metrics.jsonl is there, at its step
    for key, tag in (("d_loss", "loss/d"), ("d_acc_real", "accuracy/d_real"), ("r_loss_reg", "loss/r_self_regularisation"),
                     ("r_loss_real", "loss/r_realism"), ("mean_abs_diff", "refinement/mean_abs_change")):
        want = {r["step"]: r[key] for r in rows if key in r}
        assert want and by_tag[tag].keys() == want.keys()
        for step, v in want.items():
            assert by_tag[tag][step] == pytest.approx(v, rel=1e-6)
    assert [e.step for e in acc.Images("samples")] == [2, 4, 5, 5]
    assert "config" in "".join(tags["tensors"])


def test_no_tensorboard_and_missing_package(tiny_sets, tiny_config, tmp_path, monkeypatch, cli):
    syn, real = tiny_sets
    cfg = resolve_config("generic", config_file=tiny_config, overrides={"train": {"steps": 1}})
    train(cfg, syn, real, tmp_path / "off", progress=False, tensorboard=False)
    assert not (tmp_path / "off" / "tb").exists()
    from simgan.training import tensorboard
    monkeypatch.setattr(tensorboard, "available", lambda: False)
    code, _, err = cli("train", "--synthetic", syn, "--real", real, "--out", tmp_path / "r", "--config", tiny_config,
                       "--tensorboard", "--quiet")
    assert code == 2 and err.strip().splitlines()[-1] == ("simgan: error: --tensorboard needs the tensorboard package: "
                                         "pip install 'simgan[tensorboard]'")
    assert not (tmp_path / "r").exists()

