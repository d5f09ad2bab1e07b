"""`simgan demo digits` on tiny settings, and its bad input."""

import json


def test_demo_digits_tiny(tmp_path):
    from simgan.experiments.demo_digits import DigitsDemoSettings, run_digits_demo
    settings = DigitsDemoSettings(simgan={"train": {"disc_pretrain": 2, "steps": 3, "batch_size": 8, "buffer_size": 16,
                                                    "sample_every": 100, "checkpoint_every": 100}},
                                  classifier_steps=5, limit=60, c2st_images=40, c2st={"max_steps": 5})
    m = run_digits_demo(tmp_path / "d", seed=1, device="cpu", settings=settings, echo=lambda s: None,
                        config_overrides={"refiner": {"width": 4, "num_blocks": 1}})
    saved = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert set(saved["accuracy"]) == {"synthetic", "refined", "real"} and set(saved["c2st"]) == {"synthetic", "refined"}
    a = saved["accuracy"]
    if a["real"] != a["synthetic"]:
        assert saved["gap_closed"] == (a["refined"] - a["synthetic"]) / (a["real"] - a["synthetic"])
    assert saved["seconds"] > 0 and saved["verdict"] and m["settings"]["seed"] == 1
    report = (tmp_path / "d" / "report.html").read_text()
    assert "data:image/png;base64," in report and "Gap closed" in report and "border ratio" in report
    assert saved["artifacts"]["stride"] == 4
    # S+U learning: SimGAN's real set has no labels
    assert not (tmp_path / "d" / "data" / "real_unlabelled" / "labels.jsonl").exists()


def test_demo_digits_refuses_existing_out(cli, tmp_path):
    (tmp_path / "taken").mkdir()
    code, _, err = cli("demo", "digits", "--quick", "--out", tmp_path / "taken")
    assert code == 2 and err.strip() == f"simgan: error: --out {tmp_path / 'taken'} already exists; choose a new folder"

