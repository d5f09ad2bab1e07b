"""Algorithm 1 end to end on tiny images: the run directory, exact resume, health warnings."""

import json
import re

import pytest
import torch
import yaml

from simgan.config import resolve_config
from simgan.training import train


def tiny(tiny_config, **train):
    return resolve_config("generic", config_file=tiny_config, overrides={"train": train} if train else None)


def adversarial_rows(n, **values):
    return [{"step": i + 1, "phase": "adversarial", "kg": 2, **values} for i in range(n)]


def test_run_directory_contents(tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    res = train(tiny(tiny_config), syn, real, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert res.step == 3 + 2 + 6
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["preset"] == "generic" and cfg["image"] == {"height": 16, "width": 24, "channels": 1, "bit_depth": 8}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 12))
    assert [r["phase"] for r in rows] == ["refiner-pretrain"] * 3 + ["disc-pretrain"] * 2 + ["adversarial"] * 6
    adv = rows[-1]
    for key in ("d_loss", "d_acc_real", "d_acc_refined", "r_loss_real", "r_loss_reg", "mean_abs_diff", "lr",
                "images_per_s"):
        assert isinstance(adv[key], float), key
    assert "r_loss_real" not in rows[0] and "d_loss" not in rows[0]
    assert (run / "samples" / "step_0000011.png").exists() and (run / "samples" / "loss_curves.png").exists()
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)  # plain data: no pickle needed
    assert ckpt["step"] == 11 and ckpt["ranks"][0]["buffer"]["size"] == 16
    assert (run / "refiner.safetensors").exists() and (run / "refiner.json").exists()
    assert not (run / "refiner.pt").exists() and not (run / ".simgan-lock").exists()  # lock gone when done


def test_resume_is_exact(tiny_sets, tiny_config, tmp_path):
    """N steps straight give the same weights as N/2, then --resume, then N/2 more."""
    syn, real = tiny_sets
    extra = {"ema_decay": 0.9}
    train(tiny(tiny_config, **extra), syn, real, tmp_path / "straight", progress=False)
    train(tiny(tiny_config, steps=3, **extra), syn, real, tmp_path / "split", progress=False)
    res = train(tiny(tiny_config, **extra), syn, real, tmp_path / "split", resume=True, progress=False)
    assert res.step == 11
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)
    for key in ("refiner", "refiner_ema", "discriminator"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"
    assert torch.equal(a["ranks"][0]["buffer"]["images"], b["ranks"][0]["buffer"]["images"])
    rows_a = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    rows_b = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    strip = lambda rows: [{k: v for k, v in json.loads(r).items() if k != "images_per_s"} for r in rows]
    assert strip(rows_a) == strip(rows_b)


def test_resume_keeps_settings(tiny_sets, tiny_config, tmp_path):
    from simgan.errors import SimganError
    syn, real = tiny_sets
    train(tiny(tiny_config, steps=1), syn, real, tmp_path / "run", progress=False)
    changed = tiny(tiny_config, lr=0.5)
    with pytest.raises(SimganError, match="train.lr"):
        train(changed, syn, real, tmp_path / "run", resume=True, progress=False)


def test_no_history_global_disc_and_feature_psi_run(tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    cfg = tiny(tiny_config, history=False).override({"discriminator": {"kind": "global"},
                                                     "loss": {"feature": "features"}})
    res = train(cfg, syn, real, tmp_path / "run", progress=False)
    assert res.step == 11
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["ranks"][0]["buffer"] is None


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_sets, tiny_config, tmp_path, monkeypatch):
    from simgan.models import losses
    from simgan.training import TrainingDiverged
    syn, real = tiny_sets
    # The first adversarial step (step 6) produces a NaN realism loss.
    monkeypatch.setattr(losses, "realism_loss", lambda logits, **kw: torch.tensor(float("nan")))
    cfg = tiny(tiny_config, checkpoint_every=2, log_every=1)
    with pytest.raises(TrainingDiverged, match="NaN or infinite"):
        train(cfg, syn, real, tmp_path / "run", progress=False)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["refiner"].values() if v.is_floating_point())


