"""`simgan refine --variants K`: K refinements per image, each with its own noise code, cycling through the run's
snapshots."""

import json
from pathlib import Path


def test_refine_variants(cli, tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    code, _, err = cli("train", "--synthetic", syn, "--real", real, "--out", tmp_path / "run", "--preset", "generic",
                       "--config", tiny_config, "--quiet")
    assert code == 0, err
    code, _, err = cli("refine", "--run", tmp_path / "run", "--input", syn, "--out", tmp_path / "ref",
                       "--variants", "3", "--quiet")
    assert code == 0, err
    lines = [json.loads(l) for l in (tmp_path / "ref" / "labels.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 48 and lines[1]["file"].endswith("_v1.png") and lines[0]["id"] == lines[2]["id"]
    assert all((tmp_path / "ref" / l["file"]).exists() for l in lines)


def test_refine_variants_cycle_through_snapshots(cli, tiny_sets, tiny_config, tmp_path):
    """Variant v is refined by snapshot v mod K: variant 0 by the final refiner (as --variants 1),
    variant 1 by the snapshot before it, so it differs from the final refiner's output for the
    same noise (checked against the same run with its snapshots removed)."""
    import shutil

    import numpy as np
    from PIL import Image
    syn, real = tiny_sets
    code, _, err = cli("train", "--synthetic", syn, "--real", real, "--out", tmp_path / "run", "--preset", "generic",
                       "--config", tiny_config, "--quiet")
    assert code == 0, err
    snaps = sorted(p.name for p in (tmp_path / "run" / "snapshots").iterdir())
    assert snaps == ["refiner_step_0000008.safetensors", "refiner_step_0000009.safetensors",
                     "refiner_step_0000010.safetensors"]  # generic: 4 snapshots over the last half of 6 rounds
    shutil.copytree(tmp_path / "run", tmp_path / "bare")
    shutil.rmtree(tmp_path / "bare" / "snapshots")
    for name in ("run", "bare"):
        code, _, err = cli("refine", "--run", tmp_path / name, "--input", syn, "--out", tmp_path / f"ref_{name}",
                           "--variants", "2", "--quiet")
        assert code == 0, err
    first = sorted((tmp_path / "ref_run").rglob("*_v0.png"))[0]
    rel = first.relative_to(tmp_path / "ref_run")
    load = lambda root, r: np.asarray(Image.open(root / r))
    assert np.array_equal(load(tmp_path / "ref_run", rel), load(tmp_path / "ref_bare", rel))
    rel1 = Path(str(rel).replace("_v0.png", "_v1.png"))
    assert not np.array_equal(load(tmp_path / "ref_run", rel1), load(tmp_path / "ref_bare", rel1))



def test_snapshots_survive_a_resume_with_more_steps(cli, tiny_sets, tiny_config, tmp_path):
    """A run resumed with a longer --steps computes a new snapshot schedule; the snapshots of the
    first schedule stay in the run and refine still finds them (newest first)."""
    from simgan.training.snapshots import saved_snapshot_steps
    syn, real = tiny_sets
    args = ["train", "--synthetic", syn, "--real", real, "--out", tmp_path / "run", "--preset", "generic",
            "--config", tiny_config, "--quiet"]
    assert cli(*args)[0] == 0
    first = saved_snapshot_steps(tmp_path / "run")
    assert first == [10, 9, 8]
    code, _, err = cli(*args, "--resume", "--steps", "12")
    assert code == 0, err
    later = saved_snapshot_steps(tmp_path / "run")
    assert set(first) <= set(later) and later == sorted(later, reverse=True) and max(later) > max(first)
    import torch

    from simgan.training.rundir import load_refiner
    from simgan.training.snapshots import load_snapshots
    final, _, _ = load_refiner(tmp_path / "run", torch.device("cpu"))
    assert len(load_snapshots(tmp_path / "run", final, torch.device("cpu"), limit=99)) == 1 + len(later)
    code, _, err = cli("refine", "--run", tmp_path / "run", "--input", syn, "--out", tmp_path / "ref",
                       "--variants", str(len(later) + 1), "--quiet")
    assert code == 0, err
