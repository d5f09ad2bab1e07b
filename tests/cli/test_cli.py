"""The `simgan` command: help, train + refine end to end, and bad input giving one clear line and a non-zero exit, with
nothing half-written."""

import json

import numpy as np
import pytest

from simgan.datasets import write_dataset


def one_line_error(cli, *args, match: str):
    code, out, err = cli(*args)
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("simgan: error:"), err
    assert match in lines[0], lines[0]
    return lines[0]


def train_args(syn, real, out, cfg):
    return ("train", "--synthetic", syn, "--real", real, "--out", out, "--preset", "generic", "--config", cfg, "--quiet")


def test_help_lists_the_commands(cli):
    code, out, _ = cli("--help")
    assert code == 0
    for name in ("simulate", "train", "refine", "evaluate", "demo"):
        assert name in out


def test_train_then_refine_end_to_end(cli, tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    code, out, err = cli("train", "--synthetic", syn, "--real", real, "--out", tmp_path / "run", "--preset", "generic",
                         "--config", tiny_config, "--steps", "4", "--kg", "1", "--lambda-reg", "0.01", "--seed", "3",
                         "--quiet")
    assert code == 0, err
    assert "receptive field" in err
    cfg = (tmp_path / "run" / "config.yaml").read_text()
    assert "lambda_reg: 0.01" in cfg and "seed: 3" in cfg
    code, out, err = cli("refine", "--run", tmp_path / "run", "--input", syn, "--out", tmp_path / "ref", "--quiet")
    assert code == 0, err
    assert "refined 48 images" in out
    assert (tmp_path / "ref" / "labels.jsonl").read_bytes() == (syn / "labels.jsonl").read_bytes()


def test_missing_and_empty_folders(cli, tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    one_line_error(cli, *train_args(tmp_path / "nope", real, tmp_path / "r1", tiny_config), match="not found")
    (tmp_path / "empty").mkdir()
    one_line_error(cli, *train_args(syn, tmp_path / "empty", tmp_path / "r2", tiny_config), match="holds no images")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_corrupt_image_is_named(cli, tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    (real / "img" / "000003.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    line = one_line_error(cli, *train_args(syn, real, tmp_path / "run", tiny_config), match="000003.png")
    assert "corrupt" in line
    assert not (tmp_path / "run").exists()  # no half-made run left behind


def test_mixed_sizes(cli, tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    from simgan.datasets import encode_png
    encode_png(real / "img" / "000005.png", np.zeros((20, 24, 1), np.uint8))
    one_line_error(cli, *train_args(syn, real, tmp_path / "run", tiny_config), match="must share size")
    assert not (tmp_path / "run").exists()


def test_synthetic_and_real_of_different_channels(cli, tiny_sets, tiny_config, tmp_path):
    syn, _ = tiny_sets
    rgb = write_dataset(tmp_path / "rgb", np.zeros((8, 16, 24, 3), np.uint8))
    one_line_error(cli, *train_args(syn, rgb, tmp_path / "run", tiny_config), match="RGB")


def test_bad_labels_lines(cli, tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    labels = syn / "labels.jsonl"
    good = labels.read_bytes()
    labels.write_bytes(good + b"{not json\n")
    one_line_error(cli, *train_args(syn, real, tmp_path / "run", tiny_config), match="not valid JSON")
    labels.write_bytes(good + json.dumps({"file": "img/missing.png"}).encode() + b"\n")
    one_line_error(cli, *train_args(syn, real, tmp_path / "run", tiny_config), match="missing file")
    one_line_error(cli, "refine", "--run", tmp_path / "run", "--input", syn, "--out", tmp_path / "o", match="missing")


def test_existing_out_is_never_overwritten(cli, tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    one_line_error(cli, *train_args(syn, real, tmp_path / "taken", tiny_config), match="already exists")
    one_line_error(cli, *train_args(syn, real, tmp_path / "taken", tiny_config), "--resume", match="not a simgan run")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    code, _, err = cli(*train_args(syn, real, tmp_path / "run", tiny_config), "--steps", "1")
    assert code == 0, err
    one_line_error(cli, *train_args(syn, real, tmp_path / "run", tiny_config), match="--resume")
    one_line_error(cli, "refine", "--run", tmp_path / "run", "--input", syn, "--out", tmp_path / "taken",
                   match="already exists")


def test_run_of_another_preset_or_shape(cli, tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    code, _, err = cli(*train_args(syn, real, tmp_path / "run", tiny_config), "--steps", "1")
    assert code == 0, err
    one_line_error(cli, "train", "--synthetic", syn, "--real", real, "--out", tmp_path / "run", "--preset", "eyes",
                   "--resume", "--quiet", match="generic preset, not eyes")
    other = write_dataset(tmp_path / "other", np.zeros((4, 20, 30, 1), np.uint8))
    one_line_error(cli, "refine", "--run", tmp_path / "run", "--input", other, "--out", tmp_path / "o",
                   match="30x20")
    one_line_error(cli, "train", "--synthetic", syn, "--real", real, "--out", tmp_path / "eyes", "--preset", "eyes",
                   "--quiet", match="eyes preset is for 55x35")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_cuda_without_gpu(cli, tiny_sets, tiny_config, tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    syn, real = tiny_sets
    one_line_error(cli, *train_args(syn, real, tmp_path / "run", tiny_config), "--device", "cuda",
                   match="no CUDA GPU")
    assert not (tmp_path / "run").exists()


def test_bad_config_file(cli, tiny_sets, tmp_path):
    syn, real = tiny_sets
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {stepz: 3}\n")
    one_line_error(cli, "train", "--synthetic", syn, "--real", real, "--out", tmp_path / "run", "--config", bad,
                   "--quiet", match="unknown setting 'stepz'")



def test_interrupted_training_says_where_it_stopped_and_how_to_go_on(cli, tiny_sets, tiny_config, tmp_path,
                                                                       monkeypatch):
    """Ctrl-C during training: one line naming the run's last checkpoint and the --resume that goes
    on from it (exit 130); --resume on a run with no checkpoint yet says it starts over."""
    from simgan.training import trainer as tr

    syn, real = tiny_sets
    real_iteration = tr.Trainer.iteration

    def stop_at_step_6(self):
        if self.step == 6:
            raise KeyboardInterrupt
        return real_iteration(self)

    monkeypatch.setattr(tr.Trainer, "iteration", stop_at_step_6)
    args = ["train", "--synthetic", syn, "--real", real, "--out", tmp_path / "run", "--preset", "generic",
            "--config", tiny_config, "--quiet", "--checkpoint-every", "4"]
    code, _, err = cli(*args)
    assert code == 130
    assert err.strip().splitlines()[-1] == (f"simgan: interrupted: {tmp_path / 'run'} keeps its checkpoint of step 4; "
                                            "go on with the same command and --resume")
    monkeypatch.setattr(tr.Trainer, "iteration", real_iteration)
    assert cli(*args, "--resume")[0] == 0
    # a run stopped before its first checkpoint: --resume says it starts over
    (tmp_path / "run2").mkdir()
    (tmp_path / "run2" / "config.yaml").write_text((tmp_path / "run" / "config.yaml").read_text())
    code, out, err = cli(*args[:6], tmp_path / "run2", *args[7:], "--resume")
    assert code == 0 and "has no checkpoint yet: --resume starts it over from step 0" in out + err


def test_a_run_that_fails_while_decoding_leaves_no_folder_it_made(cli, tiny_sets, tiny_config, tmp_path):
    """One RGB image among gray ones is found while the sets are decoded, after the run folder was
    made: the run and the parent folders made for it are removed, the error names both images."""
    from simgan.datasets import encode_png
    syn, real = tiny_sets
    mixed = tmp_path / "mixed"
    import shutil
    shutil.copytree(real, mixed)
    encode_png(mixed / "img" / "000030.png", np.zeros((16, 24, 3), np.uint8))
    one_line_error(cli, *train_args(syn, mixed, tmp_path / "runs2" / "deeper" / "run", tiny_config), match="000030")
    assert not (tmp_path / "runs2").exists()