def test_health_monitor_identity_and_d_wins(tiny_config):
    from simgan.training import HealthMonitor
    cfg = tiny(tiny_config)
    said = []
    mon = HealthMonitor(cfg, 255, patience=10)
    mon.check(adversarial_rows(9, mean_abs_diff=0.001, d_acc_real=1.0, d_acc_refined=1.0), said.append)
    assert said == []
    mon.check(adversarial_rows(1, mean_abs_diff=0.001, d_acc_real=1.0, d_acc_refined=1.0), said.append)
    assert any("practically identical" in m for m in said) and any("R cannot fool it" in m for m in said)
    mon.check(adversarial_rows(30, mean_abs_diff=0.001, d_acc_real=1.0, d_acc_refined=1.0), said.append)
    assert len(said) == 2  # each warning once
    healthy = HealthMonitor(cfg, 255, patience=10)
    healthy.check(adversarial_rows(50, mean_abs_diff=0.05, d_acc_real=0.7, d_acc_refined=0.6), said.append)
    assert len(said) == 2


def test_kg_policy_raises_kg_only_while_d_wins(tiny_config):
    from simgan.training import KgPolicy
    said = []
    fixed = KgPolicy(tiny(tiny_config, adaptive_kg=False, kg=2, kg_max=5))
    assert fixed.update(adversarial_rows(5, d_acc_real=1.0, d_acc_refined=1.0), 2, said.append) == 2
    policy = KgPolicy(tiny(tiny_config, adaptive_kg=True, kg=2, kg_max=3))
    assert policy.update(adversarial_rows(5, d_acc_real=1.0, d_acc_refined=0.9), 2, said.append) == 2  # not easily
    assert policy.update(adversarial_rows(5, d_acc_real=1.0, d_acc_refined=0.96), 2, said.append) == 3
    assert policy.update(adversarial_rows(5, d_acc_real=1.0, d_acc_refined=1.0), 3, said.append) == 3  # kg_max
    assert said == ["adaptive K_g: D wins easily (accuracy real 1.00, refined 0.96); K_g raised to 3"]


def test_health_monitor_nan_raises(tiny_config):
    from simgan.training import HealthMonitor, TrainingDiverged
    mon = HealthMonitor(tiny(tiny_config), 255)
    with pytest.raises(TrainingDiverged, match="step 3"):
        mon.check([{"step": 3, "phase": "adversarial", "kg": 1, "d_loss": float("inf")}], print)


def test_warnings_and_adaptive_kg_in_a_run(tiny_sets, tiny_config, tmp_path):
    """R pinned by a huge lambda, D free: D wins every patch; adaptive K_g raises K_g."""
    syn, real = tiny_sets
    messages = []
    cfg = tiny(tiny_config, steps=12, lr=3e-3, disc_pretrain=40, kd=2, adaptive_kg=True, kg=1, kg_max=3,
               health_patience=4).override(
        {"loss": {"lambda_reg": 1e4}})
    train(cfg, syn, real, tmp_path / "run", progress=False, echo=messages.append)
    assert any("R cannot fool it" in m for m in messages)
    assert any("K_g raised to 2" in m for m in messages)
    assert "R cannot fool it" in (tmp_path / "run" / "train.log").read_text()
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["kg"] > 1
    # the plain verdict of a run that changes nothing, at the end and in RUN/summary.json
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["changed"] is False and summary["fooled"] is False
    assert re.fullmatch(r"R changed images by 0\.00\d on average \(in \[-1, 1\]\) and never fooled D \(accuracy \d+%\): "
                        r"raise --kg \(now [23]\) or lower --lambda-reg \(now 10000\)\.( .*)?", summary["verdict"])
    # R changed nothing: if the refined discs crowd into a few looks, so did the synthetic ones
    looks = summary["looks"]
    assert looks["synthetic"]["neighbour_ratio"] == pytest.approx(looks["neighbour_ratio"], abs=0.05)
    if looks["collapsed"]:
        assert "R did not give them the real images' variety" in summary["verdict"]
    assert messages[-1] == "verdict: " + summary["verdict"]


def test_public_api_names_exist():
    """The functions the package docstring and the README document are reachable from `simgan`."""
    import simgan
    from simgan.pipelines.refine import refine_dataset
    from simgan.training import train
    assert simgan.train is train and simgan.refine_dataset is refine_dataset
    assert callable(simgan.evaluate_gaze) and callable(simgan.evaluate_realism)
    assert callable(simgan.evaluate_preservation) and callable(simgan.refine_array) and callable(simgan.evaluate_task)
    assert {"train", "refine_dataset", "evaluate_task", "resolve_config"} <= set(dir(simgan))

