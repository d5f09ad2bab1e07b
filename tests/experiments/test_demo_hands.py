"""`simgan demo hands --quick` end to end on tiny settings, and its bad input."""

import json

import pytest
import torch

from simgan.experiments.demo_hands import (
    HANDS_DEMO_SETTINGS,
    HandsDemoSettings,
    boundary_stats,
)

TINY = HandsDemoSettings(
    size=32, n_synthetic=8, n_real=16, n_target_train=8, n_test=6,
    simgan={"image": {"height": 32, "width": 32}, "refiner": {"kernel_size": 3, "width": 4, "num_blocks": 1},
            "discriminator": {"layers": [{"kind": "conv", "kernel": 3, "stride": 2, "channels": 8},
                                         {"kind": "conv", "kernel": 3, "stride": 2, "channels": 8}]},
            "train": {"refiner_pretrain": 0, "disc_pretrain": 2, "steps": 3, "kg": 1, "kd": 1, "batch_size": 8,
                      "buffer_size": 16, "lr": 0.003, "sample_every": 1000, "checkpoint_every": 1000}},
    pose={"channels": 4, "heatmap": 16, "epochs": 1, "batch_size": 8}, realism_images=16, refine_batch=16,
    render_size=32)


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead (and fight on a shared CPU)
    yield
    torch.set_num_threads(n)


def test_demo_hands_quick_tiny(cli, tmp_path, monkeypatch, one_thread):
    monkeypatch.setitem(HANDS_DEMO_SETTINGS, "quick", TINY)
    code, out, err = cli("demo", "hands", "--quick", "--out", tmp_path / "d", "--seed", "1", "--device", "cpu")
    assert code == 0, err[-2000:]
    m = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert set(m["pck5"]) == {"synthetic", "refined", "real", "synthetic_3x", "refined_3x"}
    assert all(0 <= v <= 100 for v in m["pck5"].values())
    assert m["image_size"] == 32 and m["settings"]["seed"] == 1
    assert set(m["boundaries"]) == {"synthetic", "refined", "target"}
    report = (tmp_path / "d" / "report.html").read_text()
    assert "<td>refined_3x</td>" in report and report.count("data:image/png;base64,") >= 3
    assert "32x32" in report and "no reading" in report
    assert "Hand pose on held-out target images" in out
    # S+U learning: SimGAN's real set has no labels at all
    assert not (tmp_path / "d" / "data" / "real_unlabelled" / "labels.jsonl").exists()
    # refined 1x is the frontal view of refined 3x
    assert len(list((tmp_path / "d" / "data" / "refined" / "img").iterdir())) == 8
    assert len(list((tmp_path / "d" / "data" / "refined_3x" / "img").iterdir())) == 24


@pytest.mark.parametrize("args, needle", [
    (["--quick", "--full"], "contradict"), (["--seed", "-2"], "--seed")])
def test_demo_hands_bad_input(cli, tmp_path, args, needle):
    code, _, err = cli("demo", "hands", "--out", tmp_path / "d", *args)
    assert code == 2 and err.startswith("simgan: error:") and needle in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists()


def test_demo_hands_refuses_existing_out(cli, tmp_path):
    (tmp_path / "taken").mkdir()
    code, _, err = cli("demo", "hands", "--quick", "--out", tmp_path / "taken")
    assert code == 2 and "already exists" in err and err.count("\n") == 1


def test_boundary_stats_see_sensor_effects():
    from simgan.simulators.hands import cube_encode, render_hands

    syn, ls = render_hands(16, seed=0, size=64)
    tgt, lt = render_hands(16, seed=0, size=64, domain="target")
    zs = [l["pose"]["center"][2] for l in ls]
    zt = [l["pose"]["center"][2] for l in lt]
    bs, bt = boundary_stats(cube_encode(syn, zs, empty_is_far=True)), boundary_stats(cube_encode(tgt, zt))
    assert bs["missing_pct"] == 0 and bt["missing_at_silhouette_pct"] > 20
    assert bt["flying_pct"] > bs["flying_pct"] and bt["edge_roughness"] > bs["edge_roughness"]

