"""`simgan demo --quick` end to end on tiny settings, and `simgan train --preset eyes-demo` training what the demo trains."""

import json
from dataclasses import replace

import torch


def test_demo_quick_end_to_end(cli, tmp_path, monkeypatch):
    """The quick demo's pipeline and report, on fewer images and rounds (`make demo-quick` runs it
    whole)."""
    from simgan.experiments.demo_eyes import DEMO_SETTINGS

    quick = DEMO_SETTINGS["quick"]
    train = dict(quick.simgan["train"], disc_pretrain=3, steps=4, sample_every=4, checkpoint_every=4, batch_size=8,
                 buffer_size=16)
    monkeypatch.setitem(DEMO_SETTINGS, "quick", replace(
        quick, n_synthetic=160, n_real=160, n_target_train=160, n_test=64, realism_images=64, preservation_images=32,
        simgan={"train": train}))
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
    # the demo's departures from the paper's R, D and psi (presets/eyes-demo.yaml says why)
    r = m["simgan_config"]["refiner"]
    assert r["global_context"] is True and r["equalize"] is True and r["padding"] == "reflect"
    assert [layer["stride"] for layer in m["simgan_config"]["discriminator"]["layers"]] == [1, 2, 1, 1, 1]
    assert m["simgan_config"]["loss"]["feature"] == "standardized" and m["simgan_config"]["loss"]["lambda_reg"] == 0.1
    assert m["simgan_config"]["train"]["ema_decay"] == 0.9  # the quick demo's running average
    # the printed table
    assert "Gaze error on held-out target images" in out and "refined" in out.split("Gaze error")[-1]
    # S+U learning: SimGAN's real set has no labels at all
    assert not (tmp_path / "demo" / "data" / "real_unlabelled" / "labels.jsonl").exists()


def test_demo_refuses_existing_out(cli, tmp_path):
    (tmp_path / "taken").mkdir()
    code, _, err = cli("demo", "--quick", "--out", tmp_path / "taken")
    assert code == 2 and "already exists" in err



def test_train_preset_eyes_demo_trains_what_the_demo_trains(cli, tmp_path):
    """`simgan train --preset eyes-demo` and the demo's own training step give the same R and D,
    weight for weight, after a tiny run (both shortened the same way)."""
    from simgan.experiments.demo_eyes import DEMO_SETTINGS, simgan_config
    from simgan.simulators.eyes import simulate_eyes
    from simgan.training import train

    syn, real = tmp_path / "syn", tmp_path / "real"
    simulate_eyes(syn, 24, seed=1, domain="synthetic", progress=False)
    simulate_eyes(real, 24, seed=2, domain="target", progress=False)
    short = {"disc_pretrain": 2, "steps": 2, "batch_size": 8, "buffer_size": 16, "sample_every": 2,
             "checkpoint_every": 2, "log_every": 1}
    demo = replace(DEMO_SETTINGS["default"], simgan={"train": short})
    train(simgan_config(demo, seed=3, device="cpu"), syn, real, tmp_path / "demo_way", progress=False,
          echo=lambda m: None)
    sets = [a for k, v in short.items() for a in ("--set", f"train.{k}={v}")]
    code, _, err = cli("train", "--synthetic", syn, "--real", real, "--out", tmp_path / "cli_way", "--preset",
                       "eyes-demo", "--seed", "3", "--device", "cpu", "--quiet", *sets)
    assert code == 0, err[-2000:]
    a, b = (torch.load(tmp_path / w / "checkpoints" / "last.pt", weights_only=True) for w in ("demo_way", "cli_way"))
    assert a["config"] == b["config"] and a["config"]["preset"] == "eyes-demo"
    for net in ("refiner", "refiner_ema", "discriminator"):
        assert a[net].keys() == b[net].keys()
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net
