"""PNG codecs compared on simgan's two image kinds: decode, and encode + write, per image.

    python bench/png_codecs.py --eyes EYES_DIR --depth DEPTH_DIR [--threads N] [--out FILE.json]

EYES_DIR / DEPTH_DIR: folders of PNG files (e.g. `simgan simulate eyes --n 2000` and `simgan
simulate hands --n 200 --size 224`). Each codec that is installed (Pillow, opencv-python-headless,
imagecodecs, pyspng) encodes every image to a file and decodes it back, on one thread and on
``--threads`` threads; a codec's figures count only if every image it writes decodes (with
Pillow) to the same pixels, and it reads Pillow's files to the same pixels. Then the zlib level of
the fastest encoder: microseconds per image against file size. Needs only numpy and the codecs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def pil_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        a = np.asarray(im)
    return a.astype(np.uint16) if a.dtype.kind == "i" or a.dtype == np.int32 else a


def pil_encode(a: np.ndarray, level: int) -> bytes:
    buf = io.BytesIO()
    if a.dtype == np.uint16:
        im = Image.frombytes("I;16", (a.shape[1], a.shape[0]), np.ascontiguousarray(a, "<u2").tobytes())
    else:
        im = Image.fromarray(a)
    im.save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def codecs() -> dict:
    out = {"pillow": (pil_decode, pil_encode)}
    try:
        import cv2
        cv2.setNumThreads(1)
        out["opencv"] = (lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_UNCHANGED),
                         lambda a, lv: cv2.imencode(".png", a, [cv2.IMWRITE_PNG_COMPRESSION, lv])[1].tobytes())
    except ImportError:
        pass
    try:
        import imagecodecs
        out["imagecodecs-png"] = (imagecodecs.png_decode, lambda a, lv: imagecodecs.png_encode(a, level=lv))
        if getattr(imagecodecs, "SPNG", None) and imagecodecs.SPNG.available:
            out["imagecodecs-spng"] = (imagecodecs.spng_decode, lambda a, lv: imagecodecs.spng_encode(a, level=lv))
    except ImportError:
        pass
    try:
        import pyspng
        enc = getattr(pyspng, "encode", None)
        out["pyspng"] = (pyspng.load, (lambda a, lv: enc(a, compress_level=lv)) if enc else None)
    except ImportError:
        pass
    return out


def load(folder: Path, n: int) -> list[np.ndarray]:
    files = sorted(folder.rglob("*.png"))[:n]
    return [pil_decode(f.read_bytes()) for f in files]


def timed(fn, items, threads: int) -> float:
    t = time.perf_counter()
    if threads == 1:
        for it in items:
            fn(it)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fn, items, chunksize=16))
    return (time.perf_counter() - t) / len(items) * 1e6


def measure(name, decode, encode, images, tmp: Path, threads: int, level: int) -> dict:
    d = tmp / name
    d.mkdir()
    paths = [d / f"{i:06d}.png" for i in range(len(images))]
    ref = tmp / f"{name}_ref"
    ref.mkdir()
    for p, a in zip(paths, images):  # Pillow's files, for the decoders
        (ref / p.name).write_bytes(pil_encode(a, level))
    row = {}
    for t in sorted({1, threads}):
        if encode is not None:
            row[f"encode_write_us@{t}"] = timed(lambda k: paths[k].write_bytes(encode(images[k], level)),
                                                range(len(images)), t)
        row[f"read_decode_us@{t}"] = timed(lambda k: decode((ref / paths[k].name).read_bytes()), range(len(images)), t)
    same = all(np.array_equal(np.squeeze(decode((ref / p.name).read_bytes())), np.squeeze(a))
               for p, a in zip(paths, images))
    if encode is not None:
        same = same and all(np.array_equal(np.squeeze(pil_decode(p.read_bytes())), np.squeeze(a))
                            for p, a in zip(paths, images))
        row["bytes_per_image"] = float(np.mean([p.stat().st_size for p in paths]))
    row["same_pixels"] = bool(same)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eyes", type=Path, required=True)
    ap.add_argument("--depth", type=Path, required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--level", type=int, default=1, help="zlib level of the codec comparison (simgan writes 1)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    report = {"threads": args.threads, "level": args.level, "cpu_count": os.cpu_count(), "results": {}}
    kinds = {"eyes 55x35 8-bit gray": load(args.eyes, args.n), "depth 224x224 16-bit": load(args.depth, args.n // 10)}
    found = codecs()
    for kind, images in kinds.items():
        print(f"\n{kind}: {len(images)} images, {images[0].shape} {images[0].dtype}; microseconds per image")
        print(f"{'codec':<18}{'encode+write 1 thr':>20}{'read+decode 1 thr':>19}{f'encode {args.threads} thr':>15}"
              f"{f'decode {args.threads} thr':>15}{'bytes':>9}  same pixels")
        report["results"][kind] = {}
        for name, (dec, enc) in found.items():
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    row = measure(name, dec, enc, images, Path(tmp), args.threads, args.level)
                except Exception as exc:  # a codec that cannot do this kind (e.g. 16-bit) is reported, not fatal
                    row = {"error": f"{type(exc).__name__}: {exc}"}
            report["results"][kind][name] = row
            if "error" in row:
                print(f"{name:<18} cannot: {row['error'][:90]}")
                continue
            t = args.threads
            f = lambda k: f"{row[k]:.0f}" if k in row else "-"
            print(f"{name:<18}{f('encode_write_us@1'):>20}{f('read_decode_us@1'):>19}{f(f'encode_write_us@{t}'):>15}"
                  f"{f(f'read_decode_us@{t}'):>15}{row.get('bytes_per_image', 0):>9.0f}  {row['same_pixels']}")
        # the zlib level of each encoder, on one thread
        levels = {}
        for name, (dec, enc) in found.items():
            if enc is None or "error" in report["results"][kind][name]:
                continue
            levels[name] = {}
            for lv in (0, 1, 3, 6, 9):  # in memory: the codec's own time
                t0 = time.perf_counter()
                sizes = [len(enc(a, lv)) for a in images]
                levels[name][lv] = {"encode_us": (time.perf_counter() - t0) / len(images) * 1e6,
                                    "bytes": float(np.mean(sizes))}
        report["results"][kind]["levels"] = levels
        print("   zlib level: " + "; ".join(
            f"{name} " + ", ".join(f"{lv}: {v['encode_us']:.0f} us {v['bytes']:.0f} B" for lv, v in lvs.items())
            for name, lvs in levels.items()))
        strategies = cv2_strategies(images)
        if strategies:
            report["results"][kind]["opencv_strategies"] = strategies
            print("   OpenCV at zlib level 1, strategy + row filter (encode in memory; decode): " + "; ".join(
                f"{name} {v['encode_us']:.0f} + {v['decode_us']:.0f} us {v['bytes']:.0f} B" for name, v in strategies.items()))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


def cv2_strategies(images: list[np.ndarray]) -> dict:
    """OpenCV's PNG encoder at zlib level 1 with each zlib strategy and libpng row filter that
    simgan weighed (``simgan.datasets.png``): microseconds to encode in memory and to decode the
    result, bytes per image, best of three passes. Empty where OpenCV (4.11+) lacks the flags."""
    try:
        import cv2
    except ImportError:
        return {}
    if not hasattr(cv2, "IMWRITE_PNG_FILTER"):
        return {}
    c = cv2
    variants = {
        "default (adaptive filters)": [],
        "run-length, adaptive filters": [c.IMWRITE_PNG_STRATEGY, c.IMWRITE_PNG_STRATEGY_RLE],
        "run-length, Sub filter (simgan)": [c.IMWRITE_PNG_STRATEGY, c.IMWRITE_PNG_STRATEGY_RLE,
                                            c.IMWRITE_PNG_FILTER, c.IMWRITE_PNG_FILTER_SUB],
        "Huffman only, Sub filter": [c.IMWRITE_PNG_STRATEGY, c.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
                                     c.IMWRITE_PNG_FILTER, c.IMWRITE_PNG_FILTER_SUB],
    }
    planes = [np.ascontiguousarray(a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a) for a in images]
    out = {}
    for name, flags in variants.items():
        params = [c.IMWRITE_PNG_COMPRESSION, 1, *flags]
        enc_best = dec_best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            files = [c.imencode(".png", a, params)[1] for a in planes]
            enc_best = min(enc_best, (time.perf_counter() - t0) / len(planes) * 1e6)
            t0 = time.perf_counter()
            back = [c.imdecode(f, c.IMREAD_UNCHANGED) for f in files]
            dec_best = min(dec_best, (time.perf_counter() - t0) / len(planes) * 1e6)
        assert all(np.array_equal(b, a) for a, b in zip(planes, back)), name
        out[name] = {"encode_us": enc_best, "decode_us": dec_best, "bytes": float(np.mean([len(f) for f in files]))}
    return out


if __name__ == "__main__":
    main()
