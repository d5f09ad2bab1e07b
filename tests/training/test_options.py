"""Training with the options on: every option in one run, DiffAugment, the verdict, the snapshot schedule, the generic
preset's defaults."""

import json

import pytest
import torch

from simgan.config import (
    resolve_config,
)
from simgan.errors import SimganError
from simgan.training import balance_line, effective_lambda, train, verdict
from simgan.training.augment import diff_augment


def logits_real_score(r: torch.Tensor) -> torch.Tensor:
    """Logits (N,2,h,w) whose realness logit_real - logit_refined is r."""
    return torch.stack([r, torch.zeros_like(r)], dim=1)


def test_diff_augment_shapes_and_gradient():
    x = (torch.rand(4, 3, 16, 12) * 2 - 1).requires_grad_(True)
    for policy in ("color", "translation", "cutout", "color,translation,cutout"):
        y = diff_augment(x, policy)
        assert y.shape == x.shape
        y.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        x.grad = None
    cut = diff_augment(torch.ones(8, 1, 16, 16), "cutout")
    assert ((cut == 0).flatten(1).sum(1) > 0).all()  # a square is zeroed in every image
    with pytest.raises(SimganError, match="diff_augment"):
        resolve_config("generic", overrides={"train": {"diff_augment": "colour"}})


def test_effective_lambda_and_balance_line():
    cfg = resolve_config("generic", overrides={"loss": {"lambda_reg": 1.0}})  # lambda 1 as a mean
    lam_mean, lam_sum = effective_lambda(cfg, patches=9, elements=1728)
    assert lam_mean == 1.0 and lam_sum == pytest.approx(9 / 1728)
    eyes = resolve_config("eyes")  # lambda 0.1 summed: 0.1 * 1925 / 36 per patch vs per pixel
    assert effective_lambda(eyes, 36, 1925)[0] == pytest.approx(0.1 * 1925 / 36)
    line = balance_line(cfg, 9, 1728)
    assert line.startswith("balance: lambda 1 with means over 9 patches and 1728 feature elements")


def test_verdict_on_a_run_that_changes_nothing():
    rows = [{"phase": "adversarial", "mean_abs_diff": 0.019, "d_acc_real": 0.97, "d_acc_refined": 0.99}] * 8
    cfg = resolve_config("generic", overrides={"train": {"kg": 2}, "loss": {"lambda_reg": 0.1}})
    v = verdict(rows, cfg)
    assert v["changed"] is False and v["fooled"] is False
    assert v["verdict"] == ("R changed images by 0.019 on average (in [-1, 1]) and never fooled D (accuracy 98%): "
                            "raise --kg (now 2) or lower --lambda-reg (now 0.1).")
    ok = [{"phase": "adversarial", "mean_abs_diff": 0.2, "d_acc_real": 0.6, "d_acc_refined": 0.4}] * 4
    assert verdict(ok, cfg)["verdict"].endswith("refinement is working; look at the sample grids for artifacts.")
    rare = rows[:7] + [{"phase": "adversarial", "mean_abs_diff": 0.3, "d_acc_real": 0.9, "d_acc_refined": 0.4}] \
        + [{"phase": "adversarial", "mean_abs_diff": 0.3, "d_acc_real": 0.9, "d_acc_refined": 0.9}] * 12
    v = verdict(rare, cfg)  # fooled once in 20 rounds: D still wins
    assert v["fooled"] is False and "fooled D in 1 of 20 logged rounds" in v["verdict"] and "D still wins" in v["verdict"]


def test_verdict_never_suggests_what_the_run_already_has():
    """R moves but D wins: the advice names noise and DiffAugment only when the run lacks them."""
    rows = [{"phase": "adversarial", "mean_abs_diff": 0.3, "d_acc_real": 0.99, "d_acc_refined": 0.99}] * 8
    generic = resolve_config("generic", overrides={"train": {"kg": 2}})  # 8 noise channels, no DiffAugment
    advice = verdict(rows, generic)["verdict"].split(": ", 1)[1]
    assert advice == ("R moves but D still wins: train longer, raise --kg (now 2) or give D fewer chances to "
                      "memorise (train.diff_augment).")
    eyes = resolve_config("eyes", overrides={"train": {"kg": 2}})  # no noise
    assert "give R noise (refiner.noise_channels)" in verdict(rows, eyes)["verdict"]
    both = resolve_config("generic", overrides={"train": {"kg": 2, "diff_augment": "translation"}})
    assert verdict(rows, both)["verdict"].endswith("R moves but D still wins: train longer or raise --kg (now 2).")


