"""The shared supervised-training loop of the task models (simgan.evaluation.supervised)."""

import pytest
import torch
from torch import nn

from simgan.errors import SimganError
from simgan.evaluation.supervised import EpochSampler, fit, make_optimizer, seeded_model


def _blobs(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % 2).float()
    x = torch.randn(n, 2, generator=g) * 0.5 + (y[:, None] * 2 - 1) * 2.0  # two separable clouds
    return x, y


def test_fit_learns_a_separable_problem_and_stops_when_converged():
    x, y = _blobs()
    xv, yv = _blobs(100, seed=1)
    model = seeded_model(0, lambda: nn.Linear(2, 1))
    lossf = nn.BCEWithLogitsLoss()
    errors = []

    def val_error():
        with torch.no_grad():
            errors.append(float(((model(xv).squeeze(1) > 0).float() != yv).float().mean()))
        return errors[-1]

    sampler = EpochSampler(len(x), 16, torch.Generator().manual_seed(0))
    r = fit(model, lambda i: lossf(model(x[i]).squeeze(1), y[i]), sampler,
            make_optimizer(model.parameters(), "adam", 0.05), max_steps=500, eval_every=5,
            validate=val_error, patience=3)
    assert r.stopped == "converged" and r.steps < 500
    assert r.best_val <= 0.02 and min(errors) == r.best_val
    assert len(r.curve) == len(errors) and r.epochs == r.seen / len(x)
    assert not model.training


def test_fit_restores_the_best_validation_state():
    model = nn.Linear(1, 1)
    x = torch.ones(8, 1)
    script = iter([3.0, 1.0, 0.99995, 2.0, 2.5, 2.7])
    states = []

    def validate():
        states.append(model.weight.detach().clone())
        return next(script)

    r = fit(model, lambda i: model(x[i]).pow(2).mean(), EpochSampler(8, 4, torch.Generator().manual_seed(0)),
            make_optimizer(model.parameters(), "sgd", 0.1), max_steps=100, eval_every=1, validate=validate,
            patience=4, min_delta=1e-3)
    # 0.99995 is lower than 1.0 (kept as the best state) but not by min_delta: patience runs out
    # four measurements after 1.0, and the weights of step 3 come back.
    assert r.stopped == "converged" and r.steps == 6 and r.best_step == 3 and r.best_val == 0.99995
    assert torch.equal(model.weight, states[2]) and not torch.equal(model.weight, states[5])


def test_sampler_keeps_or_drops_the_short_batch_and_draws_only_when_needed():
    gen = torch.Generator().manual_seed(0)
    s = EpochSampler(10, 4, gen)
    assert [len(s.next()) for _ in range(4)] == [4, 4, 2, 4]
    ref = torch.Generator().manual_seed(0)
    first = torch.randperm(10, generator=ref)
    assert torch.equal(EpochSampler(10, 4, torch.Generator().manual_seed(0)).next(), first[:4])
    s = EpochSampler(10, 4, torch.Generator().manual_seed(0), min_batch=4)
    assert [len(s.next()) for _ in range(3)] == [4, 4, 4]
    idx = torch.arange(100, 110)
    assert set(EpochSampler(10, 10, gen, index=idx).next().tolist()) == set(range(100, 110))
    with pytest.raises(SimganError):
        EpochSampler(1, 4, gen, min_batch=2)

