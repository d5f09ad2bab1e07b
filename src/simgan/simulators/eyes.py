"""``simgan simulate eyes``: the built-in procedural eye renderer and its two domains.

The paper's gaze experiment (§3.1) refines 1.2M UnityEyes renders with 214K unlabelled MPIIGaze
webcam crops as the real set, then trains a gaze CNN on synthetic or refined images and tests it
on real ones. Neither data set can be shipped, so simgan renders both sides itself:

* ``synthetic``: clean renders in the manner of UnityEyes (see :mod:`.eye_scene` for the scene
  model and :mod:`.eye_render` for the drawing): eyeball, iris and pupil behind lids that follow
  the gaze, skin with a crease, lash line and brow, directional light; wide variation of gaze,
  head pose, eye shape, tones and light;
* ``target``: the same distribution of scenes, drawn from a different random stream, seen by a
  laptop webcam (see :mod:`.webcam`): skin texture, eyelashes, glints, spectacle rims, harsh
  uneven light, blur, low resolution, sensor noise, histogram equalisation. It plays MPIIGaze's
  part: the unlabelled "real" images of S+U learning, and held-out labelled test images.

Images are 55x35 gray by default (the paper's size), any size by argument. Randomness comes in
blocks of :data:`BLOCK` images, each from its own ``numpy`` generator seeded by ``(seed, domain,
block)``: image ``i`` depends only on ``(seed, domain, height, width, i)``, not on ``n``, the batch
size or the number of threads.

Labels of each image (JSON-serialisable)::

    gaze       [x, y, z] unit gaze vector, camera coordinates: x right in the image, y down,
               z away from the camera; an eye looking straight at the camera has [0, 0, -1]
    pitch      asin(-gaze_y), radians (positive: looking up)      MPIIGaze's convention
    yaw        atan2(-gaze_x, -gaze_z), radians (positive: looking towards image left)
    head_pose  [pitch, yaw] of the head's forward direction, same convention
    pupil      [x, y] centre of the pupil, pixels
    pupil_radii  [r1, r2] the pupil ellipse's semi-axes (same directions as the iris's)
    iris       {"center": [x, y], "radii": [r1, r2], "angle": a}: the iris ellipse, r1 along the
               direction a (radians from +x towards +y), r2 across it
    eyelids    {"upper": [[x, y], ...], "lower": [[x, y], ...]}: 9 points along each lid margin
               from the inner to the outer canthus (both lists start and end at the canthi)
    domain, seed

Pixel coordinates: x to the right, y down, ``(0, 0)`` the *centre* of the top-left pixel, so a
pixel's centre has integer coordinates and the image centre is ``((W-1)/2, (H-1)/2)``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import SimganError
from ..memory import keep_freed_memory
from .blocks import DOMAINS, block_streams, check_int, in_order, thread_count
from .eye_render import rasterize
from .eye_scene import EyeSceneParams, EyeSceneRanges, labels as scene_labels, project

from .webcam import TargetAppearance, apply_camera, sample_look

BLOCK = 256  # images per random stream
MIN_SIZE = 16  # px, smallest height or width the eye model is drawn at
MAX_SIZE = 1024

_DOMAIN_CODE = {"synthetic": 0, "target": 1}
_SEQUENCE_CODE = {"synthetic": 2, "target": 3}  # sequences draw from streams of their own


@dataclass(frozen=True)
class _Job:
    seed: int
    domain: str
    height: int
    width: int
    batch_size: int
    ranges: EyeSceneRanges
    appearance: TargetAppearance


def _job(n, seed, domain, height, width, batch_size, ranges, appearance) -> _Job:
    keep_freed_memory()
    check_int(n, "number of images", 1)
    check_int(seed, "seed", 0)
    if domain not in DOMAINS:
        raise SimganError(f"unknown eye domain {domain!r}; choose one of: {', '.join(DOMAINS)}")
    for name, v in (("height", height), ("width", width)):
        check_int(v, f"image {name} (px)", MIN_SIZE, MAX_SIZE)
    if batch_size is None:  # ~128k pixels at once: amortises numpy's per-call cost, stays in cache
        batch_size = max(1, (1 << 17) // (int(height) * int(width)))
    check_int(batch_size, "batch size", 1)
    return _Job(int(seed), domain, int(height), int(width), int(batch_size),
                ranges or EyeSceneRanges(), appearance or TargetAppearance())


def _render_block(job: _Job, block: int, lo: int, hi: int, want_masks: bool = False):
    """Images ``lo..hi-1`` of block ``block`` (indices within the block): uint8 ``(k, H, W)``,
    their labels, and (if asked) the visible pupil coverage ``(k, H, W)``."""
    scene_rng, look_rng = block_streams(job.seed, _DOMAIN_CODE[job.domain], block)
    params = EyeSceneParams.sample(scene_rng, BLOCK, job.ranges)
    geom = project(params, job.height, job.width)
    detail = look = None
    if job.domain == "target":
        detail, look = sample_look(look_rng, params, geom, job.appearance)
    images = np.empty((hi - lo, job.height, job.width), np.uint8)
    masks = np.empty((hi - lo, job.height, job.width), np.float32) if want_masks else None
    for start in range(lo, hi, job.batch_size):
        sl = slice(start, min(start + job.batch_size, hi))
        out = sl.start - lo, sl.stop - lo
        img = rasterize(params.take(sl), geom.take(sl), None if detail is None else detail.take(sl),
                        pupil_mask=want_masks)
        if want_masks:
            img, masks[out[0]:out[1]] = img
        if look is None:
            images[out[0]:out[1]] = np.clip(img * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
        else:
            images[out[0]:out[1]] = apply_camera(img, look.take(sl))
    labels = scene_labels(params.take(slice(lo, hi)), geom.take(slice(lo, hi)))
    for lab in labels:
        lab["domain"] = job.domain
        lab["seed"] = job.seed
    return images, labels, masks


def _iter_blocks(job: _Job, n: int, workers: int, want_masks: bool = False) -> Iterator[tuple]:
    """Yield ``(first_index, images, labels, masks)`` for images ``0..n-1``, in order, rendering
    up to ``workers`` blocks at a time on threads (numpy releases the GIL in its loops)."""
    spans = [(b, 0, min(BLOCK, n - b * BLOCK)) for b in range((n + BLOCK - 1) // BLOCK)]
    render = lambda b, lo, hi: _render_block(job, b, lo, hi, want_masks)  # noqa: E731
    for (b, _, _), block in in_order(render, spans, workers):
        yield (b * BLOCK,) + block


def _render_sequences(job: _Job, block: int, first: int, count: int, frames: int, motion, want_flow: bool):
    """Sequences ``first .. first+count-1`` (block ``block``): uint8 ``(count*frames, H, W)``, their
    labels, and (if asked) flow and occlusion (:mod:`.eye_sequences`)."""
    from dataclasses import replace

    from .eye_sequences import eye_fixed_iris, eye_flow, gaze_paths, sequence_params
    from .webcam import _unit_noise

    scene_rng, look_rng = block_streams(job.seed, _SEQUENCE_CODE[job.domain], block)
    p0 = EyeSceneParams.sample(scene_rng, count, job.ranges)
    pitch, yaw, closure = gaze_paths(scene_rng, p0.gaze_pitch, p0.gaze_yaw, frames, job.ranges, motion)
    params = sequence_params(p0, pitch, yaw, closure)
    geom = project(params, job.height, job.width)
    params = eye_fixed_iris(params, geom, frames)
    detail = look = None
    if job.domain == "target":  # the scene's look stays; the glints ride on the cornea; fresh sensor noise
        rep = np.repeat(np.arange(count), frames)
        g0 = project(p0, job.height, job.width)
        d0, l0 = sample_look(look_rng, p0, g0, job.appearance)
        detail = d0.take(rep)
        detail.glint_pos = detail.glint_pos + (geom.cornea - g0.cornea[rep])[:, None, :]
        m = len(rep)
        look = replace(l0.take(rep), noise=_unit_noise(look_rng, (m, job.height, job.width)),
                       noise_low=_unit_noise(look_rng, (m, (job.height + 1) // 2, (job.width + 1) // 2)))
    n = count * frames
    images = np.empty((n, job.height, job.width), np.uint8)
    for start in range(0, n, job.batch_size):
        sl = slice(start, min(start + job.batch_size, n))
        img = rasterize(params.take(sl), geom.take(sl), None if detail is None else detail.take(sl))
        if look is None:
            images[sl] = np.clip(img * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
        else:
            images[sl] = apply_camera(img, look.take(sl))
    labels = scene_labels(params, geom)
    for i, lab in enumerate(labels):
        lab["sequence"] = first + i // frames
        lab["frame"] = i % frames
        lab["domain"] = job.domain
        lab["seed"] = job.seed
    flow = occlusion = None
    if want_flow:
        flow, occlusion = eye_flow(params, geom, frames)
    return images, labels, flow, occlusion


def _iter_sequences(job: _Job, sequences: int, frames: int, motion, workers: int, want_flow: bool):
    """Yield ``(first_frame_index, images, labels, flow, occlusion)`` for every block of sequences,
    in order; a block holds about :data:`BLOCK` frames (at least one sequence)."""
    per = max(1, BLOCK // frames)
    spans = [(b, b * per, min(per, sequences - b * per)) for b in range((sequences + per - 1) // per)]
    render = lambda b, first, count: _render_sequences(job, b, first, count, frames, motion, want_flow)  # noqa: E731
    for (_, first, _), block in in_order(render, spans, workers):
        yield (first * frames,) + block


def render_eye_sequences(sequences: int, frames: int, *, seed: int = 0, domain: str = "synthetic", height: int = 35,
                         width: int = 55, workers: int | None = None, ranges: EyeSceneRanges | None = None,
                         appearance: TargetAppearance | None = None, motion=None, flow: bool = True):
    """Render ``sequences`` eye sequences of ``frames`` frames (:mod:`.eye_sequences`).

    Returns ``images`` uint8 ``(N, H, W, 1)`` (``N = sequences * frames``, sequence after sequence),
    ``labels`` (those of :func:`render_eyes` plus ``sequence`` and ``frame``), and with ``flow``
    the backward flow ``(N, H, W, 2)`` and the occlusion mask ``(N, H, W)``. Sequence ``s`` depends
    only on ``(seed, domain, height, width, frames, ranges, appearance, motion, s)``.
    """
    from .eye_sequences import EyeMotion, check_sequence_args

    check_sequence_args(sequences, frames)
    job = _job(sequences * frames, seed, domain, height, width, None, ranges, appearance)
    motion = motion or EyeMotion()
    n = sequences * frames
    images = np.empty((n, job.height, job.width, 1), np.uint8)
    flows = np.empty((n, job.height, job.width, 2), np.float32) if flow else None
    masks = np.empty((n, job.height, job.width), np.uint8) if flow else None
    labels: list[dict] = []
    for start, imgs, labs, f, m in _iter_sequences(job, sequences, frames, motion, thread_count(workers), flow):
        images[start:start + len(imgs), :, :, 0] = imgs
        labels.extend(labs)
        if flow:
            flows[start:start + len(imgs)], masks[start:start + len(imgs)] = f, m
    return images, labels, flows, masks


def render_eyes(n: int, *, seed: int = 0, domain: str = "synthetic", height: int = 35, width: int = 55,
                batch_size: int | None = None, workers: int | None = None, ranges: EyeSceneRanges | None = None,
                appearance: TargetAppearance | None = None) -> tuple[np.ndarray, list[dict]]:
    """Render ``n`` labelled eye images.

    Returns ``images``, uint8 ``(n, height, width, 1)``, and ``labels``, one dict per image (see
    the module docstring for the keys and conventions). ``ranges`` and ``appearance`` override
    the scene distribution and the target domain's look (defaults: :class:`EyeSceneRanges`,
    :class:`TargetAppearance`). Image ``i`` is a function of ``(seed, domain, height, width,
    ranges, appearance, i)`` only: ``batch_size`` (images rasterised at once; default: about 128k
    pixels' worth) and ``workers`` (threads; default: the CPU count) change speed, never pixels.
    """
    job = _job(n, seed, domain, height, width, batch_size, ranges, appearance)
    images = np.empty((n, job.height, job.width, 1), np.uint8)
    labels: list[dict] = []
    for start, imgs, labs, _ in _iter_blocks(job, n, thread_count(workers)):
        images[start:start + len(imgs), :, :, 0] = imgs
        labels.extend(labs)
    return images, labels


def pupil_masks(n: int, *, seed: int = 0, domain: str = "synthetic", height: int = 35, width: int = 55,
                ranges: EyeSceneRanges | None = None) -> np.ndarray:
    """The visible pupil of the scenes :func:`render_eyes` draws: float32 ``(n, H, W)`` coverage
    in [0, 1] (pupil ellipse times lid opening), for checking the ``pupil`` label."""
    job = _job(n, seed, domain, height, width, None, ranges, None)
    return np.concatenate([m for _, _, _, m in _iter_blocks(job, n, 1, want_masks=True)])


def simulate_eyes(out: str | os.PathLike, n: int | None, *, seed: int = 0, domain: str = "synthetic",
                  height: int = 35, width: int = 55, progress: bool = True, workers: int | None = None,
                  ranges: EyeSceneRanges | None = None, appearance: TargetAppearance | None = None,
                  sequences: int | None = None, frames: int | None = None, motion=None) -> Path:
    """Render ``n`` eyes into a new dataset folder ``out`` in the interchange format (``OUT.shards``:
    the array format, :mod:`simgan.datasets.shards`).

    ``out/img/NNNNNN.png`` (8-bit gray) and ``out/labels.jsonl``; everything is written to
    ``out.partial`` and renamed at the end, so ``out`` never holds a half-written set. An
    existing ``out`` is an error. Returns the folder's path.

    ``sequences = S`` with ``frames = T`` renders S sequences of T frames instead (``n``, if given,
    must be S x T): the labels gain ``sequence`` and ``frame``, and the folder holds the ground-truth
    ``flow.npy`` and ``occlusion.npy`` (:mod:`.eye_sequences`).
    """
    from tqdm import tqdm

    from ..datasets import json_line  # imports torch: only when writing files
    from ..datasets.sink import ImageSink

    if sequences is not None or frames is not None:
        return _simulate_sequences(out, n, sequences, frames, seed, domain, height, width, progress, workers,
                                   ranges, appearance, motion)
    job = _job(n, seed, domain, height, width, None, ranges, appearance)
    digits = max(6, len(str(n - 1)))
    nw = thread_count(workers)
    # PNG encoding and file creation dominate a PNG folder; the sink spreads them over threads too
    with ImageSink(out, n, threads=nw) as sink, \
            tqdm(total=n, desc=f"render {domain} eyes", unit="img", leave=False, disable=not progress) as bar:
        for start, imgs, labs, _ in _iter_blocks(job, n, nw):
            names = [f"img/{i:0{digits}d}.png" for i in range(start, start + len(imgs))]
            sink.add(names, imgs, (json_line({"file": name, **lab}) for name, lab in zip(names, labs)))
            bar.update(len(imgs))
        return sink.finish()


def _simulate_sequences(out, n, sequences, frames, seed, domain, height, width, progress, workers, ranges,
                        appearance, motion) -> Path:
    from tqdm import tqdm

    from ..datasets import json_line
    from ..datasets.sink import ImageSink
    from ..datasets.sequences import FLOW_FILE, OCCLUSION_FILE
    from .eye_sequences import EyeMotion, check_sequence_args

    if sequences is None or frames is None:
        raise SimganError("eye sequences need both --sequences and --frames")
    check_sequence_args(sequences, frames)
    if n is not None and n != sequences * frames:
        raise SimganError(f"--n {n} differs from --sequences x --frames = {sequences * frames}; give one or the other")
    total = sequences * frames
    job = _job(total, seed, domain, height, width, None, ranges, appearance)
    digits = max(6, len(str(total - 1)))
    nw = thread_count(workers)
    with ImageSink(out, total, threads=nw) as sink, \
            tqdm(total=total, desc=f"render {domain} eye sequences", unit="img", leave=False,
                 disable=not progress) as bar:
        flow = np.lib.format.open_memmap(sink.writer.partial / FLOW_FILE, "w+", np.float32, (total, job.height, job.width, 2))
        occl = np.lib.format.open_memmap(sink.writer.partial / OCCLUSION_FILE, "w+", np.uint8, (total, job.height, job.width))
        for start, imgs, labs, f, m in _iter_sequences(job, sequences, frames, motion or EyeMotion(), nw, True):
            names = [f"img/{i:0{digits}d}.png" for i in range(start, start + len(imgs))]
            sink.add(names, imgs, (json_line({"file": name, **lab}) for name, lab in zip(names, labs)))
            flow[start:start + len(imgs)], occl[start:start + len(imgs)] = f, m
            bar.update(len(imgs))
        flow.flush()
        occl.flush()
        del flow, occl
        return sink.finish()


def benchmark(n: int = 4096, *, domain: str = "synthetic", height: int = 35, width: int = 55,
              repeats: int = 3, workers: int | None = None) -> float:
    """Rendering speed in images per second (median of ``repeats`` runs of :func:`render_eyes`
    for ``n`` images; no files written)."""
    rates = []
    for r in range(repeats):
        t0 = time.perf_counter()
        render_eyes(n, seed=r, domain=domain, height=height, width=width, workers=workers)
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates))
