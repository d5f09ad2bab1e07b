"""The torture test: a table of bad inputs across every command, checked as data.

Each case runs ``simgan ARGS`` in-process and must give exactly one line ``simgan: error: ...``
on stderr and exit status 2, and leave the sandbox exactly as it was: every file's path, mode,
mtime and bytes, every folder's path and mode (so no output is left behind and no input was
modified or deleted). The shared inputs (a labelled synthetic set, an unlabelled real set, a
trained run, a config file, an .npz archive) are built once; a case's own bad inputs are built
by its ``setup``.

Run as a script (``python tests/test_torture.py``) it prints, for whatever ``simgan`` is on
``PYTHONPATH``, how many cases fall into each class of failure (a traceback, click's
usage error, wrongly accepted, half-written output left, input data deleted or changed).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import stat
import struct
import sys
import zlib
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY_CONFIG, make_discs  # noqa: E402

CLASSES = ("Python traceback, exit 1", "click's usage error instead of simgan: error", "wrongly accepted, exit 0",
           "half-written output left", "input data deleted or changed", "(not in the table) pickle payload ran",
           "(not in the table) more than the one error line, or another exit status")


# ----------------------------------------------------------------------------------------------
# the shared inputs


def build_world(w: Path) -> Path:
    from simgan.config import resolve_config
    from simgan.datasets import write_dataset
    from simgan.training import train

    w.mkdir(parents=True, exist_ok=True)
    syn, labels = make_discs(16, seed=1)
    real, _ = make_discs(16, seed=2, real=True)
    write_dataset(w / "syn", syn, labels)
    write_dataset(w / "real", real)
    (w / "tiny.yaml").write_text(TINY_CONFIG)
    np.savez(w / "data.npz", images=syn[:4, :, :, 0])
    cfg = resolve_config("generic", config_file=w / "tiny.yaml", overrides={"train": {"steps": 1}})
    train(cfg, w / "syn", w / "real", w / "run", progress=False, echo=lambda m: None)
    return w


# ----------------------------------------------------------------------------------------------
# case set-up helpers: each builds bad input inside the case folder C


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _config(text: str | bytes):
    return lambda W, C: _write(C / "bad.yaml", text)


def _tiny_plus(extra: str):
    return _config(TINY_CONFIG + extra)


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` pixels (no real image data)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def _real_with(name: str, data: bytes):
    def setup(W, C):
        d = _copy(W / "real", C / "real")
        _write(d / name, data)
    return setup


def _syn_labels(text: str | bytes):
    def setup(W, C):
        d = _copy(W / "syn", C / "syn")
        _write(d / "labels.jsonl", text)
    return setup


def _syn_labels_dir(W, C):
    d = _copy(W / "syn", C / "syn")
    (d / "labels.jsonl").unlink()
    (d / "labels.jsonl").mkdir()


def _mixed_sizes(W, C):
    from simgan.datasets import encode_png
    d = _copy(W / "real", C / "real")
    encode_png(d / "img" / "000005.png", np.zeros((20, 24, 1), np.uint8))


def _one_rgb_real(W, C):
    from simgan.datasets import encode_png
    d = _copy(W / "real", C / "real")
    encode_png(d / "img" / "000009.png", np.zeros((16, 24, 3), np.uint8))


def _rgb_real(W, C):
    from simgan.datasets import write_dataset
    write_dataset(C / "real", np.zeros((4, 16, 24, 3), np.uint8))


def _other_shape(W, C):
    from simgan.datasets import write_dataset
    write_dataset(C / "in", np.zeros((4, 32, 32, 1), np.uint8))


def _clash(W, C):
    from PIL import Image
    (C / "in").mkdir()
    img = np.full((16, 24), 120, np.uint8)
    Image.fromarray(img).save(C / "in" / "000010.png")
    Image.fromarray(img).save(C / "in" / "000010.jpg", quality=95)
    Image.fromarray(img).save(C / "in" / "000011.png")


def _corrupt_late(W, C):
    d = _copy(W / "syn", C / "in")
    _write(d / "img" / "000013.png", b"\x89PNG\r\n\x1a\nbroken")


def _user_partial(name: str, *, with_input: bool = False):
    def setup(W, C):
        p = C / name
        _write(p / "notes.txt", "my own files\n")
        if with_input:
            _copy(W / "syn", p / "in")
    return setup


def _user_partial_npz(W, C):
    p = C / "x.partial"
    p.mkdir()
    shutil.copy(W / "data.npz", p / "data.npz")


def _exists(name: str, *, file: bool = False):
    def setup(W, C):
        if file:
            _write(C / name, "x")
        else:
            _write(C / name / "keep.txt", "x")
    return setup


def _empty(name: str):
    return lambda W, C: (C / name).mkdir()


def _run_copy(W, C):
    _copy(W / "run", C / "run")


def _run_with_real_inside(W, C):
    _copy(W / "run", C / "run")
    _copy(W / "real", C / "run" / "real")


def _changed_config(W, C):
    _copy(W / "run", C / "run")
    _write(C / "changed.yaml", TINY_CONFIG.replace("lambda_reg: 0.01", "lambda_reg: 0.5"))


class Evil:
    """A pickle that runs code when loaded: it would create the folder C/pwned."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def _run_config(d: Path) -> dict:
    import yaml
    return yaml.safe_load((d / "config.yaml").read_text())


def _legacy_run(W, C):
    """A run of an older simgan: only the pickled refiner.pt."""
    import torch
    d = _copy(W / "run", C / "old")
    if not (d / "refiner.safetensors").exists():  # the world was built by an older simgan itself
        return
    info = json.loads((d / "refiner.json").read_text())
    from safetensors.torch import load_file
    state = load_file(d / "refiner.safetensors")
    torch.save({"version": 1, "config": info["config"], "step": info["step"], "refiner": state}, d / "refiner.pt")
    (d / "refiner.safetensors").unlink()
    (d / "refiner.json").unlink()


