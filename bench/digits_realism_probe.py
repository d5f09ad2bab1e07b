"""What the two-sample test sees on the digits: hand-made refinements, and colour alone.

    PYTHONPATH=src python bench/digits_realism_probe.py --seed S [--demo OUT ...]

1. Builds the digits demo's domains for seed S and turns its synthetic digits x into hand-made
   "refinements": ``|c - x|`` with a random colour c per image, ``|m - x|`` with m the mean colour
   of a fresh photo patch (flat, no texture), ``|blur(p) - x|`` with a blurred fresh patch p, and
   ``|p - x|`` itself (the process that made the real set, with other digits). Each is tested
   against the demo's real set with the demo's classifier two-sample test (same images, settings
   and seed), so its accuracy can be read beside the demo's.
2. For each ``--demo OUT`` (a finished `simgan demo digits` folder), a classifier that sees only
   each image's mean and standard deviation per colour channel (six numbers; gradient boosting,
   5-fold cross-validated) tells synthetic, refined (the first refinement of each image) and
   real images apart: how much of the two-sample test is the images' global colour.

Prints one line per figure. docs/results/realism.md has the figures.
"""

from __future__ import annotations

import argparse

import numpy as np


def hand_made(seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    from scipy.ndimage import gaussian_filter

    from simgan.simulators.digits import (blend, load_digit_images, load_photos, make_digits_domains,
                                          random_patches, to_uint8)
    d = make_digits_domains(seed)
    x = load_digit_images()[0][d.synthetic_ids]
    rng = np.random.default_rng(100 + seed)
    p = random_patches(load_photos(), len(x), x.shape[1], rng)
    c = rng.uniform(0, 1, (len(x), 1, 1, 3)).astype(np.float32)
    m = p.mean(axis=(1, 2), keepdims=True)
    sets = {
        "synthetic x": d.synthetic,
        "|c - x|, a random flat colour": to_uint8(np.abs(c - x[..., None])),
        "|m - x|, a fresh patch's mean colour (flat)": to_uint8(np.abs(m - x[..., None])),
        "|blur(p) - x|, sigma 3 px": to_uint8(np.abs(gaussian_filter(p, (0, 3, 3, 0)) - x[..., None])),
        "|blur(p) - x|, sigma 1 px": to_uint8(np.abs(gaussian_filter(p, (0, 1, 1, 0)) - x[..., None])),
        "|p - x|, a fresh photo patch (the real set's process)": to_uint8(blend(x, p)),
    }
    real = d.real[np.random.default_rng(seed).permutation(len(d.real))[:1000]]  # the demo's own draw
    return real, sets


def colour_only_accuracy(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import cross_val_score

    def feats(imgs):
        f = imgs.reshape(len(imgs), -1, imgs.shape[-1]).astype(np.float32) / 255
        return np.concatenate([f.mean(1), f.std(1)], 1)
    n = min(len(a), len(b), 1000)
    X = np.concatenate([feats(a[:n]), feats(b[:n])])
    y = np.r_[np.zeros(n), np.ones(n)]
    return float(cross_val_score(HistGradientBoostingClassifier(max_iter=200, random_state=0), X, y, cv=5).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--demo", action="append", default=[], metavar="OUT", help="a `simgan demo digits` output folder")
    a = ap.parse_args()
    from simgan.datasets import open_dataset
    from simgan.evaluation.realism import C2STSettings, classifier_two_sample_test

    real, sets = hand_made(a.seed)
    for name, imgs in sets.items():
        r = classifier_two_sample_test(real, imgs[:1000], settings=C2STSettings(), seed=a.seed, device="cpu", name=name)
        print(f"seed {a.seed}: C2ST {r['accuracy']:.1%}  {name}", flush=True)
    for out in a.demo:
        def load(name, step=1):
            ds = open_dataset(f"{out}/data/{name}")
            return ds.read_many(range(0, len(ds), step))
        real_all = load("real_unlabelled")
        real_all = real_all[np.random.default_rng(0).permutation(len(real_all))]
        refined = load("refined")
        k = len(refined) // len(load("synthetic"))  # refinements per image, in a row
        print(f"{out}: colour-only classifier vs real: synthetic {colour_only_accuracy(load('synthetic'), real_all):.1%}, "
              f"refined {colour_only_accuracy(refined[::k], real_all):.1%}, real vs real "
              f"{colour_only_accuracy(real_all[:len(real_all) // 2], real_all[len(real_all) // 2:]):.1%}", flush=True)


if __name__ == "__main__":
    main()
