"""The §3.2 hand pose estimator: hourglass shapes, heatmap coding, augmentation, the metric, the CLI."""

import json

import numpy as np
import pytest
import torch

from simgan.evaluation.pose import (
    StackedHourglass,
    augment,
    decode_heatmaps,
    joint_errors_px,
    pck_curve,
    pose_metrics,
    target_heatmaps,
)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny networks: extra threads only add overhead (and fight on a shared CPU); the evaluate
    command keeps the thread count when OMP_NUM_THREADS is set."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_hourglass_shapes_paper_setting():
    # §3.2: 224x224 input, 2 hourglass blocks, 64x64 heatmaps for the 14 joints (narrow here for speed)
    m = StackedHourglass(224, joints=14, stacks=2, channels=16, heatmap=64)
    outs = m(torch.zeros(2, 1, 224, 224))
    assert len(outs) == 2  # intermediate supervision: one prediction per stack
    assert all(o.shape == (2, 14, 64, 64) for o in outs)
    assert m.stride == 4


def test_hourglass_small_input():
    m = StackedHourglass(64, joints=14, stacks=2, channels=8, heatmap=32)
    assert m.stride == 2
    assert [o.shape for o in m(torch.zeros(2, 1, 64, 64))] == [(2, 14, 32, 32)] * 2


def test_heatmap_round_trip():
    uv = torch.tensor([[[10.0, 20.0], [33.3, 5.6], [0.0, 63.0]]])
    h = target_heatmaps(uv, 64, 32)
    assert h.shape == (1, 3, 32, 32) and float(h.max()) <= 1.0
    back = decode_heatmaps(h, 64)
    # argmax + quarter-pixel step: within a heatmap pixel (2 image pixels here)
    assert torch.all((back - uv).abs() <= 1.0 + 1e-6)


def test_augment_moves_joints_with_the_image():
    gen = torch.Generator().manual_seed(0)
    s = 48
    x = -torch.ones(8, 1, s, s)
    uv = torch.tensor([[12.0, 30.0]]).repeat(8, 1, 1)
    x[:, 0, 28:33, 10:15] = 1.0  # a 5x5 blob centred on the joint
    y, uv2 = augment(x, uv, gen, 20.0, (0.8, 1.0))
    for i in range(8):
        ys, xs = torch.nonzero(y[i, 0] > 0, as_tuple=True)
        assert len(xs) > 0
        centre = torch.stack([xs.float().mean(), ys.float().mean()])
        assert torch.linalg.norm(centre - uv2[i, 0]) < 1.0
    # rotations really happen: joints move
    assert (uv2 - uv).abs().max() > 1.0


def test_metric_on_hand_computed_cases():
    true = np.zeros((2, 2, 2))
    pred = np.array([[[3.0, 4.0], [0.0, 0.0]], [[0.0, 6.0], [1.0, 0.0]]])
    e = joint_errors_px(pred, true)
    np.testing.assert_allclose(e, [[5.0, 0.0], [6.0, 1.0]])
    c = pck_curve(e)
    assert c["0"] == 25.0 and c["1"] == 50.0 and c["5"] == 75.0 and c["6"] == 100.0 and c["20"] == 100.0
    m = pose_metrics(e, width=224)
    assert m["pck5"] == 75.0 == m["pck5_224"] and m["mean_px"] == pytest.approx(3.0)
    # a 112-wide image: 5 px at 224 is 2.5 px here
    m = pose_metrics(e, width=112)
    assert m["pck5"] == 75.0 and m["pck5_224"] == 50.0 and m["mean_px_224"] == pytest.approx(6.0)


def test_evaluate_pose_cli(cli, tmp_path):
    from simgan.simulators.hands import simulate_hands

    simulate_hands(tmp_path / "syn", 12, seed=1, size=32, progress=False)
    simulate_hands(tmp_path / "test", 4, seed=2, size=32, domain="target", progress=False)
    code, out, err = cli("evaluate", "pose", "--train", tmp_path / "syn", "--test", tmp_path / "test",
                         "--out", tmp_path / "ev", "--epochs", "1", "--channels", "8", "--heatmap", "16",
                         "--batch-size", "6", "--quiet")
    assert code == 0, err
    assert "% within 5 px" in out and "syn" in out
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    r = m["results"]["syn"]
    assert set(r["within_pct"]) == {str(d) for d in range(21)}
    assert 0 <= r["pck5"] <= 100 and r["mean_px"] > 0
    assert (tmp_path / "ev" / "pose_pck.png").exists() and (tmp_path / "ev" / "estimators" / "syn.pt").exists()


@pytest.mark.parametrize("extra, needle", [
    (["--heatmap", "8"], "--heatmap"), (["--epochs", "0"], "--epochs"), (["--channels", "2"], "--channels")])
def test_evaluate_pose_bad_flags(cli, tmp_path, extra, needle):
    from simgan.simulators.hands import simulate_hands

    simulate_hands(tmp_path / "syn", 2, seed=1, size=32, progress=False)
    code, _, err = cli("evaluate", "pose", "--train", tmp_path / "syn", "--test", tmp_path / "syn",
                       "--out", tmp_path / "ev", *extra)
    assert code == 2 and err.startswith("simgan: error:") and needle in err and err.count("\n") == 1
    assert not (tmp_path / "ev").exists()


def test_evaluate_pose_needs_joint_labels(cli, tmp_path):
    from simgan.datasets import write_dataset

    imgs = np.zeros((3, 32, 32, 1), np.uint16)
    write_dataset(tmp_path / "nolab", imgs, [{"gaze": [0, 0, -1]}] * 3)
    code, _, err = cli("evaluate", "pose", "--train", tmp_path / "nolab", "--test", tmp_path / "nolab",
                       "--out", tmp_path / "ev")
    assert code == 2 and "\"uv\"" in err and err.count("\n") == 1

