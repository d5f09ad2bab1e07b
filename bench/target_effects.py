"""Which effects of the eye demo's target domain can a two-sample classifier see?

The eye demo's realism measure is a classifier two-sample test (C2ST) between refined and target
eyes. A refiner only has to reproduce the target effects that such a classifier can detect. This
script measures them: it renders N target eyes (seed 100) and, for each effect of
:class:`simgan.simulators.webcam.TargetAppearance`, N target eyes with that effect switched off
(seed 101), and runs the demo's C2ST between the two sets. About 50% means the classifier cannot
see the effect; the higher, the more of the test it decides. The first row ("none": no effect
removed, another seed) is the test's floor.

With ``--refined FILE.npy`` (an ``N×H×W×1`` uint8 array of refined eyes, and ``--target-dir`` the
demo's ``data/target_train`` folder of the same seed) it instead runs the C2ST between the target
eyes and post-hoc changes of the refined ones (histogram equalisation, blur, added noise): how
far each missing effect holds a refiner from passing.

    PYTHONPATH=src python bench/target_effects.py                 # 2,000 a side, about 12 min on 1 core
    PYTHONPATH=src python bench/target_effects.py --n 500 --effects none,noise,equalize
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

EFFECTS = {
    "none": {}, "noise": {"read_noise": (0.0, 0.0), "shot_noise": (0.0, 0.0)},
    "skin": {"skin_texture": 0.0}, "glasses": {"glasses_prob": 0.0}, "shadow": {"shadow_prob": 0.0},
    "gradient": {"gradient": 0.0}, "glints": {"glint_prob": 0.0, "second_glint_prob": 0.0},
    "lashes": {"lash_prob": 0.0}, "blur": {"blur_sigma": (0.4, 0.4), "downsample": (1.0, 1.0)},
    "exposure": {"exposure": (1.0, 1.0)}, "gamma": {"gamma": (1.0, 1.0)}, "equalize": {"equalize_prob": 0.0},
    # every scene layer at once (skin texture, lashes, glints, spectacle rims): what is left is the
    # camera alone: image-level effects that a refiner can apply to a synthetic image
    "scene_layers": {"skin_texture": 0.0, "lash_prob": 0.0, "glint_prob": 0.0, "second_glint_prob": 0.0,
                     "glasses_prob": 0.0},
}


def post_hoc(name: str, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``images`` (N×H×W×1 uint8) after the named chain of changes, e.g. ``blur1+eq+noise6``."""
    from scipy.ndimage import gaussian_filter
    from simgan.simulators.webcam import equalize_histograms

    out = images
    for step in name.split("+"):
        f = out.astype(np.float32)
        if step == "eq":
            out = equalize_histograms(out[..., 0])[..., None]
            continue
        if step.startswith("blur"):
            sigma = float(step[4:].replace("p", "."))
            f = gaussian_filter(f, (0, sigma, sigma, 0))
        elif step.startswith("noise"):
            f = f + rng.normal(0.0, float(step[5:].replace("p", ".")), f.shape)
        elif step != "raw":
            raise SystemExit(f"target_effects: unknown post-hoc step {step!r}")
        out = np.clip(np.round(f), 0, 255).astype(np.uint8)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="images a side")
    ap.add_argument("--effects", default=",".join(EFFECTS), help="effects to remove, one C2ST each")
    ap.add_argument("--refined", type=Path, help="refined eyes (.npy, N×35×55×1 uint8): post-hoc mode")
    ap.add_argument("--target-dir", type=Path, help="target image folder for --refined (its img/*.png, sorted)")
    ap.add_argument("--post-hoc", default="raw,eq,blur1+eq,blur1+eq+noise6,noise6",
                    help="chains of eq / blurS / noiseS (S: sigma, 0p7 = 0.7) joined by +")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from simgan.evaluation.realism import classifier_two_sample_test
    from simgan.simulators.eyes import render_eyes
    from simgan.simulators.webcam import TargetAppearance

    def render(seed: int, **effects) -> np.ndarray:
        images, _ = render_eyes(args.n, seed=seed, domain="target", appearance=TargetAppearance(**effects))
        return images.reshape(args.n, *images.shape[1:3], 1)

    if args.refined is not None:
        from PIL import Image
        refined = np.load(args.refined)[:args.n]
        files = sorted((args.target_dir / "img").glob("*.png"))[:len(refined)]
        target = np.stack([np.asarray(Image.open(f).convert("L")) for f in files])[..., None]
        rng = np.random.default_rng(0)
        for name in args.post_hoc.split(","):
            t = time.time()
            acc = classifier_two_sample_test(target, post_hoc(name, refined, rng), seed=0)["accuracy"]
            print(json.dumps({"refined": str(args.refined), "post_hoc": name, "n": len(refined),
                              "c2st": round(acc, 4), "seconds": round(time.time() - t)}), flush=True)
        return
    target = render(100)
    for name in args.effects.split(","):
        t = time.time()
        acc = classifier_two_sample_test(target, render(101, **EFFECTS[name]), seed=0)["accuracy"]
        print(json.dumps({"without": name, "n": args.n, "c2st": round(acc, 4), "seconds": round(time.time() - t)}), flush=True)


if __name__ == "__main__":
    main()