def _evil_run(W, C):
    import torch
    d = _copy(W / "run", C / "evil")
    torch.save({"version": 1, "config": _run_config(d), "step": 1, "refiner": Evil(str(C / "pwned"))},
               d / "refiner.pt")
    for name in ("refiner.safetensors", "refiner.json"):
        (d / name).unlink(missing_ok=True)


def _evil_checkpoint(W, C):
    import torch
    d = _copy(W / "run", C / "run")
    torch.save({"version": 1, "step": 1, "payload": Evil(str(C / "pwned"))}, d / "checkpoints" / "last.pt")


def _run_file(name: str, data: bytes):
    def setup(W, C):
        d = _copy(W / "run", C / "r")
        _write(d / name, data)
    return setup


def _busy_port(W, C):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    _busy_port.sock = s  # kept open during the call
    (C / "port").write_text(str(s.getsockname()[1]))


def _shards(damage: str):
    """An array-format copy of the tiny synthetic set (shards of 5) in C/in.shards, damaged."""
    def setup(W, C):
        from simgan.datasets.conversion import convert
        d = convert(W / "syn", C / "in.shards", shard_size=5)
        shard = d / "images-000001.npy"
        if damage == "truncated":
            shard.write_bytes(shard.read_bytes()[:90])
        elif damage == "short":  # the header whole, the last image cut
            shard.write_bytes(shard.read_bytes()[:-50])
        elif damage == "dtype":
            np.save(shard, np.zeros((5, 16, 24, 1), np.uint16))
        elif damage == "labels":
            (d / "labels.jsonl").write_bytes(b"".join((d / "labels.jsonl").read_bytes().splitlines(True)[:3]))
        elif damage == "missing":
            shard.unlink()
    return setup


def _npz(arrays: dict):
    def setup(W, C):
        np.savez(C / "in.npz", **arrays)
    return setup


# ----------------------------------------------------------------------------------------------
# the table


@dataclass
class Case:
    id: str
    args: list[str]
    setup: Callable | None = None
    match: str = ""
    new: bool = False  # a command or flag the first torture table did not cover (left out by --old)


def _task_partial(W, C):
    """The OUT.partial of a job array of 2 whose task 0 is done (C/ref.partial)."""
    from simgan.pipelines.refine import refine_dataset
    refine_dataset(W / "run", W / "syn", C / "ref", shard="0/2", progress=False)


TRAIN = ["train", "--synthetic", "{W}/syn", "--real", "{W}/real", "--out", "{C}/run", "--config", "{W}/tiny.yaml",
         "--preset", "generic", "--quiet"]
TRAIN_CFG_ANY = ["train", "--synthetic", "{W}/syn", "--real", "{W}/real", "--out", "{C}/run", "--config",
                 "{C}/bad.yaml", "--quiet"]
TRAIN_CFG = TRAIN_CFG_ANY + ["--preset", "generic"]
RESUME = ["train", "--synthetic", "{W}/syn", "--real", "{W}/real", "--out", "{C}/run", "--resume", "--quiet"]
REFINE = ["refine", "--run", "{W}/run", "--input", "{W}/syn", "--out", "{C}/ref", "--quiet"]
SIM = ["simulate", "eyes", "--quiet"]
PRES = ["evaluate", "preservation", "--synthetic", "{W}/syn", "--refined", "{W}/syn", "--out", "{C}/e", "-q"]
SERVE = ["turing", "serve", "--real", "{W}/real", "--refined", "{W}/syn", "--db", "{C}/t.db", "--n", "2",
         "--examples", "2"]


def _with(base: list[str], **repl) -> list[str]:
    out = list(base)
    for flag, value in repl.items():
        flag = "--" + flag.replace("_", "-")
        out[out.index(flag) + 1] = value
    return out


