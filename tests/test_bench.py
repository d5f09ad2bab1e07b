"""`simgan bench`'s pieces on a few images (the figures themselves come from `simgan bench`, not
from tests): the refine breakdown covers every stage, the straightforward refine writes every
image, the CPU flags are read."""

import torch

from simgan.experiments import bench


def test_refine_breakdown_and_straightforward_baseline(tmp_path):
    bench._simulate(tmp_path / "syn", 12, "synthetic", 1)
    run = bench._fake_run(tmp_path / "run")
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
