"""`simgan bench`'s pieces on a few images (the figures themselves come from `simgan bench`, not
from tests): the refine breakdown covers every stage, the straightforward refine writes every
image, the CPU flags are read."""

import torch

from simgan.experiments import bench


def test_refine_breakdown_and_straightforward_baseline(tmp_path):
    bench._simulate(tmp_path / "syn", 12, "synthetic", 1)
    run = bench.fake_run(tmp_path / "run")
    cpu = torch.device("cpu")
    stages = bench.refine_breakdown(run, tmp_path / "syn", tmp_path, cpu, "fp32", n=12, batch=8)
    assert list(stages) == ["decode", "to_tensor", "model", "from_tensor", "encode_write"]
    assert all(v > 0 for v in stages.values()) and stages["model"] > stages["to_tensor"]
    assert len(list((tmp_path / "breakdown_fp32").glob("*.png"))) == 12
    assert bench.straightforward_refine_speed(tmp_path / "syn", tmp_path, cpu, n=12) > 0
    assert len(list((tmp_path / "straightforward_refined").glob("*.png"))) == 12
    flags = bench.cpu_flags()
    assert isinstance(flags, list) and set(flags) <= {"avx2", "avx512f", "avx512_bf16", "avx512_vnni",
                                                      "amx_bf16", "amx_tile"}


def test_refine_bounds_by_hand():
    """A model stage of 500 us against a roofline of 1,000 images/s (1,000 us) is 200% of it; with
    250 us of other stages, the model at the roofline would give 1e6 / 1,250 = 800 images/s."""
    b = bench.refine_bounds({"decode": 100, "to_tensor": 10, "model": 500, "from_tensor": 15, "encode_write": 125},
                            1000.0)
    assert b["model_images_per_s"] == 2000 and b["model_share_of_roofline"] == 2.0
    assert b["other_us_per_image"] == 250 and abs(b["ceiling_images_per_s"] - 800) < 1e-9
    assert abs(b["ceiling_share_of_roofline"] - 0.8) < 1e-12



def test_codec_costs_and_loader_rates(tmp_path):
    bench._simulate(tmp_path / "syn", 12, "synthetic", 1)
    costs = bench.png_codec_costs(tmp_path / "syn", tmp_path, 12)
    assert "pillow" in costs and all(v > 0 for c in costs.values() for v in c.values())
    rates = bench.loader_speed(tmp_path / "syn", tmp_path)
    assert set(rates) == {"png", "shards"} and (tmp_path / "syn.shards" / "shards.json").exists()
