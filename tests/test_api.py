"""The public Python API: the README's example runs as written (on tiny eye sets, with a short
schedule and small evaluation budgets patched in), and the documented names exist."""

import functools
import re
from pathlib import Path

import simgan

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_api_block() -> str:
    text = README.read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_documented_names_exist():
    for name in ("train", "refine_dataset", "refine_array", "resolve_config", "evaluate_gaze", "evaluate_realism",
                 "evaluate_preservation"):
        assert callable(getattr(simgan, name)), name
    block = readme_api_block()
    used = set(re.findall(r"simgan\.(\w+)\(", block))
    assert used and used <= set(simgan.__all__)


def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    from toy_eyes import render

    from simgan.datasets import write_dataset
    from simgan.evaluation import C2STSettings, GazeTrainSettings
    syn, syn_labels = render(48, seed=1)
    real, _ = render(48, seed=2, skin=120.0, noise=10.0)
    test, test_labels = render(32, seed=3, skin=120.0, noise=10.0)
    write_dataset(tmp_path / "synth", syn, syn_labels)
    write_dataset(tmp_path / "real", real)
    write_dataset(tmp_path / "real_test", test, test_labels)
    monkeypatch.chdir(tmp_path)

    # The example as written, with the schedule shortened (the preset and the calls are the README's).
    resolve = simgan.resolve_config
    short = {"refiner_pretrain": 2, "disc_pretrain": 2, "steps": 2, "kg": 1, "batch_size": 8, "buffer_size": 64,
             "log_every": 1, "sample_every": 2, "checkpoint_every": 2, "device": "cpu", "precision": "fp32"}
    monkeypatch.setattr(simgan, "resolve_config", lambda name, overrides=None: resolve(
        name, overrides={**(overrides or {}), "train": {**(overrides or {}).get("train", {}), **short}}))
    monkeypatch.setattr(simgan, "evaluate_gaze", functools.partial(
        simgan.evaluate_gaze, settings=GazeTrainSettings(batch_size=16, eval_every_images=32, max_epochs=1)))
    monkeypatch.setattr(simgan, "evaluate_realism", functools.partial(
        simgan.evaluate_realism, c2st_settings=C2STSettings(max_steps=20, eval_every=10)))
    exec(compile(readme_api_block(), str(README), "exec"), {})
    mean_deg, c2st = capsys.readouterr().out.split()[-2:]
    assert float(mean_deg) > 0 and 0 <= float(c2st) <= 1
    assert (tmp_path / "runs" / "eyes" / "refiner.safetensors").exists()
    assert len(list((tmp_path / "refined" / "img").iterdir())) == 48
    assert (tmp_path / "eval" / "gaze").is_dir() and (tmp_path / "eval" / "realism").is_dir()
