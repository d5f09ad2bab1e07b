"""The time budget (``train.minutes``): step costs measured without changing the run, a schedule
scaled to fit, a run that ends within its budget, and a resumed run that keeps its fitted schedule."""

import json
import time

import pytest
import torch
import yaml

from simgan.config import TrainConfig, resolve_config
from simgan.training import train
from simgan.training.budget import StepCosts, checkpoint_interval, fit_to_budget, measure_step_costs, plan_lines
from simgan.training.trainer import Trainer


def tiny(tiny_config, **train):
    return resolve_config("generic", config_file=tiny_config, overrides={"train": train} if train else None)


def test_measuring_step_costs_leaves_the_run_as_it_was(tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    cfg = tiny(tiny_config, ema_decay=0.9)
    t = Trainer(cfg, syn, real, tmp_path / "run", progress=False)
    try:
        for _ in range(6):  # into the adversarial phase, with a history buffer to restore
            t.iteration()
            t.step += 1
        before = {"R": t.R.state_dict(), "D": t.D.state_dict(), "ema": t.ema.model.state_dict()}
        before = {k: {n: v.clone() for n, v in sd.items()} for k, sd in before.items()}
        buffer = t.buffer.state_dict()["images"].clone()
        rng = torch.get_rng_state()
        costs = measure_step_costs(t)
        assert costs.refiner_step > 0 and costs.disc_step > 0 and costs.kg == 2 and costs.kd == 1
        for key, module in (("R", t.R), ("D", t.D), ("ema", t.ema.model)):
            for name, value in module.state_dict().items():
                assert torch.equal(value, before[key][name]), f"{key}.{name}"
        assert torch.equal(t.buffer.state_dict()["images"], buffer) and torch.equal(torch.get_rng_state(), rng)
    finally:
        t.monitor.close()
        t.run.release()


def test_fit_to_budget_scales_every_phase_and_the_average_horizon():
    t = TrainConfig(steps=1000, refiner_pretrain=100, disc_pretrain=200, kg=2, ema_decay=0.99,
                    sample_every=200, checkpoint_every=200, log_every=10)
    costs = StepCosts(refiner_step=0.1, disc_step=0.05, kg=2, kd=1)  # a round: 0.25 s
    full = costs.seconds(t)
    assert full == pytest.approx(100 * 0.1 + 200 * 0.05 + 1000 * 0.25)
    scale = fit_to_budget(t, costs, full / 10)
    assert scale == pytest.approx(0.1)
    assert (t.refiner_pretrain, t.disc_pretrain, t.steps) == (10, 20, 100)
    assert costs.seconds(t) == pytest.approx(full / 10)
    assert 1 / (1 - t.ema_decay) == pytest.approx(10)  # 100 R updates of horizon, a tenth of them
    assert t.sample_every == 26 and t.checkpoint_every == 200 and t.log_every == 10
    assert fit_to_budget(t, costs, 1e6) == 1.0 and t.steps == 100  # a schedule that fits is kept


def test_first_checkpoint_within_a_minute_of_work():
    t = TrainConfig(steps=1000, checkpoint_every=200)
    assert checkpoint_interval(t, StepCosts(refiner_step=1.0, disc_step=0.5, kg=2, kd=1)) == 24  # 2.5 s a round
    assert checkpoint_interval(t, StepCosts(refiner_step=1e-3, disc_step=1e-3, kg=2, kd=1)) == 200


def test_plan_says_what_and_how_long():
    t = TrainConfig(steps=400, disc_pretrain=200, kg=2)
    lines = plan_lines(t, StepCosts(refiner_step=0.5, disc_step=0.2, kg=2, kd=1), torch.device("cpu"))
    assert lines[0].startswith("plan: 200 D pre-training steps, then 400 rounds of 2 R and 1 D update(s); "
                               "about 9 min on this CPU")


def test_a_budget_ends_in_time_and_resumes_with_its_schedule(tiny_sets, tiny_config, tmp_path):
    """A budget of 1 minute on a schedule that would take far longer ends within 1.5 minutes,
    and --resume with the same budget keeps the fitted schedule."""
    syn, real = tiny_sets
    cfg = tiny(tiny_config, steps=100000, minutes=1)
    said = []
    start = time.perf_counter()
    res = train(cfg, syn, real, tmp_path / "run", progress=False, echo=said.append)
    assert time.perf_counter() - start < 1 * 60 * 1.5
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]
    assert 1 <= saved["steps"] < 100000 and saved["minutes"] == 1 and cfg.train.steps == 100000
    assert res.step == saved["refiner_pretrain"] + saved["disc_pretrain"] + saved["steps"]
    assert any(s.startswith("plan: ") for s in said) and any("cut to" in s for s in said)
    again = train(tiny(tiny_config, steps=100000, minutes=1), syn, real, tmp_path / "run", resume=True,
                  progress=False, echo=said.append)
    assert again.step == res.step  # nothing left to do: the fitted schedule, not the preset's
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == res.step
