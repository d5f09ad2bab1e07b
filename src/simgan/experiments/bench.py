"""``simgan bench``: how fast simgan trains and refines on this machine, against its roofline.

One run measures, for the ``eyes`` preset (55×35 gray, a refiner of 1.14 GFLOP per image):

1. the **roofline**: a stack of the refiner's own 64→64 3×3 convolutions at batch 256, in fp32
   (NCHW and channels-last) and in bf16 (and fp16 on a GPU), as GFLOP/s and the refined images/s
   that rate allows;
2. the **simulator**'s images/s (``simgan simulate eyes``);
3. **training** images/s at batch 64 with K_g = K_d = 1 (synthetic images through refiner
   updates per second, the paper's Algorithm 1 loop as ``simgan train`` runs it), per precision,
   and the same round written the straightforward way (:func:`straightforward_training_speed`);
4. **refining** images/s (``simgan refine`` end to end: PNG decode, refiner, PNG encode), per
   precision, and as a fraction of the best roofline;
5. refining's **peak memory** (resident set of a ``simgan refine`` process) at 10k and at 100k
   images: streaming keeps it flat.

Every figure printed is measured in the same run. The same command runs unchanged on a GPU.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..config import preset
from ..runtime import autocast, native_bf16, onednn_isa_cap, resolve_device, set_threads, synchronize
from ..runtime import cpu_flags as runtime_cpu_flags
from ..models.refiner import Refiner, refiner_flops


def _timeit(fn, *, min_time: float = 2.0, warmup: int = 2, device=None) -> float:
    """Seconds per call of ``fn`` (median of repeated timings after a warm-up)."""
    for _ in range(warmup):
        fn()
    synchronize(device) if device is not None else None
    times = []
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        if device is not None:
            synchronize(device)
        times.append(time.perf_counter() - t)
        if time.perf_counter() - start > min_time and len(times) >= 3:
            break
    return float(np.median(times))


def roofline(device: torch.device, precisions, *, batches=(256, 16), layers: int = 8) -> dict:
    """GFLOP/s of a stack of the eyes refiner's 64->64 3x3 convolutions (its inner loop), the best
    over ``batches``: on a CPU small batches keep the activations in cache, so a single large batch
    would understate the ceiling."""
    h, w, c = 35, 55, 64
    results = {}
    variants = [("fp32", False)] + [(p, True) for p in precisions]
    for prec, channels_last in variants:
        key = f"{prec}{'-channels_last' if channels_last else '-nchw'}"
        if key in results:
            continue
        stack = torch.nn.Sequential(*[torch.nn.Conv2d(c, c, 3, padding=1) for _ in range(layers)]).to(device).eval()
        if channels_last:
            stack = stack.to(memory_format=torch.channels_last)
        for batch in batches:
            x = torch.randn(batch, c, h, w, device=device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)

            def run():
                with torch.no_grad(), autocast(device, prec):
                    stack(x)

            sec = _timeit(run, device=device, min_time=1.5 if device.type == "cpu" else 0.5)
            results[key] = max(results.get(key, 0.0), layers * 2 * c * c * 9 * h * w * batch / sec / 1e9)
    return results


def _simulate(out: Path, n: int, domain: str, seed: int) -> float:
    from ..simulators.eyes import simulate_eyes
    t = time.perf_counter()
    simulate_eyes(out, n, seed=seed, domain=domain, progress=False)
    return n / (time.perf_counter() - t)


def simulator_speed(tmp: Path, n: int) -> dict:
    from ..simulators.eyes import render_eyes
    out = {}
    for domain in ("synthetic", "target"):
        render_eyes(256, seed=0, domain=domain)  # warm-up
        t = time.perf_counter()
        render_eyes(n, seed=1, domain=domain)
        out[f"render_{domain}"] = n / (time.perf_counter() - t)
    out["write_synthetic"] = _simulate(tmp / "sim_speed", n, "synthetic", 2)
    return out


def training_speed(syn: Path, real: Path, tmp: Path, device: torch.device, precision: str, *, rounds: int,
                   compile_: bool = False, batch: int = 64) -> float:
    """Synthetic images per second through refiner updates, eyes preset, K_g = K_d = 1."""
    from ..training import Trainer
    cfg = preset("eyes").override({"train": {
        "steps": rounds + 3, "refiner_pretrain": 0, "disc_pretrain": 0, "kg": 1, "kd": 1, "batch_size": batch,
        "buffer_size": 10 * batch, "device": str(device), "precision": precision, "compile": compile_,
        "log_every": 10 ** 9, "sample_every": 10 ** 9, "checkpoint_every": 10 ** 9}})
    run = tmp / f"train_{precision}_b{batch}{'_compiled' if compile_ else ''}"
    trainer = Trainer(cfg, syn, real, run, progress=False, echo=lambda m: None)
    for _ in range(3):  # warm-up (and compilation)
        trainer.iteration()
        trainer.step += 1
    synchronize(device)
    rows = []
    t = time.perf_counter()
    for _ in range(rounds):
        row, _ = trainer.iteration()
        rows.append(row)
        trainer.step += 1
    torch.stack(rows).cpu()  # one sync, as in training
    return rounds * batch / (time.perf_counter() - t)


def _per_image_tensors(root: Path, n: int) -> list[torch.Tensor]:
    """The first ``n`` images of a folder as a list of C×H×W float tensors in [-1, 1]."""
    from ..datasets.folder import decode_image, list_image_files

    return [torch.from_numpy(decode_image(root / f).astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)
            for f in list_image_files(root)[:n]]


def straightforward_training_speed(syn: Path, real: Path, device: torch.device, *, rounds: int,
                                   n_images: int = 2000) -> float:
    """The same networks and Algorithm 1 round, written the way public SimGAN code is: fp32, NCHW,
    a Python list of per-image tensors stacked into each batch, the history buffer as a list of
    numpy arrays, a full batch refined for each D step, and ``.item()`` on every loss every step.
    The reference point for "how much faster than the usual code", measured on this machine
    instead of quoted."""
    import random

    from ..models import losses
    from ..models.discriminator import build_discriminator
    from ..training import make_optimizer
    cfg = preset("eyes")
    rng = random.Random(0)
    syn_images, real_images = _per_image_tensors(syn, n_images), _per_image_tensors(real, n_images)
    torch.manual_seed(0)
    R = Refiner(cfg.refiner, 1).to(device)
    D = build_discriminator(cfg.discriminator, 1, 35, 55).to(device)
    psi = losses.feature_transform(cfg.loss.feature, 1).to(device)
    opt_r = make_optimizer(R.parameters(), cfg.train, cfg.train.lr)  # the preset's, as simgan train uses it
    opt_d = make_optimizer(D.parameters(), cfg.train, cfg.train.lr)
    history: list[np.ndarray] = []
    b = 64

    def one_round() -> None:
        x = torch.stack(rng.sample(syn_images, b)).to(device)  # R step
        refined = R(x)
        loss, _, _ = losses.refiner_loss(D(refined), refined, x, psi, cfg.loss.lambda_reg)
        opt_r.zero_grad()
        loss.backward()
        opt_r.step()
        loss.item()
        x = torch.stack(rng.sample(syn_images, b)).to(device)  # D step
        with torch.no_grad():
            new = R(x)
        fakes = [im for im in new.cpu().numpy()]
        if len(history) >= b // 2:
            fakes[b // 2:] = rng.sample(history, b // 2)
        history.extend(new[:b // 2].cpu().numpy())
        del history[:max(0, len(history) - 640)]
        fake = torch.from_numpy(np.stack(fakes)).to(device)
        y = torch.stack(rng.sample(real_images, b)).to(device)
        logits_fake, logits_real = D(fake), D(y)
        d_loss = losses.discriminator_loss(logits_fake, logits_real)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        d_loss.item()
        losses.discriminator_accuracy(logits_fake, losses.REFINED).item()
        losses.discriminator_accuracy(logits_real, losses.REAL).item()

    for _ in range(3):
        one_round()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(rounds):
        one_round()
    synchronize(device)
    return rounds * b / (time.perf_counter() - start)


def cpu_flags() -> list[str]:
    """The CPU features that decide which precision is fast: figures from machines with different
    flags are not comparable."""
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    have = runtime_cpu_flags()
    return [f for f in wanted if f in have]


def as_shards(data: Path, tmp: Path) -> Path:
    """``data`` converted to the array format once (``tmp/NAME.shards``)."""
    from ..datasets.conversion import convert
    out = tmp / f"{data.name}.shards"
    return out if out.exists() else convert(data, out)


def loader_speed(data: Path, tmp: Path) -> dict:
    """Images per second that training's loading of a set into memory reaches (``Dataset.load``,
    what :class:`~simgan.training.sampling.ImageSource` is built from): the PNG folder (decoded on 4
    threads) and the same images in the array format."""
    from ..datasets import open_dataset
    arr = as_shards(data, tmp)
    out = {}
    for name, path in (("png", data), ("shards", arr)):
        t = time.perf_counter()
        n = len(open_dataset(path).load())
        out[name] = n / (time.perf_counter() - t)
    return out


def png_codec_costs(data: Path, tmp: Path, n: int, rounds: int = 3) -> dict:
    """Microseconds per image of PNG decode and of encode + write, with Pillow and with the fast
    codec (:mod:`simgan.datasets.png`) when it is installed, on the same files in one process:
    the codecs alternate for ``rounds`` rounds and each figure is its best round, so that neither
    codec pays for a cold start or a busy moment of the machine alone."""
    import os

    from ..datasets import decode_image, encode_png, png
    from ..datasets.folder import list_image_files
    files = [data / f for f in list_image_files(data)[:n]]
    out: dict = {}

    def best(codec: str, key: str, us: float) -> None:
        figures = out.setdefault(codec, {})
        figures[key] = min(figures.get(key, us), us)

    for r in range(rounds):
        for codec in ("pillow", "opencv") if png.enabled() else ("pillow",):
            old = os.environ.get("SIMGAN_PNG_CODEC")
            os.environ["SIMGAN_PNG_CODEC"] = codec
            try:
                t = time.perf_counter()
                images = [decode_image(f) for f in files]
                best(codec, "decode_us", (time.perf_counter() - t) / len(files) * 1e6)
                d = tmp / f"codec_{codec}_{r}"
                d.mkdir()
                t = time.perf_counter()
                for i, im in enumerate(images):
                    encode_png(d / f"{i:06d}.png", im)
                best(codec, "encode_write_us", (time.perf_counter() - t) / len(files) * 1e6)
            finally:
                if old is None:
                    os.environ.pop("SIMGAN_PNG_CODEC")
                else:
                    os.environ["SIMGAN_PNG_CODEC"] = old
        # The file system's share, the same for every codec: creating and writing files of the
        # same sizes with plain system calls, and reading them back.
        d = tmp / f"codec_files_{r}"
        d.mkdir()
        sizes = [f.stat().st_size for f in files]
        t = time.perf_counter()
        for i, size in enumerate(sizes):
            png.write_bytes(d / f"{i:06d}.png", bytes(size))
        best("file_system", "create_write_us", (time.perf_counter() - t) / len(files) * 1e6)
        t = time.perf_counter()
        for f in files:
            png.read_bytes(f)
        best("file_system", "read_us", (time.perf_counter() - t) / len(files) * 1e6)
    return out


def refine_breakdown(run: Path, data: Path, tmp: Path, device: torch.device, precision: str, *, n: int,
                     batch: int) -> dict:
    """Microseconds per image of each stage of refining, run one after another in this process:
    PNG decode, to tensor (scale, layout, copy to the device), the refiner, from tensor (back to
    8-bit pixels on the host), PNG encode and write. Shows where the time goes."""
    from ..datasets import decode_image, encode_png, from_model, to_model
    from ..datasets.folder import list_image_files
    from ..pipelines.refine import inference_refiner
    model, _, _, precision = inference_refiner(run, device, precision)
    files = list_image_files(data)[:n]
    out = tmp / f"breakdown_{precision}"
    out.mkdir()
    stages = dict.fromkeys(("decode", "to_tensor", "model", "from_tensor", "encode_write"), 0.0)

    def clock(stage, fn):
        synchronize(device)
        t = time.perf_counter()
        result = fn()
        synchronize(device)
        stages[stage] += time.perf_counter() - t
        return result

    with torch.no_grad(), autocast(device, precision):  # warm-up: the first batch pays for set-up
        model(to_model(np.stack([decode_image(data / f) for f in files[:batch]]), 255, device=device))
    for s in range(0, len(files), batch):
        names = files[s:s + batch]
        pixels = clock("decode", lambda: np.stack([decode_image(data / f) for f in names]))
        x = clock("to_tensor", lambda: to_model(pixels, 255, device=device).contiguous(
            memory_format=torch.channels_last))

        def forward():
            with torch.no_grad(), autocast(device, precision):
                return model(x)
        y = clock("model", forward)
        refined = clock("from_tensor", lambda: from_model(y.float(), 255))
        clock("encode_write", lambda: [encode_png(out / Path(f).name, im) for f, im in zip(names, refined)])
    return {k: v / len(files) * 1e6 for k, v in stages.items()}


def refine_bounds(stages: dict, roofline_images_per_s: float) -> dict:
    """What the breakdown (microseconds per image) says about refine's ceiling: the model stage's own
    rate as a share of the roofline, and the end-to-end rate if the model ran at the roofline while
    the other stages (PNG decode and encode, conversions) took what they took, in turn with it."""
    other = sum(v for k, v in stages.items() if k != "model")
    ceiling = 1e6 / (1e6 / roofline_images_per_s + other)
    return {"model_images_per_s": 1e6 / stages["model"],
            "model_share_of_roofline": 1e6 / stages["model"] / roofline_images_per_s,
            "other_us_per_image": other, "ceiling_images_per_s": ceiling,
            "ceiling_share_of_roofline": ceiling / roofline_images_per_s}


def straightforward_refine_speed(data: Path, tmp: Path, device: torch.device, *, n: int, batch: int = 64) -> float:
    """Refining written the way public SimGAN code does it, end to end like ``simgan refine``: each
    PNG opened with Pillow, a fp32 NCHW batch, the same refiner (fp32, NCHW), each result saved
    with Pillow's defaults. Images per second."""
    from PIL import Image

    from ..datasets.folder import list_image_files
    files = list_image_files(data)[:n]
    torch.manual_seed(0)
    R = Refiner(preset("eyes").refiner, 1).to(device).eval()
    out = tmp / "straightforward_refined"
    out.mkdir()
    start = time.perf_counter()
    for s in range(0, len(files), batch):
        names = files[s:s + batch]
        x = torch.stack([torch.from_numpy(np.asarray(Image.open(data / f), dtype=np.float32))[None] / 127.5 - 1
                         for f in names]).to(device)
        with torch.no_grad():
            y = ((R(x) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        for f, im in zip(names, y):
            Image.fromarray(im[0]).save(out / Path(f).name)
    return len(files) / (time.perf_counter() - start)


def fake_run(path: Path, width: int | None = None) -> Path:
    """A run directory holding an eyes-preset refiner (random weights: speed and memory do not depend
    on them), optionally with ``width`` feature maps instead of the preset's."""
    from ..training.rundir import RunDir
    over = {"image": {"height": 35, "width": 55, "channels": 1, "bit_depth": 8}}
    if width is not None:
        over["refiner"] = {"width": width}
    cfg = preset("eyes").override(over)
    torch.manual_seed(0)
    R = Refiner(cfg.refiner, 1)
    with torch.no_grad():
        R.head.weight.normal_(0, 0.05)
    rd = RunDir(path)
    rd.path.mkdir(parents=True, exist_ok=True)
    rd.save_refiner(R.state_dict(), cfg, 0)
    return rd.path


def _refine_subprocess(run: Path, data: Path, out: Path, device: torch.device, precision: str,
                       batch_size: int) -> tuple[float, float]:
    """``simgan refine`` in its own process: (images/s and peak resident memory in MiB, as it reports
    them). The child measures its own peak (``VmHWM``): the ``ru_maxrss`` a parent gets from
    ``wait4`` would include this large benchmark process's own size, which Linux carries across
    fork and exec."""
    cmd = [sys.executable, "-m", "simgan", "refine", "--run", str(run), "--input", str(data), "--out", str(out),
           "--device", str(device), "--precision", precision, "--batch-size", str(batch_size), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"refine failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.stdout}")
    m = re.search(r"\(([0-9.]+) images/s, peak memory ([0-9.]+) MiB\)", proc.stdout)
    if m is None:
        raise RuntimeError(f"unexpected refine output: {proc.stdout.strip()}")
    return float(m.group(1)), float(m.group(2))


REFINE_BATCH = {"cpu": 16, "cuda": 4096}  # simgan refine's default batch size per device type


def run_bench(*, device: str = "auto", precisions: list[str] | None = None, quick: bool = False,
              memory_sizes: tuple[int, ...] = (10_000, 100_000), refine_n: int | None = None,
              train_rounds: int | None = None, with_compile: bool = False, echo=print) -> dict:
    """Every section of ``simgan bench`` in order; returns the figures (written to ``--out`` as JSON).

    1. the roofline of R's convolution stack; 2. the simulator; 3. training rounds; 4. refining end
    to end (and where its time goes); 5. refine's peak memory as the dataset grows."""
    set_threads()
    dev = resolve_device(device)
    precisions = precisions or default_precisions(dev)
    refine_n = refine_n or (1000 if quick else 10_000)
    train_rounds = train_rounds or (5 if quick else 30 if dev.type == "cpu" else 200)
    if quick:
        memory_sizes = (1000, 5000)
    report = machine_report(dev, precisions, echo)
    best = bench_roofline(report, dev, precisions, echo)
    with tempfile.TemporaryDirectory(prefix="simgan-bench-") as tmpdir:
        tmp = Path(tmpdir)
        bench_simulator(report, tmp, 2000 if quick else 20_000, echo)
        syn, real = tmp / "syn", tmp / "real"
        _simulate(syn, max(refine_n, memory_sizes[0]), "synthetic", 10)
        _simulate(real, 2000, "target", 11)
        bench_training(report, syn, real, tmp, dev, precisions, train_rounds, with_compile, best, echo)
        run = fake_run(tmp / "run")
        measured = bench_refine(report, run, syn, tmp, dev, precisions, refine_n, memory_sizes[0], best, echo)
        bench_refine_memory(report, run, tmp, dev, precisions[0], memory_sizes, measured, echo)
    return report


def default_precisions(dev: torch.device) -> list[str]:
    """fp32, plus the half precision this device computes natively."""
    if dev.type == "cuda":
        return ["fp32", "bf16" if native_bf16(dev) else "fp16"]
    return ["fp32", "bf16"] if native_bf16(dev) else ["fp32"]


def machine_report(dev: torch.device, precisions: list[str], echo) -> dict:
    gflop = refiner_flops(preset("eyes").refiner, 1, 35, 55) / 1e9
    report: dict = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(dev),
                    "cuda": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
                    "native_bf16": native_bf16(dev), "cpu_flags": cpu_flags(),
                    "onednn_isa_cap": onednn_isa_cap(), "aten_cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "refiner_gflop_per_image": gflop,
    }
    echo(f"simgan bench on {report['machine']['cuda'] or report['machine']['processor']} ({dev}, "
         f"{report['machine']['threads']} threads, torch {torch.__version__}); precisions: {', '.join(precisions)}")
    echo(f"  CPU: {report['machine']['processor']}, {len(os.sched_getaffinity(0))} cores, flags "
         f"{' '.join(report['machine']['cpu_flags']) or '(none of avx2/avx512/amx)'}")
    if dev.type == "cpu" and report["machine"]["onednn_isa_cap"]:
        echo(f"  oneDNN limited to {report['machine']['onednn_isa_cap']} (ONEDNN_MAX_CPU_ISA), ATen vector code "
             f"{report['machine']['aten_cpu_capability']}: these figures are those of a CPU with that instruction "
             f"set, not of this one's")
    if dev.type == "cpu" and not native_bf16(dev) and "bf16" not in precisions:
        echo("  (bf16 is emulated on this CPU (no AVX512-BF16/AMX): its roofline is measured, training and "
             "refining in bf16 are skipped; --precisions fp32,bf16 measures them anyway)")
    return report


def bench_roofline(report: dict, dev: torch.device, precisions: list[str], echo) -> float:
    """Section 1; returns the best roofline in GFLOP/s."""
    gflop = report["refiner_gflop_per_image"]
    roof_precisions = sorted(set(precisions) | {"bf16"} | ({"fp16"} if dev.type == "cuda" else set()))
    roof = roofline(dev, roof_precisions)
    best_key = max(roof, key=roof.get)
    report["roofline_gflops"] = roof
    echo("\n1. roofline: the refiner's 64->64 3x3 convolution stack, the best of batch 256 and 16")
    for k, v in roof.items():
        echo(f"   {k:<22} {v:8.1f} GFLOP/s  -> {v / gflop:8.1f} refined images/s ceiling")
    report["roofline_best"] = best_key
    return roof[best_key]


def bench_simulator(report: dict, tmp: Path, n: int, echo) -> None:
    echo("\n2. simulator (simgan simulate eyes, 55x35)")
    sim = simulator_speed(tmp, n)
    report["simulator_images_per_s"] = sim
    echo(f"   render synthetic {sim['render_synthetic']:9.0f} images/s   render target {sim['render_target']:9.0f} "
         f"images/s   render + write PNG folder {sim['write_synthetic']:7.0f} images/s")
    echo(f"   -> the paper's 1.2 million synthetic eyes: {1.2e6 / sim['render_synthetic'] / 60:.1f} min to render, "
         f"{1.2e6 / sim['write_synthetic'] / 60:.1f} min with the PNG folder")


def bench_training(report: dict, syn: Path, real: Path, tmp: Path, dev: torch.device, precisions: list[str],
                   train_rounds: int, with_compile: bool, best: float, echo) -> None:
    """Section 3: training rounds at batch 64 (and 512 on a GPU), against the straightforward round."""
    gflop = report["refiner_gflop_per_image"]
    train_batches = (64,) if dev.type == "cpu" else (64, 512)
    echo("\n3. training, eyes preset, K_g = K_d = 1 (synthetic images through R updates per second)")
    report["training_images_per_s"] = {}
    for prec in precisions:
        for batch in train_batches:
            ips = training_speed(syn, real, tmp, dev, prec, rounds=train_rounds, batch=batch)
            report["training_images_per_s"][prec if batch == 64 else f"{prec}@{batch}"] = ips
            # one round: R forward+backward on b (3x), D step refines b/2 (0.5x) => 3.5 refiner passes per image
            echo(f"   {prec:<5} batch {batch:<4} {ips:9.1f} images/s   ({ips * 3.5 * gflop / best:.0%} of the best "
                 f"roofline in refiner FLOPs)")
    base = straightforward_training_speed(syn, real, dev, rounds=train_rounds)
    report["straightforward_training_images_per_s"] = base
    best64 = max(report["training_images_per_s"][p] for p in precisions)
    echo(f"   the same round written the straightforward way (fp32 NCHW, per-image tensors, .item() each "
         f"step), batch 64: {base:.1f} images/s -> simgan at batch 64 is {best64 / base:.2f}x")
    loader = loader_speed(syn, tmp)
    report["loader_images_per_s"] = loader
    echo(f"   loading the training set into memory: PNG folder {loader['png']:.0f} images/s, array format "
         f"{loader['shards']:.0f} images/s (beside the step's {best64:.0f})")
    if with_compile:
        prec, batch = precisions[-1], train_batches[-1]
        ips = training_speed(syn, real, tmp, dev, prec, rounds=train_rounds, compile_=True, batch=batch)
        report["training_images_per_s"][f"{prec}@{batch}+compile"] = ips
        echo(f"   {prec:<5} batch {batch:<4} with torch.compile {ips:9.1f} images/s")


def bench_refine(report: dict, run: Path, syn: Path, tmp: Path, dev: torch.device, precisions: list[str],
                 refine_n: int, first_memory_size: int, best: float, echo) -> dict:
    """Section 4: ``simgan refine`` end to end in each precision, where its time goes, and the
    straightforward refine. Returns the measured ``(images, precision) -> (images/s, MiB)``."""
    gflop = report["refiner_gflop_per_image"]
    roof, best_key = report["roofline_gflops"], report["roofline_best"]
    refine_batch = REFINE_BATCH[dev.type]
    echo(f"\n4. refining {refine_n} images end to end (PNG decode, refiner, PNG encode), batch {refine_batch}")
    report["refine_images_per_s"] = {}
    measured: dict[tuple[int, str], tuple[float, float]] = {}  # (images, precision) -> (images/s, MiB)
    n_syn = max(refine_n, first_memory_size)
    refine_precisions = [p if not (p == "bf16" and dev.type == "cuda") else "fp16" for p in precisions]
    for prec in dict.fromkeys(refine_precisions):
        ips, rss = _refine_subprocess(run, syn, tmp / f"refined_{prec}", dev, prec, refine_batch)
        measured[(n_syn, prec)] = (ips, rss)
        report["refine_images_per_s"][prec] = ips
        roof_prec = max(v for k, v in roof.items() if k.startswith(prec)) if any(
            k.startswith(prec) for k in roof) else best
        echo(f"   {prec:<5} {ips:8.1f} images/s   = {ips * gflop / best:.0%} of the best roofline "
             f"({best_key}), {ips * gflop / roof_prec:.0%} of the {prec} roofline")
    fastest_prec = max(report["refine_images_per_s"], key=report["refine_images_per_s"].get)
    fastest = report["refine_images_per_s"][fastest_prec]
    stages = refine_breakdown(run, syn, tmp, dev, fastest_prec, n=min(refine_n, 2000), batch=refine_batch)
    report["refine_breakdown_us_per_image"] = stages
    total = sum(stages.values())
    echo(f"   where the time goes ({fastest_prec}, stages run one after another in one process, "
         f"microseconds per image):")
    echo("   " + "   ".join(f"{k} {v:.0f} ({v / total:.0%})" for k, v in stages.items()))
    report["refine_bounds"] = bounds = refine_bounds(stages, roof[best_key] / gflop)
    echo(f"   the model stage alone: {bounds['model_images_per_s']:.0f} images/s = "
         f"{bounds['model_share_of_roofline']:.0%} of the best roofline; the rest (files, conversions) takes "
         f"{bounds['other_us_per_image']:.0f} us per image, so with the model at the roofline refine could reach "
         f"{bounds['ceiling_images_per_s']:.0f} images/s = {bounds['ceiling_share_of_roofline']:.0%} of it")
    arr = as_shards(syn, tmp)
    ips, rss = _refine_subprocess(run, arr, tmp / f"refined_{fastest_prec}.shards", dev, fastest_prec, refine_batch)
    roof_prec = max([v for k, v in roof.items() if k.startswith(fastest_prec)] or [best])
    report["refine_array_images_per_s"] = {fastest_prec: ips}
    report["refine_array_share_of_roofline"] = ips * gflop / roof_prec
    report["refine_array_peak_rss_mib"] = rss
    echo(f"   array format in and out ({fastest_prec}, .npy shards, no codec): {ips:.1f} images/s = "
         f"{ips * gflop / roof_prec:.0%} of the {fastest_prec} roofline, {ips / fastest:.2f}x the PNG refine")
    codecs = png_codec_costs(syn, tmp, min(refine_n, 2000))
    report["png_codec_us_per_image"] = codecs
    fs = codecs["file_system"]
    floor = fs["read_us"] + fs["create_write_us"]
    cost = {k: sum(v.values()) for k, v in codecs.items() if k != "file_system"}
    echo("   PNG work per image (one thread): " + "; ".join(
        f"{k} decode {v['decode_us']:.0f} us, encode + write {v['encode_write_us']:.0f} us" for k, v in codecs.items()
        if k != "file_system")
        + (f" -> the fast codec takes {cost['opencv'] / cost['pillow']:.0%} of Pillow's time" if "opencv" in cost else ""))
    echo(f"   of which the file system (read, create + write the same bytes): {floor:.0f} us"
         + (f"; without it the fast codec takes {max(cost['opencv'] - floor, 0) / max(cost['pillow'] - floor, 1e-9):.0%}"
            " of Pillow's" if "opencv" in cost else ""))
    base = straightforward_refine_speed(syn, tmp, dev, n=min(refine_n, 2000))
    report["straightforward_refine_images_per_s"] = base
    echo(f"   the straightforward refine (Pillow per file, fp32 NCHW, batch 64, end to end): {base:.1f} images/s "
         f"-> simgan refine is {fastest / base:.2f}x")
    best64 = max(report["training_images_per_s"][p] for p in precisions)
    report["speedup_vs_straightforward"] = {"training": best64 / report["straightforward_training_images_per_s"],
                                            "refine": fastest / base}
    return measured


def bench_refine_memory(report: dict, run: Path, tmp: Path, dev: torch.device, precision: str,
                        memory_sizes: tuple[int, ...], measured: dict, echo) -> None:
    """Section 5: refine's peak resident memory as the dataset grows (it must stay flat)."""
    refine_batch = REFINE_BATCH[dev.type]
    echo(f"\n5. refine peak memory (resident set of the simgan refine process, {precision})")
    report["refine_peak_rss_mib"] = {}
    rates = {}
    for n in memory_sizes:
        if (n, precision) in measured:  # the same refine as in 4.: not run twice
            ips, rss = measured[(n, precision)]
        else:
            data = tmp / f"mem_{n}"
            _simulate(data, n, "synthetic", 20 + n)
            ips, rss = _refine_subprocess(run, data, tmp / f"mem_{n}_out", dev, precision, refine_batch)
        report["refine_peak_rss_mib"][str(n)] = rss
        rates[str(n)] = ips
        echo(f"   {n:>7} images: peak {rss:7.1f} MiB   ({ips:.0f} images/s)")
    sizes = [str(n) for n in memory_sizes]
    growth = report["refine_peak_rss_mib"][sizes[-1]] / report["refine_peak_rss_mib"][sizes[0]] - 1
    report["refine_memory_growth"] = growth
    echo(f"   growth from {sizes[0]} to {sizes[-1]} images: {growth:+.1%}")
    # the largest refine is the fairest rate for a big dataset: start-up (worker processes, CUDA) is spread thin
    big = rates[sizes[-1]]
    report["paper_1.2M_refine_seconds"] = 1.2e6 / big
    echo(f"   -> the paper's 1.2 million synthetic eyes at the {sizes[-1]}-image rate ({big:.0f} images/s, "
         f"{precision}): {1.2e6 / big:.0f} s ({1.2e6 / big / 60:.1f} min)")


def main_bench(out: Path | None = None, **kwargs) -> dict:
    report = run_bench(**kwargs)
    if out is not None:
        Path(out).write_text(json.dumps(report, indent=1))
    return report
