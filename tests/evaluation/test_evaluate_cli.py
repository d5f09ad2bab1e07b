"""`simgan evaluate gaze | realism | preservation` end to end on toy eyes, and their bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import toy_eyes

from simgan.cli import main as cli_main
from simgan.datasets import write_dataset


def run_cli(argv, capsys):
    code = 0
    try:
        cli_main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaldata")
    syn, syn_labels = toy_eyes.render(160, seed=11, noise=2.0)
    ref, _ = toy_eyes.render(160, seed=11, noise=6.0, noise_seed=3, pupil_dx=1.0)
    real, real_labels = toy_eyes.render(120, seed=12, noise=6.0)
    write_dataset(root / "synthetic", syn, syn_labels)
    write_dataset(root / "refined", ref, syn_labels)
    write_dataset(root / "real", real, real_labels)
    write_dataset(root / "unlabelled", real[:40])
    write_dataset(root / "fewer", ref[:100], syn_labels[:100])
    write_dataset(root / "small", np.zeros((20, 20, 30, 1), np.uint8), syn_labels[:20])
    return root


def test_cli_gaze_end_to_end(folders, tmp_path, capsys):
    out = tmp_path / "gaze"
    code, stdout, err = run_cli(["evaluate", "gaze", "--train", str(folders / "synthetic"), "--train",
                                 str(folders / "refined"), "--name", "syn", "--name", "ref", "--test",
                                 str(folders / "real"), "--out", str(out), "--device", "cpu", "--max-epochs", "1",
                                 "--batch-size", "64", "-q"], capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["results"]) == {"syn", "ref"}
    for r in m["results"].values():
        assert 0 <= r["mean_deg"] <= 180 and set(r["within_pct"]) == {str(d) for d in range(1, 21)}
        assert Path(r["estimator"]).is_file()
    assert (out / "gaze_cdf.png").stat().st_size > 1000
    assert "syn" in stdout and "≤7°%" in stdout
    # an existing metrics.json is not replaced without --overwrite
    code, _, err = run_cli(["evaluate", "gaze", "--train", str(folders / "synthetic"), "--test",
                            str(folders / "real"), "--out", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1 and "--overwrite" in err


def test_cli_realism_end_to_end(folders, tmp_path, capsys):
    out = tmp_path / "realism"
    code, stdout, err = run_cli(["evaluate", "realism", "--real", str(folders / "real"), "--candidate",
                                 str(folders / "synthetic"), "--candidate", str(folders / "refined"),
                                 "--out", str(out), "--device", "cpu", "--reference", "--no-fid", "-q"], capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["results"]) == {"synthetic", "refined"}
    assert m["reference"]["n_used"] == 60 and "kid" in m["reference"] and "c2st" in m["reference"]
    for r in m["results"].values():
        assert 0 <= r["c2st"]["accuracy"] <= 1 and r["c2st"]["ci95"][0] <= r["c2st"]["accuracy"]
        assert r["kid"]["kid_se"] >= 0
    assert "C2ST acc%" in stdout and "refined" in stdout and "real half vs half" in stdout


def test_cli_preservation_end_to_end(folders, tmp_path, capsys):
    out = tmp_path / "pres"
    code, stdout, err = run_cli(["evaluate", "preservation", "--synthetic", str(folders / "synthetic"),
                                 "--refined", str(folders / "refined"), "--out", str(out), "--device", "cpu",
                                 "--max-epochs", "1", "--max-minutes", "1", "--batch-size", "32", "-q"], capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert abs(m["pupil"]["mean_px"] - 1.0) < 0.3
    assert m["gaze"]["change_mean_deg"] >= 0 and m["gaze"]["estimator"]["trained_on"] == "synthetic set"
    assert "pupil shift, censored median" in stdout and "moved beyond the radius" in stdout


@pytest.mark.parametrize("argv, needle", [
    (["evaluate", "gaze", "--train", "{d}/nope", "--test", "{d}/real", "--out", "{t}/o"], "not found"),
    (["evaluate", "gaze", "--train", "{d}/synthetic", "--test", "{d}/unlabelled", "--out", "{t}/o"], "labels"),
    (["evaluate", "gaze", "--train", "{d}/small", "--test", "{d}/real", "--out", "{t}/o"], "size"),
    (["evaluate", "gaze", "--train", "{d}/synthetic", "--name", "a", "--name", "b", "--test", "{d}/real",
      "--out", "{t}/o"], "--name"),
    (["evaluate", "gaze", "--train", "{d}/synthetic", "--test", "{d}/real", "--out", "{t}/o", "--batch-size", "0"],
     "--batch-size"),
    (["evaluate", "realism", "--real", "{d}/nope", "--candidate", "{d}/synthetic", "--out", "{t}/o"], "not found"),
    (["evaluate", "realism", "--real", "{d}/real", "--candidate", "{d}/small", "--out", "{t}/o"], "size"),
    (["evaluate", "preservation", "--synthetic", "{d}/synthetic", "--refined", "{d}/fewer", "--out", "{t}/o"],
     "lacks 60"),
    (["evaluate", "preservation", "--synthetic", "{d}/synthetic", "--refined", "{d}/small", "--out", "{t}/o"],
     "size"),
    (["evaluate", "preservation", "--synthetic", "{d}/synthetic", "--refined", "{d}/refined", "--out", "{t}/o",
      "--estimator", "{t}/missing.pt"], "not found"),
])
def test_cli_bad_inputs_are_one_line_errors(folders, tmp_path, capsys, argv, needle):
    argv = [a.format(d=folders, t=tmp_path) for a in argv]
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert err.startswith("simgan: error: ") and err.count("\n") == 1, err
    assert needle in err
    assert not (tmp_path / "o").exists()  # bad input leaves no output folder behind

