#!/usr/bin/env bash
# Your own data, end to end, on made-up disks: what a new user does with two folders of images.
#
#   docs/own_data/disks.sh OUT [MINUTES] [SEED] [SIMGAN-TRAIN-OPTIONS...]
#
# Makes 300 labelled clean white disks on black (the synthetic set, label "centre"), 300 noisy,
# blurred, textured disks on grey (the unlabelled real set), and two labelled real sets of 300
# (a training set for the upper bound and a test set). Then, with simgan's own commands: trains
# with the generic preset in a time budget, refines the synthetic set, tests a model trained on
# each set on the real test disks (two seeds), and measures realism. Results: OUT/task/metrics.json,
# OUT/realism/metrics.json, OUT/run/summary.json. Options after SEED go to `simgan train` (for example
# `--set loss.lambda_reg=0.1`). Needs `simgan` and `python` (with simgan) on PATH.
set -euo pipefail
OUT=${1:?usage: disks.sh OUT [MINUTES] [SEED]}
MINUTES=${2:-10}
SEED=${3:-0}
shift $(( $# < 3 ? $# : 3 ))
PYTHON=${PYTHON:-python}

"$PYTHON" - "$OUT" <<'PY'
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from simgan.datasets import write_dataset

out, size = Path(sys.argv[1]), 32
yy, xx = np.mgrid[:size, :size]


def disks(n, seed, real):
    rng = np.random.default_rng(seed)
    images, labels = np.empty((n, size, size, 1), np.uint8), []
    for i in range(n):
        cx, cy, r = rng.uniform(9, 23), rng.uniform(9, 23), rng.uniform(4, 7)
        disk = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r).astype(float)
        if real:  # grey background with a texture, a dimmer blurred disk, sensor noise
            texture = gaussian_filter(rng.normal(0, 1, (size, size)), 2.0) * 40
            img = 100 + texture + gaussian_filter(disk, 1.2) * 90 + rng.normal(0, 10, (size, size))
        else:
            img = disk * 255
        images[i, :, :, 0] = np.clip(img, 0, 255).astype(np.uint8)
        labels.append({"centre": [[round(cx, 3), round(cy, 3)]]})
    return images, labels


for name, seed, real, labelled in (("synthetic", 1, False, True), ("real", 2, True, False),
                                   ("real_train", 3, True, True), ("real_test", 4, True, True)):
    images, labels = disks(300, seed, real)
    write_dataset(out / name, images, labels if labelled else None)
PY

/usr/bin/time -f "simgan train: %e s wall" simgan train --synthetic "$OUT/synthetic" --real "$OUT/real" \
    --out "$OUT/run" --preset generic --minutes "$MINUTES" --seed "$SEED" "$@"
simgan refine --run "$OUT/run" --input "$OUT/synthetic" --out "$OUT/refined"
simgan evaluate task --train "$OUT/synthetic" --train "$OUT/refined" --train "$OUT/real_train" \
    --test "$OUT/real_test" --label centre --kind points --seeds 2 --out "$OUT/task"
simgan evaluate realism --real "$OUT/real_test" --candidate "$OUT/synthetic" --candidate "$OUT/refined" \
    --out "$OUT/realism"
