"""Which effects of the hand demo's target domain does the §3.2 pose estimator need to have seen?

The hand demo (``simgan demo hands``) asks whether a pose estimator trained on refined depth
images beats one trained on synthetic images, when both are tested on target (Kinect-like)
images. A refiner helps only if it adds the target effects that the estimator's errors come
from. This script measures them: with the demo's default settings and seed, it renders as many
hands as the demo's synthetic set (same pose distribution; the target domain draws its own poses)
through a sensor with some effects of :class:`simgan.simulators.kinect.SensorModel` switched on
or off, trains the demo's stacked
hourglass on each set and tests it on the demo's held-out target images (% of joints within 5 px
of the 64x64 test images, Table 4's measure). The first rows are the demo's synthetic set and
hands through the full sensor: the floor and the ceiling of what a refiner can reach.

    PYTHONPATH=src python bench/hand_effects.py                # every row, about 25 min on 1 core
    PYTHONPATH=src python bench/hand_effects.py --rows synthetic,full,shadow_far
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

# Rows: (start from, changes) of a SensorModel; None: the clean synthetic renderer. "default"
# starts from the full sensor, "clean" from every effect off. "far": the background plane always
# stands beyond the 400 mm hand cube, so it is encoded as far, like the synthetic images' empty
# background: what is left is an effect a refiner can draw onto a synthetic image.
ROWS = {
    "synthetic": None,
    "full": ("default", {}),
    "no_shadow": ("default", {"shadow": False}),
    "no_plane": ("default", {"background_prob": 0.0}),
    "no_clutter": ("default", {"clutter_max": 0}),
    "no_edges": ("default", {"jitter_px": 0.0, "p_edge_drop": 0.0, "p_flying": 0.0, "grazing_deg": (90.0, 91.0)}),
    "no_holes_noise": ("default", {"holes_max": 0, "noise": False, "quantise": False}),
    "surroundings_only": ("clean", {"background_prob": 0.8, "clutter_max": 2}),
    "shadow_far": ("clean", {"background_prob": 1.0, "background_mm": (250.0, 650.0), "shadow": True}),
    "shadow_edges_far": ("default", {"background_prob": 1.0, "background_mm": (250.0, 650.0), "clutter_max": 0,
                                     "holes_max": 0}),
}


def sensor_for(row: str):
    from simgan.simulators.kinect import SensorModel

    if ROWS[row] is None:
        return None
    start, changes = ROWS[row]
    return replace(SensorModel.clean() if start == "clean" else SensorModel(), **changes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", default=",".join(ROWS), help="rows to measure, comma-separated")
    ap.add_argument("--seed", type=int, default=0, help="the demo's seed (its data and estimator seeds)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from simgan.evaluation.pose import PoseTrainSettings, evaluate_pose
    from simgan.experiments.demo_hands import CUBE_MM, HANDS_DEMO_SETTINGS
    from simgan.simulators.hands import write_hands

    rows = args.rows.split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"hand_effects: unknown rows {unknown}; choose from {', '.join(ROWS)}")
    s = HANDS_DEMO_SETTINGS["default"]
    size, render = s.size, max(s.size, s.render_size)
    base = args.seed * 10  # the demo's data seeds: synthetic base + 1, target test base + 4
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_hands(tmp / "test", s.n_test, seed=base + 4, size=size, domain="target", cube_mm=CUBE_MM,
                    render_size=render)
        for row in rows:
            t = time.time()
            sensor = sensor_for(row)
            write_hands(tmp / row, s.n_synthetic, seed=base + 1, size=size, cube_mm=CUBE_MM, render_size=render,
                        domain="synthetic" if sensor is None else "target", sensor=sensor)
            pose = evaluate_pose({row: tmp / row}, tmp / "test", device="cpu", seed=args.seed,
                                 settings=PoseTrainSettings(**s.pose), save_estimators=False)
            print(json.dumps({"row": row, "seed": args.seed, "pck5": round(pose["results"][row]["pck5"], 2),
                              "seconds": round(time.time() - t)}), flush=True)


if __name__ == "__main__":
    main()
