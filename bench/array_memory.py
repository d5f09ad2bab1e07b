"""Refine's peak memory in the array format at the paper's scale: 10,000 against 1.2 million eyes.

    PYTHONPATH=src python bench/array_memory.py --work DIR [--sizes 10000,1200000] [--width 8]

Renders 10,000 synthetic eyes into the array format once, repeats them into a set of each size
(shards written directly: 2.3 GB for 1.2M 55x35 eyes), and refines each with `simgan refine` in
its own process (array in, array out) using an eyes-preset refiner of ``--width`` maps (random
weights: memory does not depend on them, and a narrow R keeps the 1.2M run to minutes on a CPU).
Prints, per size, the refine's own peak resident memory and rate, and the growth. Needs about
2 x 2.3 GB of disk at 1.2M.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path



def tiled(base: Path, out: Path, n: int) -> Path:
    """``n`` images: the base set's shards repeated (labels lines repeated with them)."""
    from simgan.datasets import open_dataset
    from simgan.datasets.shards import ShardWriter

    if out.exists():
        return out
    src = open_dataset(base)
    images, lines = src.load(), list(src.iter_label_lines())
    with ShardWriter(out, src.spec, n, len(images)) as w:
        for k in range(w.n_shards):
            w.write_shard(k, images[:w.rows(k)])
        return w.finish(lines[i % len(lines)] for i in range(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--sizes", default="10000,1200000")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=256)
    a = ap.parse_args()
    from simgan.experiments.bench import fake_run
    from simgan.simulators.eyes import simulate_eyes

    a.work.mkdir(parents=True, exist_ok=True)
    base = a.work / "base.shards"
    if not base.exists():
        simulate_eyes(base, 10_000, seed=0, progress=False)
    run = fake_run(a.work / "run", a.width)
    report = {"width": a.width, "batch_size": a.batch_size, "sizes": {}}
    for n in (int(s) for s in a.sizes.split(",")):
        data = tiled(base, a.work / f"in_{n}.shards", n)
        out = a.work / f"out_{n}.shards"
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "simgan", "refine", "--run", str(run), "--input", str(data),
                               "--out", str(out), "--device", "cpu", "--precision", "fp32", "--batch-size",
                               str(a.batch_size), "--quiet"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr.strip().splitlines()[-1])
        m = re.search(r"\(([0-9.]+) images/s, peak memory ([0-9.]+) MiB\)", proc.stdout)
        report["sizes"][n] = {"images_per_s": float(m.group(1)), "peak_rss_mib": float(m.group(2)),
                              "seconds": time.perf_counter() - t}
        print(f"{n:>9} images: peak {float(m.group(2)):7.1f} MiB, {float(m.group(1)):8.0f} images/s", flush=True)
        import shutil
        shutil.rmtree(out)
    sizes = list(report["sizes"])
    growth = report["sizes"][sizes[-1]]["peak_rss_mib"] / report["sizes"][sizes[0]]["peak_rss_mib"] - 1
    report["growth"] = growth
    print(f"growth from {sizes[0]} to {sizes[-1]} images: {growth:+.1%}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
