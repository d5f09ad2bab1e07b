"""`simgan ablate` on tiny data."""

import json

import pytest

from simgan.datasets import write_dataset


def test_ablate_tiny(cli, tmp_path):
    from toy_eyes import render
    syn, labels = render(96, seed=1, noise=0.0)
    real, _ = render(96, seed=2, noise=12.0)
    test, test_labels = render(48, seed=3, noise=12.0)
    write_dataset(tmp_path / "syn", syn, labels)
    write_dataset(tmp_path / "real", real)
    write_dataset(tmp_path / "test", test, test_labels)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("refiner: {width: 8, num_blocks: 1}\n"
                   "train: {disc_pretrain: 2, steps: 3, kg: 1, batch_size: 8, buffer_size: 16, lr: 0.003,"
                   " sample_every: 1000}\n")
    from simgan.config import resolve_config
    from simgan.evaluation import GazeTrainSettings
    from simgan.experiments.ablation import run_ablation
    m = run_ablation(tmp_path / "syn", tmp_path / "real", tmp_path / "test", tmp_path / "abl",
                     base=resolve_config("eyes", config_file=cfg), variants=["full", "no-history", "lambda-x10"],
                     gaze_settings=GazeTrainSettings(batch_size=16, max_epochs=1, eval_every_images=64),
                     realism_images=48, echo=lambda m: None)
    assert [r["variant"] for r in m["rows"]] == ["synthetic", "full", "no-history", "lambda-x10"]
    assert m["base_config"]["loss"]["lambda_reg"] == pytest.approx(0.1)
    runs = {v: json.loads(json.dumps(__import__("yaml").safe_load((tmp_path / "abl" / v / "run" / "config.yaml").read_text())))
            for v in ("full", "no-history", "lambda-x10")}
    assert runs["no-history"]["train"]["history"] is False
    assert runs["lambda-x10"]["loss"]["lambda_reg"] == pytest.approx(1.0)
    assert (tmp_path / "abl" / "full" / "samples.png").exists()
    table = (tmp_path / "abl" / "table.md").read_text()
    assert "| no-history |" in table and "gaze mean error" in table


def test_ablate_unknown_variant(cli, tmp_path, tiny_sets):
    syn, real = tiny_sets
    code, _, err = cli("ablate", "--synthetic", syn, "--real", real, "--test", syn, "--out", tmp_path / "a",
                       "--variants", "full,bogus")
    assert code == 2 and "unknown ablation variant 'bogus'" in err
    assert not (tmp_path / "a").exists()

