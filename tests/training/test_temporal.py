"""Temporal consistency in training (refining videos): the flow and shift terms by hand, and in a
run on a small sequence set."""

import json

import numpy as np
import pytest
import torch

from simgan.config import resolve_config
from simgan.datasets.sequences import warp as warp_np
from simgan.errors import SimganError
from simgan.models import losses
from simgan.simulators.eyes import simulate_eyes
from simgan.training import train


def test_torch_warp_matches_the_numpy_warp():
    rng = np.random.default_rng(0)
    a = rng.random((2, 1, 7, 9))
    flow = rng.uniform(-2, 2, (2, 7, 9, 2))
    got = losses.warp(torch.tensor(a), torch.tensor(flow, dtype=torch.float32)).numpy()
    assert np.allclose(got[:, 0], warp_np(a[:, 0], flow), atol=1e-5)


def test_flow_term_by_hand():
    x_prev = torch.zeros(1, 1, 6, 8)
    x = torch.zeros(1, 1, 6, 8)
    flow = torch.zeros(1, 6, 8, 2)
    flow[..., 0] = -1.0  # the scene moved one pixel right
    valid = torch.ones(1, 6, 8)
    valid[..., 0] = 0  # the column that came in from the left
    change_prev = torch.zeros(1, 1, 6, 8)
    change_prev[..., 2] = 0.5  # R darkened a column in frame t-1 ...
    change = torch.roll(change_prev, 1, dims=3)  # ... and the same spot, moved with the scene, in frame t
    assert float(losses.flow_consistency_loss(x + change, x, x_prev + change_prev, x_prev, flow, valid)) == 0.0
    # the change stayed where it was: it flickers against the scene's motion
    loss = losses.flow_consistency_loss(x + change_prev, x, x_prev + change_prev, x_prev, flow, valid)
    assert float(loss) == pytest.approx(2 * 0.5 * 6 / (6 * 7))


def test_shift_term_by_hand():
    y = torch.rand(2, 1, 10, 12)
    assert float(losses.shift_consistency_loss(y, y, 2)) == 0.0
    assert float(losses.shift_consistency_loss(y + 0.25, y, 2)) == pytest.approx(0.25, abs=1e-6)


@pytest.fixture(scope="module")
def eye_sets(tmp_path_factory):
    d = tmp_path_factory.mktemp("seq")
    simulate_eyes(d / "syn", None, sequences=4, frames=6, seed=1, progress=False)
    simulate_eyes(d / "real", 24, seed=2, domain="target", progress=False)
    return d / "syn", d / "real"


def tiny(tiny_config, **temporal):
    return resolve_config("generic", config_file=tiny_config, overrides={"temporal": temporal})


def test_training_logs_both_terms(eye_sets, tiny_config, tmp_path):
    syn, real = eye_sets
    said = []
    train(tiny(tiny_config, weight=1.0, shift=1.0), syn, real, tmp_path / "run", progress=False, echo=said.append)
    assert any(line == "temporal consistency: the flow term on 20 frame pairs of the synthetic sequences"
               for line in said)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    adv = [r for r in rows if r["phase"] == "adversarial"]
    assert adv and all(np.isfinite(r["r_flow"]) and np.isfinite(r["r_shift"]) for r in adv)
    assert not any("r_flow" in r for r in rows if r["phase"] != "adversarial")


def test_the_flow_term_needs_a_sequence_set(tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    with pytest.raises(SimganError, match="'sequence' and 'frame'"):
        train(tiny(tiny_config, weight=1.0), syn, real, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
