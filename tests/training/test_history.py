"""The history buffer of §2.3: fixed size, filled first, then b/2 random replacements."""

import pytest
import torch

from simgan.training.history import ImageHistoryBuffer


def test_fills_then_replaces_random_slots():
    buf = ImageHistoryBuffer(10, (1, 2, 2), "cpu", seed=0)
    buf.push(torch.zeros(6, 1, 2, 2))
    assert len(buf) == 6
    buf.push(torch.ones(6, 1, 2, 2))  # 4 fill the rest, 2 replace random slots
    assert len(buf) == 10
    assert int((buf.images.flatten(1)[:, 0] == 1).sum()) in (6, 5, 4) and int((buf.images[6:] == 1).all())
    before = buf.images.clone()
    buf.push(torch.full((3, 1, 2, 2), 2.0))
    changed = (buf.images != before).flatten(1).any(1)
    assert len(buf) == 10 and int((buf.images.flatten(1)[:, 0] == 2).sum()) == 3
    assert int(changed.sum()) <= 3


def test_sample_draws_distinct_filled_images():
    buf = ImageHistoryBuffer(8, (1, 1, 1), "cpu", seed=1)
    buf.push(torch.arange(5, dtype=torch.float32).reshape(5, 1, 1, 1))
    s = buf.sample(5).flatten()
    assert sorted(s.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        buf.sample(6)


def test_state_round_trip_continues_identically():
    a = ImageHistoryBuffer(6, (1, 1, 1), "cpu", seed=3)
    a.push(torch.arange(6, dtype=torch.float32).reshape(6, 1, 1, 1))
    b = ImageHistoryBuffer(6, (1, 1, 1), "cpu", seed=99)
    b.load_state_dict(a.state_dict())
    new = torch.full((3, 1, 1, 1), 7.0)
    a.push(new)
    b.push(new)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.sample(4), b.sample(4))