CASES = [
    # -- simulate -----------------------------------------------------------------------------
    Case("sim-n-0", SIM + ["--n", "0", "--out", "{C}/o"]),
    Case("sim-n-negative", SIM + ["--n", "-5", "--out", "{C}/o"]),
    Case("sim-n-text", SIM + ["--n", "abc", "--out", "{C}/o"], match="--n"),
    Case("sim-height-0", SIM + ["--n", "2", "--out", "{C}/o", "--height", "0"]),
    Case("sim-height-small", SIM + ["--n", "2", "--out", "{C}/o", "--height", "10"]),
    Case("sim-width-huge", SIM + ["--n", "2", "--out", "{C}/o", "--width", "5000"]),
    Case("sim-seed-negative", SIM + ["--n", "2", "--out", "{C}/o", "--seed", "-1"]),
    Case("sim-domain-foo", SIM + ["--n", "2", "--out", "{C}/o", "--domain", "foo"], match="--domain"),
    Case("sim-no-n", SIM + ["--out", "{C}/o"], match="--n"),
    Case("sim-unknown-kind", ["simulate", "faces", "--n", "2", "--out", "{C}/o"]),
    Case("sim-out-exists", SIM + ["--n", "2", "--out", "{C}/o"], _exists("o"), "already exists"),
    Case("sim-out-is-file", SIM + ["--n", "2", "--out", "{C}/o"], _exists("o", file=True)),
    Case("sim-user-partial", SIM + ["--n", "2", "--out", "{C}/x"], _user_partial("x.partial"), "did not create"),
    Case("sim-partial-is-file", SIM + ["--n", "2", "--out", "{C}/x"], _exists("x.partial", file=True)),
    # -- train: flags -------------------------------------------------------------------------
    Case("train-batch-1", TRAIN + ["--batch-size", "1"], match="--batch-size"),
    Case("train-batch-odd", TRAIN + ["--batch-size", "3"], match="even"),
    Case("train-steps-negative", TRAIN + ["--steps", "-1"], match="--steps"),
    Case("train-lambda-negative", TRAIN + ["--lambda-reg", "-1"], match="--lambda-reg"),
    Case("train-removed-disc-context", TRAIN + ["--global-disc", "--disc-global-context"], match="--disc-global-context"),
    Case("train-checkpoint-every-0", TRAIN + ["--checkpoint-every", "0"], match="--checkpoint-every"),
    Case("train-kg-0", TRAIN + ["--kg", "0"]),
    Case("train-lr-0", TRAIN + ["--lr", "0"]),
    Case("train-lr-inf", TRAIN + ["--lr", "inf"], match="finite"),
    Case("train-lr-nan", TRAIN + ["--lr", "nan"]),
    Case("train-seed-negative", TRAIN + ["--seed", "-1"], match="seed"),
    Case("train-seed-huge", TRAIN + ["--seed", str(2 ** 40)], match="seed"),
    Case("train-ema-1", TRAIN + ["--ema-decay", "1"]),
    Case("train-lr-decay-2", TRAIN + ["--lr-decay", "2"], match="--lr-decay"),
    Case("train-snapshots-99", TRAIN + ["--snapshots", "99"], match="--snapshots"),
    Case("train-fp16-cpu", TRAIN + ["--precision", "fp16", "--device", "cpu"], match="fp16"),
    Case("train-device-tpu", TRAIN + ["--device", "tpu"], match="tpu"),
    Case("train-preset-foo", TRAIN + ["--preset", "foo"]),
    Case("train-unknown-flag", TRAIN + ["--bogus"]),
    Case("train-missing-out", TRAIN[:5] + ["--quiet"], match="--out"),
    # -- train: data and paths ----------------------------------------------------------------
    Case("train-synthetic-missing", _with(TRAIN, synthetic="{C}/nope"), match="not found"),
    Case("train-real-empty", _with(TRAIN, real="{C}/empty"), _empty("empty"), "no images"),
    Case("train-real-file", _with(TRAIN, real="{W}/tiny.yaml")),
    Case("train-out-in-real", _with(TRAIN, out="{W}/real/run"), match="inside"),
    Case("train-out-in-synthetic", _with(TRAIN, out="{W}/syn/run"), match="inside"),
    Case("train-out-is-real", _with(TRAIN, out="{W}/real"), match="inside"),
    Case("train-real-inside-out", _with(RESUME, real="{C}/run/real"), _run_with_real_inside, "inside"),
    Case("train-out-exists", _with(TRAIN, out="{W}/run"), match="already exists"),
    Case("train-out-is-file", TRAIN, _exists("run", file=True)),
    Case("train-resume-not-a-run", RESUME + ["--config", "{W}/tiny.yaml"], _exists("run"), "not a simgan run"),
    Case("train-resume-lr-change", RESUME + ["--lr", "0.5"], _run_copy, "train.lr"),
    Case("train-resume-other-preset", RESUME + ["--preset", "eyes"], _run_copy, "preset"),
    Case("train-resume-changed-config", RESUME + ["--config", "{C}/changed.yaml"], _changed_config, "loss.lambda_reg"),
    Case("train-resume-evil-checkpoint", RESUME, _evil_checkpoint, "--trust-pickle"),
    Case("train-corrupt-png", _with(TRAIN, real="{C}/real"), _real_with("img/000003.png", b"\x89PNG\r\n\x1a\nbad"),
         "000003.png"),
    Case("train-decompression-bomb", _with(TRAIN, real="{C}/real"), _real_with("img/000004.png",
                                                                              _png_header(20000, 20000)), "000004.png"),
    Case("train-mixed-sizes", _with(TRAIN, real="{C}/real"), _mixed_sizes, "share size"),
    Case("train-mixed-channels-new-parents", _with(TRAIN, real="{C}/real", out="{C}/runs2/deeper/run"), _one_rgb_real,
         "000009", new=True),
    Case("train-channels-differ", _with(TRAIN, real="{C}/real"), _rgb_real, "RGB"),
    Case("train-labels-dir", _with(TRAIN, synthetic="{C}/syn"), _syn_labels_dir, "labels.jsonl"),
    Case("train-labels-bad-json", _with(TRAIN, synthetic="{C}/syn"), _syn_labels('{"file": \n'), "JSON"),
    Case("train-labels-escape", _with(TRAIN, synthetic="{C}/syn"), _syn_labels('{"file": "../real/img/000000.png"}\n'),
         "inside"),
    Case("train-labels-duplicate", _with(TRAIN, synthetic="{C}/syn"),
         _syn_labels('{"file": "img/000000.png"}\n{"file": "img/000000.png"}\n'), "twice"),
    Case("train-labels-missing-file", _with(TRAIN, synthetic="{C}/syn"), _syn_labels('{"file": "img/nope.png"}\n'),
         "missing"),
    Case("train-labels-not-utf8", _with(TRAIN, synthetic="{C}/syn"), _syn_labels(b'{"file": "img/\xff.png"}\n')),
    Case("train-labels-not-object", _with(TRAIN, synthetic="{C}/syn"), _syn_labels("[1, 2]\n"), "JSON object"),
    Case("train-labels-file-number", _with(TRAIN, synthetic="{C}/syn"), _syn_labels('{"file": 3}\n'), "file"),
    Case("train-labels-nul", _with(TRAIN, synthetic="{C}/syn"), _syn_labels('{"file": "img/a\\u0000.png"}\n')),
    # -- train: config files ------------------------------------------------------------------
    Case("cfg-betas", TRAIN_CFG, _tiny_plus("  betas: [2, 3]\n"), "betas"),
    Case("cfg-betas-length", TRAIN_CFG, _tiny_plus("  betas: [0.5]\n"), "betas"),
    Case("cfg-momentum", TRAIN_CFG, _tiny_plus("  optimizer: sgd\n  momentum: -1\n"), "momentum"),
    Case("cfg-seed", TRAIN_CFG, _tiny_plus("  seed: -1\n"), "seed"),
    Case("cfg-kg-max", TRAIN_CFG, _tiny_plus("  kg_max: -3\n"), "kg_max"),
    Case("cfg-lr-decay-nan", TRAIN_CFG, _tiny_plus("  lr_decay: .nan\n"), "lr_decay"),
    Case("cfg-snapshot-span-0", TRAIN_CFG, _tiny_plus("  snapshot_span: 0\n"), "snapshot_span"),
    Case("cfg-global-context-3", TRAIN_CFG,
         _config(TINY_CONFIG.replace("num_blocks: 1}", "num_blocks: 1, global_context: 3}")), "global_context"),
    Case("cfg-tone-curve-negative", TRAIN_CFG,
         _config(TINY_CONFIG.replace("num_blocks: 1}", "num_blocks: 1, tone_curve: -2}")), "tone_curve"),
    Case("train-tone-curve-too-many", TRAIN + ["--tone-curve", "1000"], match="tone-curve"),
    Case("train-removed-disc-histogram", TRAIN + ["--disc-histogram", "1"], match="--disc-histogram"),
    Case("cfg-removed-grain-on", TRAIN_CFG,
         _config(TINY_CONFIG.replace("num_blocks: 1}", "num_blocks: 1, grain: true}")), "removed", new=True),
    Case("train-set-no-equals", TRAIN + ["--set", "train.kg"], match="section.key=value", new=True),
    Case("train-set-no-section", TRAIN + ["--set", "kg=2"], match="section.key=value", new=True),
    Case("train-set-unknown", TRAIN + ["--set", "train.kgg=2"], match="kgg", new=True),
    Case("train-set-bad-value", TRAIN + ["--set", "train.kg=0"], match="train.kg", new=True),
    Case("train-minutes-zero", TRAIN + ["--minutes", "0"], match="minutes", new=True),
    Case("train-minutes-negative", TRAIN + ["--minutes", "-5"], match="minutes", new=True),
    Case("train-minutes-absurd", TRAIN + ["--minutes", "1e9"], match="minutes", new=True),
    Case("train-minutes-nan", TRAIN + ["--minutes", "nan"], match="minutes", new=True),
    Case("train-task-no-label", TRAIN + ["--task-consistency", "1"], match="task.label", new=True),
    Case("train-task-label-missing", TRAIN + ["--task-consistency", "1", "--task-label", "nope"], match="nope",
         new=True),
    Case("train-task-unlabelled-set", _with(TRAIN, synthetic="{W}/real") + ["--task-consistency", "1", "--task-label",
                                                                          "id"], match="labels.jsonl", new=True),
    Case("train-task-kind-mismatch", TRAIN + ["--task-consistency", "1", "--task-label", "pupil", "--set",
                                              "task.kind=class"], match="class label", new=True),
    Case("train-task-weight-negative", TRAIN + ["--task-consistency", "-1", "--task-label", "id"],
         match="--task-consistency", new=True),
    Case("train-temporal-no-sequences", TRAIN + ["--temporal-consistency", "1"], match="'sequence' and 'frame'",
         new=True),
    Case("train-temporal-negative", TRAIN + ["--temporal-consistency", "-1"], match="--temporal-consistency", new=True),
    Case("train-shift-negative", TRAIN + ["--shift-consistency", "-2"], match="--shift-consistency", new=True),
    Case("simulate-sequences-no-frames", SIM + ["--sequences", "2", "--out", "{C}/s"], match="--frames", new=True),
    Case("simulate-sequences-one-frame", SIM + ["--sequences", "2", "--frames", "1", "--out", "{C}/s"],
         match="--frames", new=True),
    Case("simulate-hand-sequences-views", ["simulate", "hands", "--quiet", "--sequences", "2", "--frames", "3",
                                           "--views", "3", "--out", "{C}/s"], match="one view", new=True),
    Case("simulate-sequences-n-mismatch", SIM + ["--sequences", "2", "--frames", "3", "--n", "7", "--out", "{C}/s"],
         match="--n 7", new=True),
    Case("demo-set-bad-value", ["demo", "digits", "--set", "task.weight=-1", "--out", "{C}/d"], match="task.weight",
         new=True),
    Case("train-set-bad-yaml", TRAIN + ["--set", "train.betas=[0.5,"], match="--set", new=True),
    Case("train-set-wrong-type", TRAIN + ["--set", "refiner.padding=3"], match="padding", new=True),
    Case("train-preset-demo-other-shape", ["train", "--synthetic", "{W}/syn", "--real", "{W}/real", "--out", "{C}/run",
                                           "--preset", "eyes-demo", "--quiet"], match="eyes-demo", new=True),
    Case("cfg-grain-word", TRAIN_CFG,
         _config(TINY_CONFIG.replace("num_blocks: 1}", "num_blocks: 1, grain: lots}")), "grain"),
    Case("cfg-feature-misspelt", TRAIN_CFG,
         _config(TINY_CONFIG.replace("lambda_reg: 0.01}", "lambda_reg: 0.01, feature: standardised}")), "feature"),
    Case("cfg-health-patience", TRAIN_CFG, _tiny_plus("  health_patience: -1\n"), "health_patience"),
    Case("cfg-lr-inf", TRAIN_CFG, _tiny_plus("  lr: .inf\n"), "finite"),
    Case("cfg-lr-disc-inf", TRAIN_CFG, _tiny_plus("  lr_disc: .inf\n"), "finite"),
    Case("cfg-lr-nan", TRAIN_CFG, _tiny_plus("  lr_disc: .nan\n"), "finite"),
    Case("cfg-steps-text", TRAIN_CFG, _tiny_plus("  log_every: ten\n"), "integer"),
    Case("cfg-batch-bool", TRAIN_CFG, _tiny_plus("  history: 3\n"), "true or false"),
    Case("cfg-layer-missing-kernel", TRAIN_CFG, _config("preset: generic\ndiscriminator: {layers: [{kind: conv}]}\n"),
         "kernel"),
    Case("cfg-layer-bad-kind", TRAIN_CFG,
         _config("preset: generic\ndiscriminator: {layers: [{kind: pool, kernel: 3}]}\n"), "layer"),
    Case("cfg-generic-depth-text", TRAIN_CFG, _config('preset: generic\ndiscriminator: {generic: {depth: "two"}}\n'),
         "depth"),
    Case("cfg-generic-depth-0", TRAIN_CFG, _config("preset: generic\ndiscriminator: {generic: {depth: 0}}\n"), "depth"),
    Case("cfg-generic-unknown", TRAIN_CFG, _config("preset: generic\ndiscriminator: {generic: {deep: 2}}\n")),
    Case("cfg-generic-list", TRAIN_CFG, _config("preset: generic\ndiscriminator: {generic: [2]}\n")),
    Case("cfg-d-shrinks-image", TRAIN_CFG, _config("preset: generic\ndiscriminator: {generic: {depth: 6}}\n"),
         "nothing"),
    Case("cfg-even-kernel", TRAIN_CFG, _config("preset: generic\nrefiner: {kernel_size: 4}\n"), "odd"),
    Case("cfg-latin1", TRAIN_CFG, _config("preset: generic\n# r\xe9glages\n".encode("latin-1")), "UTF-8"),
    Case("cfg-utf16", TRAIN_CFG, _config("preset: generic\n".encode("utf-16")), "UTF-8"),
    Case("cfg-not-yaml", TRAIN_CFG, _config("train: [1, 2\n"), "YAML"),
    Case("cfg-list", TRAIN_CFG, _config("- 1\n- 2\n"), "mapping"),
    Case("cfg-unknown-key", TRAIN_CFG, _config("trian: {steps: 3}\n"), "trian"),
    Case("cfg-unknown-nested", TRAIN_CFG, _config("train: {stpes: 3}\n"), "stpes"),
    Case("cfg-section-scalar", TRAIN_CFG, _config("train: 5\n"), "mapping"),
    Case("cfg-non-string-key", TRAIN_CFG, _config("train: {1: 2}\n"), "unknown"),
    Case("cfg-preset-foo", TRAIN_CFG_ANY, _config("preset: foo\n"), "foo"),
    Case("cfg-preset-contradicts", TRAIN_CFG_ANY + ["--preset", "generic"],
         _config(TINY_CONFIG.replace("preset: generic", "preset: hands")), "contradicts"),
    Case("cfg-preset-honoured", TRAIN_CFG_ANY, _config("preset: hands\ntrain: {steps: 1}\n"), "hands preset"),
    Case("cfg-channels", TRAIN_CFG, _config("preset: generic\nimage: {channels: 7}\n"), "channels"),
    Case("cfg-missing", _with(TRAIN, config="{C}/nope.yaml"), match="not found"),
    Case("cfg-is-dir", _with(TRAIN, config="{C}/cfgdir"), _empty("cfgdir"), "not a file"),
    # -- refine ---------------------------------------------------------------------------------
    Case("refine-shards-truncated", _with(REFINE, input="{C}/in.shards"), _shards("truncated"), "images-000001.npy",
         new=True),
    Case("refine-shards-short", _with(REFINE, input="{C}/in.shards"), _shards("short"), "truncated", new=True),
    Case("refine-shards-wrong-dtype", _with(REFINE, input="{C}/in.shards"), _shards("dtype"), "manifest says", new=True),
    Case("refine-shards-label-count", _with(REFINE, input="{C}/in.shards"), _shards("labels"), "3 lines for 16",
         new=True),
    Case("refine-shards-missing", _with(REFINE, input="{C}/in.shards"), _shards("missing"), "missing", new=True),
    Case("refine-out-shards-exists", _with(REFINE, out="{C}/in.shards"), _shards("none"), "already exists", new=True),
    Case("refine-format-bad", REFINE + ["--format", "tar"], match="--format", new=True),
    Case("refine-shard-size-0", REFINE + ["--shard-size", "0"], match="--shard-size", new=True),
    Case("convert-shards-truncated", ["convert", "{C}/in.shards", "--out", "{C}/o"], _shards("truncated"), "truncated",
         new=True),
    Case("train-shards-corrupt", _with(TRAIN, synthetic="{C}/in.shards"), _shards("truncated"), "images-000001.npy",
         new=True),
    Case("refine-shard-out-of-range", REFINE + ["--shard", "3/3"], match="--shard", new=True),
    Case("refine-shard-text", REFINE + ["--shard", "first"], match="--shard", new=True),
    Case("refine-shard-other-array", REFINE + ["--shard", "1/3"], _task_partial, "unfinished refine", new=True),
    Case("refine-batch-0", REFINE + ["--batch-size", "0"], match="--batch-size"),
    Case("refine-workers-negative", REFINE + ["--workers", "-1"], match="--workers"),
    Case("refine-run-missing", _with(REFINE, run="{C}/nope"), match="not found"),
    Case("refine-run-empty", _with(REFINE, run="{C}/empty"), _empty("empty"), "refiner"),
    Case("refine-run-is-dataset", _with(REFINE, run="{W}/real")),
    Case("refine-input-missing", _with(REFINE, input="{C}/nope"), match="not found"),
    Case("refine-input-empty", _with(REFINE, input="{C}/empty"), _empty("empty"), "no images"),
    Case("refine-out-in-input", _with(REFINE, out="{W}/syn/refined"), match="inside"),
    Case("refine-out-in-run", _with(REFINE, out="{W}/run/refined"), match="inside"),
    Case("refine-out-is-input", _with(REFINE, out="{W}/syn"), match="inside"),
    Case("refine-out-exists", REFINE, _exists("ref"), "already exists"),
    Case("refine-input-in-partial", _with(REFINE, input="{C}/ref.partial/in"), _user_partial("ref.partial",
                                                                                             with_input=True), "inside"),
    Case("refine-user-partial", REFINE, _user_partial("ref.partial"), "did not create"),
    Case("refine-name-clash", _with(REFINE, input="{C}/in"), _clash, "000010"),
    Case("refine-other-shape", _with(REFINE, input="{C}/in"), _other_shape, "32x32"),
    Case("refine-corrupt-late", _with(REFINE, input="{C}/in") + ["--batch-size", "4"], _corrupt_late, "000013.png"),
    Case("refine-labels-dir", _with(REFINE, input="{C}/syn"), _syn_labels_dir, "labels.jsonl"),
    Case("refine-fp16-cpu", REFINE + ["--precision", "fp16", "--device", "cpu"], match="fp16"),
    Case("refine-device-bogus", REFINE + ["--device", "gpu0"]),
    Case("refine-legacy-pickle", _with(REFINE, run="{C}/old"), _legacy_run, "--trust-pickle"),
    Case("refine-evil-pickle", _with(REFINE, run="{C}/evil"), _evil_run, "--trust-pickle"),
    Case("refine-corrupt-safetensors", _with(REFINE, run="{C}/r"), _run_file("refiner.safetensors", b"garbage"),
         "safetensors", new=True),
    Case("refine-corrupt-refiner-json", _with(REFINE, run="{C}/r"), _run_file("refiner.json", b"{"), "config",
         new=True),
    Case("refine-run-file-garbage", _with(REFINE, run="{C}/m.safetensors"),
         lambda W, C: _write(C / "m.safetensors", b"\x00" * 64), "safetensors", new=True),
    # -- convert --------------------------------------------------------------------------------
    Case("convert-missing", ["convert", "{C}/nope.npz", "--out", "{C}/o"], match="nope"),
    Case("convert-unknown-format", ["convert", "{C}/empty", "--out", "{C}/o"], _empty("empty")),
    Case("convert-src-in-partial", ["convert", "{C}/x.partial/data.npz", "--out", "{C}/x"], _user_partial_npz,
         "inside"),
    Case("convert-out-in-src", ["convert", "{W}/syn", "--out", "{W}/syn/o", "--format", "npz"], match="inside"),
    Case("convert-size-0", ["convert", "{W}/data.npz", "--out", "{C}/o", "--size", "0x0"], match="size"),
    Case("convert-size-text", ["convert", "{W}/data.npz", "--out", "{C}/o", "--size", "big"], match="size"),
    Case("convert-limit-0", ["convert", "{W}/data.npz", "--out", "{C}/o", "--limit", "0"], match="--limit"),
    Case("convert-format-foo", ["convert", "{W}/data.npz", "--out", "{C}/o", "--format", "foo"], match="--format"),
    Case("convert-crop-0", ["convert", "{W}/data.npz", "--out", "{C}/o", "--crop-scale", "0"], match="--crop-scale"),
    Case("convert-threads-0", ["convert", "{W}/data.npz", "--out", "{C}/o", "--threads", "0"], match="--threads"),
    Case("convert-corrupt-npz", ["convert", "{C}/in.npz", "--out", "{C}/o"],
         lambda W, C: _write(C / "in.npz", b"PK\x03\x04garbage")),
    Case("convert-npz-no-images", ["convert", "{C}/in.npz", "--out", "{C}/o"], _npz({"gaze": np.zeros((3, 3))})),
    Case("convert-npz-key-missing", ["convert", "{W}/data.npz", "--out", "{C}/o", "--images-key", "nope"],
         match="nope"),
    Case("convert-out-exists", ["convert", "{W}/data.npz", "--out", "{C}/o"], _exists("o"), "already exists"),
    Case("convert-user-partial", ["convert", "{W}/data.npz", "--out", "{C}/x"], _user_partial("x.partial"),
         "did not create"),
    # -- evaluate -------------------------------------------------------------------------------
    Case("eval-task-no-such-label", ["evaluate", "task", "--train", "{W}/syn", "--test", "{W}/syn", "--label", "nope",
                                      "--out", "{C}/e"], match="'nope'", new=True),
    Case("eval-task-test-unlabelled", ["evaluate", "task", "--train", "{W}/syn", "--test", "{W}/real", "--label", "id",
                                        "--out", "{C}/e"], match="no labels", new=True),
    Case("eval-task-mixed-kinds", ["evaluate", "task", "--train", "{W}/syn", "--test", "{C}/syn", "--label", "id",
                                    "--out", "{C}/e"],
         _syn_labels("".join(f'{{"file": "img/{i:06d}.png", "id": {[i, i] if i == 5 else i}}}\n' for i in range(16))),
         "mix kinds", new=True),
    Case("eval-task-not-numbers", ["evaluate", "task", "--train", "{C}/syn", "--test", "{C}/syn", "--label", "id",
                                    "--kind", "vector", "--out", "{C}/e"],
         _syn_labels("".join(f'{{"file": "img/{i:06d}.png", "id": "x{i}"}}\n' for i in range(16))), "numbers",
         new=True),
    Case("eval-task-kind-foo", ["evaluate", "task", "--train", "{W}/syn", "--test", "{W}/syn", "--label", "id",
                                 "--kind", "cube", "--out", "{C}/e"], match="--kind", new=True),
    Case("eval-task-seeds-0", ["evaluate", "task", "--train", "{W}/syn", "--test", "{W}/syn", "--label", "id",
                                "--seeds", "0", "--out", "{C}/e"], match="--seeds", new=True),
    Case("eval-gaze-unlabelled", ["evaluate", "gaze", "--train", "{W}/real", "--test", "{W}/syn", "--out", "{C}/e",
                                  "-q"]),
    Case("eval-gaze-no-gaze-labels", ["evaluate", "gaze", "--train", "{W}/syn", "--test", "{W}/syn", "--out",
                                      "{C}/e", "-q"], match="gaze"),
    Case("eval-gaze-out-in-input", ["evaluate", "gaze", "--train", "{W}/syn", "--test", "{W}/syn", "--out",
                                    "{W}/syn/eval", "-q"], match="inside"),
    Case("eval-gaze-minutes-nan", ["evaluate", "gaze", "--train", "{W}/syn", "--test", "{W}/syn", "--out", "{C}/e",
                                   "--max-minutes", "nan", "-q"], match="--max-minutes"),
    Case("eval-realism-missing", ["evaluate", "realism", "--real", "{C}/nope", "--candidate", "{W}/syn", "--out",
                                  "{C}/e", "-q"], match="not found"),
    Case("eval-realism-max-images-0", ["evaluate", "realism", "--real", "{W}/real", "--candidate", "{W}/syn",
                                       "--out", "{C}/e", "--max-images", "0", "-q"]),
    Case("eval-realism-out-file", ["evaluate", "realism", "--real", "{W}/real", "--candidate", "{W}/syn", "--out",
                                   "{W}/tiny.yaml", "-q"]),
    Case("eval-pres-missing", _with(PRES, refined="{C}/nope"), match="not found"),
    Case("eval-pres-max-pairs", PRES + ["--max-pairs", "-1"], match="--max-pairs"),
    Case("eval-pres-contradiction", PRES + ["--no-gaze", "--estimator", "{C}/x.pt"], match="contradict"),
    Case("eval-pres-out-in-input", _with(PRES, out="{W}/syn/p"), match="inside"),
    Case("eval-pres-other-shape", _with(PRES, refined="{C}/in"), _other_shape),
    Case("eval-unknown", ["evaluate", "beauty", "--out", "{C}/e"]),
    # -- ablate, demo ---------------------------------------------------------------------------
    Case("ablate-out-in-real", ["ablate", "--synthetic", "{W}/syn", "--real", "{W}/real", "--test", "{W}/syn",
                                "--out", "{W}/real/abl"], match="inside"),
    Case("ablate-variant-foo", ["ablate", "--synthetic", "{W}/syn", "--real", "{W}/real", "--test", "{W}/syn",
                                "--out", "{C}/abl", "--variants", "foo"], match="foo"),
    Case("ablate-out-exists", ["ablate", "--synthetic", "{W}/syn", "--real", "{W}/real", "--test", "{W}/syn",
                               "--out", "{C}/abl"], _exists("abl"), "already exists"),
    Case("demo-out-exists", ["demo", "--out", "{C}/d"], _exists("d"), "already exists"),
    Case("demo-device-cuda", ["demo", "--out", "{C}/d", "--device", "cuda:7"]),
    # -- turing ---------------------------------------------------------------------------------
    Case("turing-real-missing", _with(SERVE, real="{C}/nope"), match="nope"),
    Case("turing-n-0", _with(SERVE, n="0"), match="--n"),
    Case("turing-port-range", SERVE + ["--port", "70000"], match="--port"),
    Case("turing-busy-port", SERVE + ["--port", "@port"], _busy_port),
    Case("turing-db-in-input", _with(SERVE, db="{W}/real/t.db"), match="inside"),
    Case("turing-report-missing", ["turing", "report", "--db", "{C}/nope.db"], match="not found"),
    Case("turing-report-garbage", ["turing", "report", "--db", "{C}/g.db"],
         lambda W, C: _write(C / "g.db", b"not a database" * 100)),
    # -- presets, export, bench, top level ------------------------------------------------------
    Case("presets-foo", ["presets", "foo"], match="foo"),
    Case("presets-size-0", ["presets", "generic", "--size", "0x0"], match="size"),
    Case("presets-size-negative", ["presets", "generic", "--size", "-5x-5"], match="size"),
    Case("presets-size-text", ["presets", "generic", "--size", "big"], match="size"),
    Case("presets-config-latin1", ["presets", "--config", "{C}/bad.yaml"], _config("# r\xe9glages\n".encode("latin-1")),
         "UTF-8"),
    Case("export-run-missing", ["export", "--run", "{C}/nope", "--out", "{C}/r.safetensors"], match="not found",
         new=True),
    Case("export-suffix", ["export", "--run", "{W}/run", "--out", "{C}/r.bin"], match=".safetensors", new=True),
    Case("export-no-folder", ["export", "--run", "{W}/run", "--out", "{C}/no/r.safetensors"], match="does not exist",
         new=True),
    Case("export-exists", ["export", "--run", "{W}/run", "--out", "{C}/r.safetensors"],
         lambda W, C: _write(C / "r.safetensors", "x"), "already exists", new=True),
    Case("export-into-run", ["export", "--run", "{W}/run", "--out", "{W}/run/r.safetensors"], match="inside", new=True),
    Case("export-legacy", ["export", "--run", "{C}/old", "--out", "{C}/r.safetensors"], _legacy_run, "--trust-pickle",
         new=True),
    Case("bench-bogus-flag", ["bench", "--bogus"]),
    Case("top-unknown-command", ["nosuchcommand"]),
    Case("top-unknown-option", ["--bogus"]),
]