def test_training_with_every_option_writes_summary(tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    cfg = resolve_config("generic", config_file=tiny_config, overrides={
        "discriminator": {"spectral_norm": True, "antialias": True},
        "refiner": {"padding": "reflect", "noise_channels": 2, "global_context": True, "equalize": True},
        "loss": {"adversarial": "hinge", "r1_gamma": 1.0, "diversity": 1.0, "feature": "standardized"},
        "train": {"diff_augment": "color,translation,cutout", "ema_decay": 0.5, "adaptive_kg": True}})
    res = train(cfg, syn, real, tmp_path / "run", progress=False, echo=lambda m: None)
    summary = json.loads((res.run / "summary.json").read_text())
    assert summary["step"] == res.step and summary["verdict"].startswith("R changed images by")
    log = (res.run / "train.log").read_text()
    assert "balance: lambda 0.01 with means over" in log and "verdict: R changed images" in log


def test_generic_defaults_take_noise_and_eyes_stay_the_paper():
    g = resolve_config("generic")
    assert (g.refiner.noise_channels, g.loss.diversity, g.loss.lambda_reg, g.train.snapshots) == (8, 1.0, 0.3, 4)
    for name in ("eyes", "hands"):
        p = resolve_config(name)
        assert p.refiner.noise_channels == 0 and p.loss.diversity == 0.0 and p.loss.reduction == "sum"


def test_snapshot_steps_by_hand():
    """K snapshots evenly spaced over the last span of the adversarial steps, newest first; the
    final step is the run's refiner.safetensors, not a snapshot."""
    from simgan.config import TrainConfig
    from simgan.training.snapshots import snapshot_steps
    t = TrainConfig(disc_pretrain=50, steps=150, snapshots=4, snapshot_span=0.5)
    assert snapshot_steps(t) == [175, 150, 125]  # rounds 125, 100, 75 of 150, after 50 D steps
    assert snapshot_steps(TrainConfig(steps=150, snapshots=1)) == [] == snapshot_steps(TrainConfig(steps=150))
    assert snapshot_steps(TrainConfig(refiner_pretrain=3, disc_pretrain=2, steps=6, snapshots=3, snapshot_span=1.0)) == [8]  # round 0 is no snapshot
    for bad in ({"snapshots": -1}, {"snapshot_span": 0.0}, {"snapshot_span": 1.5}):
        with pytest.raises(SimganError, match="snapshot"):
            resolve_config("generic", overrides={"train": bad})



def test_the_remaining_options_train(tiny_sets, tiny_config, tmp_path):
    """The paper's tanh output with R pretraining, D with 'same' padding and no batch norm, SGD with
    momentum, a learning rate of D's own, the NCHW layout: a run with all of them trains and
    resumes to the same step count."""
    syn, real = tiny_sets
    cfg = resolve_config("generic", config_file=tiny_config, overrides={
        "refiner": {"residual": False, "norm": "batch"}, "discriminator": {"padding": "same", "norm": "none"},
        "train": {"optimizer": "sgd", "momentum": 0.5, "lr_disc": 0.005, "channels_last": False,
                  "refiner_pretrain": 3, "steps": 4}})
    res = train(cfg, syn, real, tmp_path / "run", progress=False, echo=lambda m: None)
    rows = [json.loads(line) for line in (res.run / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows][:1] == ["refiner-pretrain"] and res.step == 3 + 2 + 4
    assert {r["lr"] for r in rows if r["phase"] == "disc-pretrain"} == {0.005}
    assert {r["lr"] for r in rows if r["phase"] == "adversarial"} == {cfg.train.lr}
    ckpt = torch.load(res.run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["opt_refiner"]["param_groups"][0]["momentum"] == 0.5


def test_compile_wraps_both_networks(tiny_sets, tiny_config, tmp_path, monkeypatch):
    """train.compile hands R (in its training view) and D to torch.compile (compiling itself is
    PyTorch's; on a CPU it needs a C compiler and minutes, so it is recorded here, not run)."""
    from simgan.training import Trainer

    seen = []
    monkeypatch.setattr(torch, "compile", lambda module: seen.append(type(module).__name__) or module)
    cfg = resolve_config("generic", config_file=tiny_config, overrides={"train": {"compile": True}})
    Trainer(cfg, *tiny_sets, tmp_path / "run", progress=False, echo=lambda m: None).run.release()
    assert seen == ["RefinerForLoss", "LocalDiscriminator"]
