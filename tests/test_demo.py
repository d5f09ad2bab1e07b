"""`simgan demo --quick` end to end, and `simgan ablate` on tiny data."""

import json

import pytest

from simgan.datasets import write_dataset


def test_demo_quick_end_to_end(cli, tmp_path):
    code, out, err = cli("demo", "--quick", "--out", tmp_path / "demo", "--seed", "1")
    assert code == 0, err[-2000:]
    report = (tmp_path / "demo" / "report.html").read_text()
    for row in ("synthetic", "refined", "target (upper bound)"):
        assert f"<td>{row}</td>" in report
    assert "data:image/png;base64," in report and "mean error (deg)" in report
    assert "two-sample test accuracy" in report and "pupil centre shift" in report
    assert "periodic ratio at D&#x27;s stride frequencies" in report and "border ratio" in report  # HTML-escaped
    m = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert set(m["gaze"]["results"]) == {"synthetic", "refined", "target (upper bound)"}
    assert m["settings"]["seed"] == 1
    # the demo's departures from the paper's R, D and psi (demo_eyes._simgan says why)
    r = m["simgan_config"]["refiner"]
    assert r["global_context"] is True and r["equalize"] is True and r["padding"] == "reflect"
    assert [layer["stride"] for layer in m["simgan_config"]["discriminator"]["layers"]] == [1, 2, 1, 1, 1]
    assert m["simgan_config"]["loss"]["feature"] == "standardized" and m["simgan_config"]["loss"]["lambda_reg"] == 0.1
    assert m["simgan_config"]["train"]["ema_decay"] == 0.9  # the last eighth of the quick demo's 80 R updates
    # the printed table, as the issue asks
    assert "Gaze error on held-out target images" in out and "refined" in out.split("Gaze error")[-1]
    # S+U learning: SimGAN's real set has no labels at all
    assert not (tmp_path / "demo" / "data" / "real_unlabelled" / "labels.jsonl").exists()


def test_demo_refuses_existing_out(cli, tmp_path):
    (tmp_path / "taken").mkdir()
    code, _, err = cli("demo", "--quick", "--out", tmp_path / "taken")
    assert code == 2 and "already exists" in err


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
    from simgan.experiments.ablation import run_ablation
    from simgan.config import resolve_config
    from simgan.evaluation import GazeTrainSettings
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