# ----------------------------------------------------------------------------------------------
# running and judging one case


def snapshot(*roots: Path) -> dict:
    """Path -> (kind, mode, mtime, sha256) of every file; folders by path and mode."""
    snap = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = os.lstat(p)
                if stat.S_ISLNK(st.st_mode):
                    snap[str(p)] = ("link", os.readlink(p))
                elif stat.S_ISDIR(st.st_mode):
                    snap[str(p)] = ("dir", st.st_mode)
                else:
                    snap[str(p)] = ("file", st.st_mode, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return snap


def expand(args: list[str], W: Path, C: Path) -> list[str]:
    out = []
    for a in args:
        if a == "@port":
            a = (C / "port").read_text()
        out.append(a.replace("{W}", str(W)).replace("{C}", str(C)))
    return out


def invoke(argv: list[str], timeout: int = 60) -> tuple[int, str, str, BaseException | None]:
    """``simgan ARGV`` in this process: (exit status, stdout, stderr, exception that escaped)."""
    from simgan.cli import main

    out, err = io.StringIO(), io.StringIO()
    code, escaped = 0, None

    def alarm(signum, frame):
        raise TimeoutError(f"still running after {timeout} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(timeout)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - a traceback is one of the outcomes measured
        code, escaped = 1, exc
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return code, out.getvalue(), err.getvalue(), escaped


def judge(before: dict, after: dict, code: int, err: str, escaped, outputs=()) -> str | None:
    """The class of failure this outcome falls in (None: the promise held). A changed
    or deleted path counts as damaged input unless it lies in one of ``outputs`` (what the
    command was asked to write: a run it resumed, say)."""
    if any(p.endswith(os.sep + "pwned") for p in after):
        return CLASSES[5]
    owned = tuple(str(o) + os.sep for o in outputs)
    if any(after.get(p) != v and not (p + os.sep).startswith(owned) for p, v in before.items()):
        return CLASSES[4]
    if isinstance(escaped, TimeoutError):  # it went to work (or served) on bad input
        return CLASSES[2]
    if code == 0 and escaped is None:
        return CLASSES[2]
    if escaped is not None or code == 1 or "Traceback" in err:
        return CLASSES[0]
    if "Usage:" in err and "Error:" in err:
        return CLASSES[1]
    if set(after) - set(before):
        return CLASSES[3]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if len(lines) != 1 or not lines[0].startswith("simgan: error:") or code != 2:
        return CLASSES[6]
    return None


def run_case(case: Case, W: Path, C: Path):
    C.mkdir(parents=True, exist_ok=True)
    if case.setup is not None:
        case.setup(W, C)
    before = snapshot(W, C)
    argv = expand(case.args, W, C)
    outputs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--out", "-o", "--db")]
    try:
        code, out, err, escaped = invoke(argv)
    finally:
        sock = getattr(_busy_port, "sock", None)
        if sock is not None:
            sock.close()
            _busy_port.sock = None
    after = snapshot(W, C)
    return judge(before, after, code, err, escaped, outputs), code, err, escaped, before, after


# ----------------------------------------------------------------------------------------------
# the test


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


def test_the_table_is_big_and_covers_every_command():
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)
    from simgan.cli import COMMANDS
    covered = {c.args[0] for c in CASES}
    assert set(COMMANDS) <= covered, set(COMMANDS) - covered


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, world, tmp_path):
    verdict, code, err, escaped, before, after = run_case(case, world, tmp_path / "case")
    assert escaped is None, f"{type(escaped).__name__}: {escaped}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("simgan: error:"), (code, err)
    assert case.match in lines[0], lines[0]
    added = sorted(set(after) - set(before))
    changed = sorted(p for p in before if after.get(p) != before[p])
    assert not added, f"left behind: {added}"
    assert not changed, f"inputs changed or deleted: {changed}"
    assert verdict is None
    assert not (tmp_path / "case" / "pwned").exists()  # no pickle payload ever ran


