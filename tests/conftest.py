"""Shared fixtures: tiny labelled synthetic / unlabelled real sets made with numpy (no test reads
../shared or the network), and a way to call the CLI in-process."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


def make_discs(n: int, h: int = 16, w: int = 24, seed: int = 0, real: bool = False, channels: int = 1):
    """Dark discs ("pupils") on a light background; ``real`` adds noise, blur-ish texture and a
    contrast change (an appearance gap a refiner can learn)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    images = np.empty((n, h, w, channels), np.uint8)
    labels = []
    for i in range(n):
        cx, cy, r = rng.uniform(w * 0.3, w * 0.7), rng.uniform(h * 0.3, h * 0.7), rng.uniform(2.0, 3.5)
        img = np.where((xx - cx) ** 2 + (yy - cy) ** 2 < r * r, 40.0, 190.0)
        if real:
            img = img * 0.8 + 20 + rng.normal(0, 12, img.shape)
        images[i] = np.clip(img, 0, 255).astype(np.uint8)[:, :, None]
        labels.append({"pupil": [float(cx), float(cy)], "id": i})
    return images, labels


@pytest.fixture
def tiny_sets(tmp_path):
    """(synthetic_dir, real_dir) of 16x24 gray images: 48 labelled synthetic, 48 unlabelled real."""
    from simgan.datasets import write_dataset
    syn, labels = make_discs(48, seed=1)
    real, _ = make_discs(48, seed=2, real=True)
    return write_dataset(tmp_path / "syn", syn, labels), write_dataset(tmp_path / "real", real)


# A small network and schedule so a full run takes a second or two on CPU.
TINY_CONFIG = """\
preset: generic
refiner: {kernel_size: 3, width: 8, num_blocks: 1}
loss: {lambda_reg: 0.01}
discriminator:
  generic: {depth: 2, width: 8, kernel: 3}
train:
  refiner_pretrain: 3
  disc_pretrain: 2
  steps: 6
  kg: 2
  kd: 1
  batch_size: 8
  lr: 0.02
  buffer_size: 16
  log_every: 2
  sample_every: 100
  checkpoint_every: 100
"""


@pytest.fixture
def tiny_config(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_CONFIG)
    return p


@pytest.fixture
def cli(capsys):
    """Run ``simgan ARGS`` in-process; returns (exit_code, stdout, stderr)."""
    from simgan.cli import main

    def run(*args):
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


def torchrun_cmd(nproc: int = 2):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]


def eyes_refiner_run(tmp_path, n: int):
    """A run holding the eyes preset's refiner with random weights that make SimGAN-sized
    corrections (|R(x) - x| ~ 4 levels), and ``n`` labelled 35x55 images to refine:
    (run folder, dataset folder, images). For comparing precisions and devices pixel by pixel."""
    import torch

    from simgan.config import preset
    from simgan.datasets import write_dataset
    from simgan.models.refiner import Refiner
    from simgan.training.rundir import RunDir

    cfg = preset("eyes")
    torch.manual_seed(0)
    R = Refiner(cfg.refiner, 1)
    with torch.no_grad():
        R.head.weight.normal_(0, 0.07)
        R.head.bias.fill_(0.0)
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.save_refiner(R.state_dict(), cfg, 0)
    images, labels = make_discs(n, h=35, w=55, seed=4)
    return run.path, write_dataset(tmp_path / "syn", images, labels), images
