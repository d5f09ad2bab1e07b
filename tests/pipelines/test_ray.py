"""Refining on Ray Data, in Ray's local mode: `BatchRefiner` as the `map_batches` callable (the
README's example) gives the pixels `refine_array` gives."""

import numpy as np
import pytest

from simgan.config import resolve_config
from simgan.datasets import ImageFolder
from simgan.datasets.shards import write_shards
from simgan.pipelines.refine import BatchRefiner, refine_array
from simgan.training import train

ray = pytest.importorskip("ray")


@pytest.fixture
def run_without_noise(tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    cfg = resolve_config("generic", config_file=tiny_config,
                         overrides={"refiner": {"noise_channels": 0}, "loss": {"diversity": 0.0}})
    train(cfg, syn, real, tmp_path / "run", progress=False)
    return tmp_path / "run", syn


def test_batch_refiner_passes_other_columns_through(run_without_noise):
    run, syn = run_without_noise
    images = ImageFolder.open(syn).load()
    out = BatchRefiner(run, device="cpu")({"image": images[:5, :, :, 0], "id": np.arange(5)})
    assert out["image"].shape == (5, 16, 24) and out["image"].dtype == np.uint8
    assert np.array_equal(out["id"], np.arange(5))
    assert np.array_equal(out["image"], refine_array(run, images[:5], device="cpu")[..., 0])


def test_ray_data_map_batches_refines_like_refine_array(run_without_noise):
    run, syn = run_without_noise
    images = ImageFolder.open(syn).load()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        shards = write_shards(run.parent / "syn.shards", images, shard_size=20)
        refiner = BatchRefiner(run, column="data", device="cpu")  # loaded once, shipped to Ray's tasks
        ds = ray.data.read_numpy(str(shards), file_extensions=["npy"]).map_batches(  # the README's pipeline
            refiner, batch_size=16, batch_format="numpy")
        got = np.stack([row["data"] for row in ds.take_all()])
    finally:
        ray.shutdown()
    want = refine_array(run, images, device="cpu")
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # batch sizes differ: last-bit rounding only