# ----------------------------------------------------------------------------------------------
# script: class counts for the simgan on PYTHONPATH


def main() -> None:
    import tempfile

    import simgan
    only_old = "--old" in sys.argv  # only the cases of the first torture table
    root = Path(tempfile.mkdtemp(prefix="simgan-torture-"))
    W = build_world(root / "world")
    pristine = root / "world.orig"
    shutil.copytree(W, pristine)
    original = snapshot(W)
    counts = {c: 0 for c in CLASSES}
    n = 0
    for i, case in enumerate(CASES):
        if only_old and case.new:
            continue
        n += 1
        verdict, code, err, escaped, _, _ = run_case(case, W, root / f"case{i:03d}")
        if {k.replace(str(W), "") for k in original} != {k.replace(str(W), "") for k in snapshot(W)} or \
                snapshot(W) != original:  # a case changed the shared inputs: restore them for the next
            shutil.rmtree(W)
            shutil.copytree(pristine, W)
        if verdict is not None:
            counts[verdict] += 1
            shown = (f"{type(escaped).__name__}: {escaped}" if escaped else err.strip().replace("\n", " | "))[:150]
            print(f"  {case.id}: {verdict} (exit {code}) {shown}")
    print(f"simgan from {Path(simgan.__file__).parent}: {n} cases")
    for c in CLASSES:
        print(f"  {counts[c]:4d}  {c}")
    print(f"  {n - sum(counts.values()):4d}  one line, exit 2, nothing left, inputs unchanged")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
