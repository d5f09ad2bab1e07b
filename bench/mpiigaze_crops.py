"""A user with a few hundred real images: simgan's synthetic eyes refined towards real eye crops.

    PYTHONPATH=src python bench/mpiigaze_crops.py --crops PATH/mpiigaze_real --out DIR --seed S \
        [--set section.key=value ...]

Renders 1,000 synthetic eyes (``simulate eyes --seed 0``, once per DIR), trains SimGAN with the
generic preset as it is (50 D-pretraining steps + 150 rounds of batch 32; the settings given with
``--set`` on top), refines the synthetic set and measures realism against the crops
(``evaluate realism --max-images 300``: two-sample test, kernel distance, the frame and looks
measures, and FID / KID with the ``simgan[fid]`` extra). Prints one JSON line. The crops are read
in place and never copied. docs/results/realism.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import simgan
from simgan.config import parse_set
from simgan.presets import merge_settings
from simgan.simulators.eyes import simulate_eyes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--crops", required=True, help="folder of real eye crops (55x35 gray)")
    ap.add_argument("--out", required=True, help="work folder (the synthetic eyes are kept there for reuse)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="assignments", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--name", default=None, help="name of this run inside --out (default: seed and settings)")
    a = ap.parse_args()
    out = Path(a.out)
    syn = out / "synthetic"
    if not syn.exists():
        simulate_eyes(syn, 1000, seed=0, domain="synthetic", progress=False)
    name = a.name or f"s{a.seed}" + "".join(f"_{x}" for x in a.assignments)
    run_dir = out / name
    t = time.time()
    settings = merge_settings({"train": {"seed": a.seed, "device": "cpu"}}, parse_set(a.assignments))
    cfg = simgan.resolve_config("generic", overrides=settings)
    run = simgan.train(cfg, syn, a.crops, run_dir / "run", progress=False, echo=lambda m: None)
    simgan.refine_dataset(run.run, input=syn, out=run_dir / "refined", device="cpu", progress=False)
    m = simgan.evaluate_realism(a.crops, {"synthetic": syn, "refined": run_dir / "refined"}, run_dir / "realism",
                                device="cpu", seed=a.seed, max_images=300, inception=True)
    res = {}
    for k, r in m["results"].items():
        res[k] = {"c2st": r["c2st"]["accuracy"], "kid_frozen": r["kid"]["kid"],
                  "fid": (r.get("inception") or {}).get("fid"), "kid": (r.get("inception") or {}).get("kid"),
                  "frame_ratio": r["looks"]["frame_ratio"], "neighbour_ratio": r["looks"]["neighbour_ratio"]}
    print(json.dumps({"name": name, "seed": a.seed, "set": a.assignments, "results": res,
                      "verdict": json.loads((run.run / "summary.json").read_text())["verdict"],
                      "minutes": (time.time() - t) / 60}))


if __name__ == "__main__":
    main()
