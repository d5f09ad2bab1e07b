"""``simgan simulate hands``: depth images of an articulated hand, the paper's §3.2 data in miniature.

The paper refines the NYU hand pose data set's synthetic renders with its Kinect frames as the
real set, then trains a stacked-hourglass pose estimator on synthetic, refined or real images and
tests it on real ones (Table 4). Neither side can be shipped, so simgan renders both:

* ``synthetic``: the capsule hand of :mod:`.hand_scene` (20 DoF, anatomical limits, poses
  blended from open / fist / point / pinch / ...; random rotation and position; a forearm), its
  exact depth z-buffered by :mod:`.hand_render`; nothing else in the scene;
* ``target``: scenes from the same distribution (a different random stream) seen by a
  structured-light sensor (:mod:`.kinect`): background and clutter, projector shadows, missing
  readings at silhouettes and grazing angles, jagged edges, flying pixels, holes, depth noise and
  disparity quantisation. It plays NYU's Kinect frames: unlabelled real images for SimGAN, and
  labelled real images for the "real" row and the test set.

Images are ``size x size`` (default 224, the paper's input size) 16-bit PNGs holding depth in
millimetres; 0 is "no reading" (and, in synthetic images, "no surface"). Camera: pinhole,
``fx = fy = 1.8 * size``, ``cx = cy = (size - 1) / 2`` (also in every label line). With
``views=3`` every pose is rendered by a frontal and two side cameras (+-55 deg about the vertical
axis through the hand), files ``img/NNNNNN_vK.png``.

Labels of each image (JSON)::

    uv        14 x [u, v]: the joints of :data:`.hand_scene.JOINT_NAMES` in the written image's
              pixels (x right, y down, (0, 0) the centre of the top-left pixel)
    depth     14 x z: the joints' depth (mm), the same z the image stores
    xyz       14 x [x, y, z]: camera space, millimetres (x right, y down, z away)
    visible   14 x bool: the rendered surface at the joint's pixel is the joint's own finger
              (within 25 mm in front of it), not an occluder
    intrinsics {fx, fy, cx, cy, width, height}
    pose      {"articulation_deg": {name: degrees} (the 20 DoF + wrist), "rotation": 3x3,
               "center": [x, y, z] mm (the joints' centroid), "scale", "blend": {pose: weight}}
    view, view_angle_deg, pose_index, domain, seed

Randomness comes in blocks of :data:`BLOCK` poses, each from its own generators seeded by
``(seed, domain, block)``: image ``i`` depends only on ``(seed, domain, size, views, i)``.
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
from .hand_render import render_depth
from .hand_scene import (JOINT_NAMES, PARAM_NAMES, POSE_NAMES, VIEW_ANGLES, HandRanges, intrinsics, project,
                         sample_params, skeleton, view_transform)
from .kinect import SensorModel, apply_sensor, plane_depth, surroundings

BLOCK = 32  # poses per random stream
MIN_SIZE = 32
MAX_SIZE = 1024
_DOMAIN_CODE = {"synthetic": 10, "target": 11}


@dataclass(frozen=True)
class _Job:
    seed: int
    domain: str
    size: int
    views: int
    ranges: HandRanges
    sensor: SensorModel


def _job(n, seed, domain, size, views, ranges, sensor) -> _Job:
    keep_freed_memory()
    check_int(n, "number of images (--n)", 1)
    check_int(seed, "seed", 0)
    if domain not in DOMAINS:
        raise SimganError(f"unknown hand domain {domain!r}; choose one of: {', '.join(DOMAINS)}")
    check_int(size, "image size (--size)", MIN_SIZE, MAX_SIZE)
    if views not in (1, 3) or isinstance(views, bool):
        raise SimganError(f"--views must be 1 or 3, got {views!r}")
    return _Job(int(seed), domain, int(size), int(views), ranges or HandRanges(), sensor or SensorModel())


def _render_block(job: _Job, block: int, count: int) -> tuple[np.ndarray, list[dict]]:
    """The first ``count`` poses of block ``block``: uint16 images ``(count * views, S, S)`` (pose
    major, view minor) and their labels. The whole block is always drawn, so pixels never depend
    on ``count``."""
    scene_rng, look_rng = block_streams(job.seed, _DOMAIN_CODE[job.domain], block)
    params = sample_params(scene_rng, BLOCK, job.ranges)
    images, labels = _render_params(job, params, look_rng, count)
    for i, lab in enumerate(labels):
        lab["pose_index"] = block * BLOCK + i // job.views
    return images, labels


# Numeric kernel (longer than 60 lines on purpose): every view of every pose, from the skeleton to the sensor.
def _render_params(job: _Job, params: dict, look_rng: np.random.Generator, count: int,
                   scenery: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, list[dict]]:
    """Images and labels of the first ``count`` poses of ``params`` (all of them are rendered).
    A target scene's background planes and clutter are drawn from ``look_rng`` per view, unless
    ``scenery`` gives them (one row per pose: a sequence's frames share their scene)."""
    n = len(params["scale"])
    a, b, r, joints = skeleton(params)
    S = job.size
    K = intrinsics(S)
    per_view = []
    for v in range(job.views):
        ang = VIEW_ANGLES[v]
        av = view_transform(a, params["center"], ang)
        bv = view_transform(b, params["center"], ang)
        jv = view_transform(joints, params["center"], ang)
        depth = render_depth(av, bv, r, S)  # the hand alone (also for visibility)
        if job.domain == "synthetic":
            img = np.where(np.isfinite(depth), np.rint(depth), 0).astype(np.uint16)
        else:
            centre = view_transform(params["center"][:, None, :], params["center"], ang)[:, 0]
            planes, spheres = scenery if scenery is not None else surroundings(look_rng, centre, S, job.sensor)
            sa = spheres[:, :, :3]
            scene = np.minimum(depth, render_depth(sa, sa, np.repeat(spheres[:, :, 3:], 2, axis=2), S))
            scene = np.minimum(scene, plane_depth(planes, S))
            img = apply_sensor(scene, look_rng, S, job.sensor)
        uv = project(jv, S)
        # visibility: the clean surface at the joint's pixel lies within 25 mm in front of it
        px = np.clip(np.rint(uv).astype(int), 0, S - 1)
        surf = depth[np.arange(n)[:, None], px[..., 1], px[..., 0]]
        inside = (uv >= -0.5).all(-1) & (uv <= S - 0.5).all(-1)
        visible = inside & (surf >= jv[..., 2] - 25.0) & (surf <= jv[..., 2] + 1.0)
        per_view.append((img, uv, jv, visible))
    images = np.stack([pv[0][:count] for pv in per_view], 1).reshape(count * job.views, S, S)
    labels = []
    art = np.degrees(params["articulation"])
    for i in range(count):
        pose = {"articulation_deg": {k: round(float(v), 3) for k, v in zip(PARAM_NAMES, art[i])},
                "rotation": np.round(params["rotation"][i], 6).tolist(),
                "center": np.round(params["center"][i], 3).tolist(),
                "scale": round(float(params["scale"][i]), 5),
                "blend": {k: round(float(w), 4) for k, w in zip(POSE_NAMES, params["blend"][i])}}
        for v, (img, uv, jv, vis) in enumerate(per_view):
            labels.append({
                "uv": np.round(uv[i], 3).tolist(), "depth": np.round(jv[i, :, 2], 2).tolist(),
                "xyz": np.round(jv[i], 2).tolist(), "visible": vis[i].tolist(), "intrinsics": K,
                "pose": pose, "view": v, "view_angle_deg": VIEW_ANGLES[v], "pose_index": i,
                "domain": job.domain, "seed": job.seed})
    return images, labels


def _iter_blocks(job: _Job, n: int, workers: int) -> Iterator[tuple[int, np.ndarray, list[dict]]]:
    """Yield ``(first_pose, images, labels)`` for poses ``0..n-1`` in order, up to ``workers``
    blocks at a time on threads (numpy releases the GIL in its loops)."""
    spans = [(b, min(BLOCK, n - b * BLOCK)) for b in range((n + BLOCK - 1) // BLOCK)]
    render = lambda b, cnt: _render_block(job, b, cnt)  # noqa: E731
    for (b, _), block in in_order(render, spans, workers):
        yield (b * BLOCK,) + block


_SEQUENCE_CODE = {"synthetic": 12, "target": 13}  # sequences draw from streams of their own
SEQUENCE_TURN_DEG = 20.0  # the most a sequence turns the hand (or the camera) from its first frame to its last
SEQUENCE_DRIFT_MM = 40.0  # the most it moves the hand


def _smooth(u: np.ndarray) -> np.ndarray:
    return u * u * (3.0 - 2.0 * u)


def sequence_params(rng: np.random.Generator, count: int, frames: int, ranges: HandRanges) -> dict:
    """The frames of ``count`` hand sequences, sequence after sequence: each blends its pose from
    one random grasp pose to another (articulation and pose weights, eased in and out) while the
    hand turns slowly about a random axis (up to :data:`SEQUENCE_TURN_DEG`: a slow head or camera
    motion) and drifts (up to :data:`SEQUENCE_DRIFT_MM`)."""
    from .hand_scene import rot

    start, end = sample_params(rng, count, ranges), sample_params(rng, count, ranges)
    axis = rng.standard_normal((count, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    turn = np.radians(rng.uniform(0.0, SEQUENCE_TURN_DEG, count))
    drift = rng.uniform(-1.0, 1.0, (count, 3)) * SEQUENCE_DRIFT_MM / np.sqrt(3.0)
    seq = np.repeat(np.arange(count), frames)
    w = np.tile(_smooth(np.linspace(0.0, 1.0, frames)), count)  # each frame's share of the way
    out = {k: (1 - w[:, None]) * start[k][seq] + w[:, None] * end[k][seq] for k in ("articulation", "blend")}
    out["scale"] = start["scale"][seq]
    out["center"] = start["center"][seq] + w[:, None] * drift[seq]
    out["rotation"] = rot(axis[seq], turn[seq] * w) @ start["rotation"][seq]  # by its share of the turn
    return out


def _render_sequences(job: _Job, block: int, first: int, count: int, frames: int) -> tuple[np.ndarray, list[dict]]:
    """Sequences ``first .. first+count-1`` (block ``block``), one view: uint16 images
    ``(count * frames, S, S)`` and their labels. A target sequence keeps its background and
    clutter; the sensor's noise, holes and edge dropouts are drawn afresh for every frame (the
    Kinect's flicker at edges)."""
    scene_rng, look_rng = block_streams(job.seed, _SEQUENCE_CODE[job.domain], block)
    params = sequence_params(scene_rng, count, frames, job.ranges)
    scenery = None
    if job.domain == "target":
        firsts = params["center"][::frames]
        planes, spheres = surroundings(look_rng, firsts, job.size, job.sensor)
        rep = np.repeat(np.arange(count), frames)
        scenery = (planes[rep], spheres[rep])
    images, labels = _render_params(job, params, look_rng, count * frames, scenery)
    for i, lab in enumerate(labels):
        lab["sequence"], lab["frame"] = first + i // frames, i % frames
        lab["pose_index"] = first * frames + i
    return images, labels


def _iter_sequences(job: _Job, sequences: int, frames: int, workers: int) -> Iterator[tuple[int, np.ndarray, list[dict]]]:
    """Yield ``(first_frame, images, labels)`` per block of about :data:`BLOCK` frames (at least
    one sequence), in order."""
    per = max(1, BLOCK // frames)
    spans = [(b, b * per, min(per, sequences - b * per)) for b in range((sequences + per - 1) // per)]
    render = lambda b, first, count: _render_sequences(job, b, first, count, frames)  # noqa: E731
    for (_, first, _), block in in_order(render, spans, workers):
        yield (first * frames,) + block


def render_hands(n: int, *, seed: int = 0, domain: str = "synthetic", size: int = 224, views: int = 1,
                 workers: int | None = None, ranges: HandRanges | None = None,
                 sensor: SensorModel | None = None) -> tuple[np.ndarray, list[dict]]:
    """Render ``n`` hand poses (``n * views`` depth images).

    Returns ``images``, uint16 ``(n * views, size, size, 1)`` depth in mm (0: no reading), pose
    major and view minor, and ``labels`` (see the module docstring).
    """
    job = _job(n, seed, domain, size, views, ranges, sensor)
    images = np.empty((n * job.views, job.size, job.size, 1), np.uint16)
    labels: list[dict] = []
    for start, imgs, labs in _iter_blocks(job, n, thread_count(workers)):
        images[start * job.views:start * job.views + len(imgs), :, :, 0] = imgs
        labels.extend(labs)
    return images, labels


def render_hand_sequences(sequences: int, frames: int, *, seed: int = 0, domain: str = "synthetic", size: int = 224,
                          workers: int | None = None, ranges: HandRanges | None = None,
                          sensor: SensorModel | None = None) -> tuple[np.ndarray, list[dict]]:
    """Render ``sequences`` hand sequences of ``frames`` frames (:func:`sequence_params`): uint16
    ``(N, size, size, 1)``, sequence after sequence, and their labels (those of
    :func:`render_hands` plus ``sequence`` and ``frame``)."""
    from .eye_sequences import check_sequence_args

    check_sequence_args(sequences, frames)
    job = _job(sequences * frames, seed, domain, size, 1, ranges, sensor)
    images = np.empty((sequences * frames, job.size, job.size, 1), np.uint16)
    labels: list[dict] = []
    for start, imgs, labs in _iter_sequences(job, sequences, frames, thread_count(workers)):
        images[start:start + len(imgs), :, :, 0] = imgs
        labels.extend(labs)
    return images, labels


def simulate_hands(out: str | os.PathLike, n: int | None, *, seed: int = 0, domain: str = "synthetic",
                   size: int = 224, views: int = 1, progress: bool = True, workers: int | None = None,
                   ranges: HandRanges | None = None, sensor: SensorModel | None = None,
                   sequences: int | None = None, frames: int | None = None) -> Path:
    """Render ``n`` poses into a new dataset folder ``out`` (16-bit PNG + ``labels.jsonl``).

    Written through :class:`~simgan.datasets.DatasetWriter`: ``out`` never holds a half-written
    set, and an existing ``out`` is an error. Returns the folder's path. ``sequences = S`` with
    ``frames = T``: S sequences of T frames instead (:func:`sequence_params`; ``n``, if given, must
    be S x T; one view), labelled with ``sequence`` and ``frame`` as well.
    """
    if sequences is not None or frames is not None:
        from .eye_sequences import check_sequence_args
        if sequences is None or frames is None:
            raise SimganError("hand sequences need both --sequences and --frames")
        check_sequence_args(sequences, frames)
        if n is not None and n != sequences * frames:
            raise SimganError(f"--n {n} differs from --sequences x --frames = {sequences * frames}; give one or "
                              f"the other")
        if views != 1:
            raise SimganError("hand sequences are rendered from one view (--views 1)")
        n = sequences * frames
    return write_hands(out, n, seed=seed, domain=domain, size=size, views=views, progress=progress,
                       workers=workers, ranges=ranges, sensor=sensor, sequence_frames=frames if sequences else None)


def cube_encode(depth_mm: np.ndarray, center_z: np.ndarray, cube_mm: float = 400.0, *,
                empty_is_far: bool = False) -> np.ndarray:
    """Depth in mm -> the normalised "hand cube" encoding used for learning (uint16).

    Hand pose pipelines on NYU normalise each crop's depth to a cube around the hand (e.g.
    Oberweger et al., "Hands deep in deep learning", CVWW 2015: a 3-D box centred on the hand,
    depth scaled to [-1, 1]). Here a reading ``d`` becomes ``1 + 65534 * (d - near) / cube_mm``
    clipped to [1, 65535], ``near = center_z - cube_mm / 2``; 0 (no reading) stays 0. So a
    model's [-1, 1] range spans the hand's 400 mm instead of the 16-bit range's 65 m, where a
    hand would occupy 0.6% of it; the background beyond the cube saturates at 65535 ("far").
    ``center_z``: one depth (mm) per image, e.g. the label ``pose.center[2]``.
    ``empty_is_far``: 0 means "no surface" (a clean render's background, nothing along the ray)
    rather than "no reading", and becomes far (65535); the sensor domain's 0 stays "no reading".
    """
    d = depth_mm.astype(np.float64)
    near = np.asarray(center_z, np.float64).reshape((-1,) + (1,) * (d.ndim - 1)) - cube_mm / 2.0
    v = np.clip(np.rint(1.0 + 65534.0 * (d - near) / cube_mm), 1, 65535)
    return np.where(depth_mm > 0, v, 65535 if empty_is_far else 0).astype(np.uint16)


def downsample(images: np.ndarray, labels: list[dict], size: int) -> tuple[np.ndarray, list[dict]]:
    """Resize ``(k, S, S)`` depth images to ``size`` by nearest-neighbour sampling (each output
    pixel takes the input pixel under its centre: no depths are invented between surfaces, as a
    crop resized for a network would be) and map the labels' ``uv`` and ``intrinsics`` with them."""
    S = images.shape[1]
    if S == size:
        return images, labels
    f = S / size
    idx = np.minimum(np.floor((np.arange(size) + 0.5) * f).astype(int), S - 1)
    out = images[:, idx[:, None], idx[None, :]]
    for lab in labels:
        lab["uv"] = np.round((np.asarray(lab["uv"]) + 0.5) / f - 0.5, 3).tolist()
        K = lab["intrinsics"]
        lab["intrinsics"] = {"fx": K["fx"] / f, "fy": K["fy"] / f, "cx": (K["cx"] + 0.5) / f - 0.5,
                             "cy": (K["cy"] + 0.5) / f - 0.5, "width": size, "height": size}
    return out, labels


def write_hands(out: str | os.PathLike, n: int, *, seed: int = 0, domain: str = "synthetic", size: int = 224,
                views: int = 1, cube_mm: float | None = None, labels: bool = True, workers: int | None = None,
                progress: bool = False, render_size: int | None = None, ranges: HandRanges | None = None,
                sensor: SensorModel | None = None, sequence_frames: int | None = None) -> Path:
    """Like :func:`simulate_hands`, optionally in the :func:`cube_encode` encoding (``cube_mm``;
    each label line then says so in ``"depth_encoding"``; a synthetic image's empty background
    becomes far, a sensor image's missing readings stay 0) and without ``labels.jsonl``
    (``labels=False``: the unlabelled real set of S+U learning). ``render_size``: render (and
    apply the sensor) at this size, then :func:`downsample` to ``size``: the sensor's artefacts
    keep their size relative to the hand, as in NYU's 640x480 frames cropped and resized.
    ``sequence_frames = T``: ``n`` frames as sequences of T (:func:`sequence_params`)."""
    from tqdm import tqdm

    from ..datasets import json_line
    from ..datasets.sink import ImageSink

    job = _job(n, seed, domain, render_size or size, views, ranges, sensor)
    check_int(size, "image size", MIN_SIZE, MAX_SIZE)
    digits = max(6, len(str(n - 1)))
    nw = thread_count(workers)

    def name(k: int) -> str:
        pose, view = divmod(k, job.views)
        return f"img/{pose:0{digits}d}.png" if job.views == 1 else f"img/{pose:0{digits}d}_v{view}.png"

    with ImageSink(out, n * job.views, threads=nw) as sink, \
            tqdm(total=n * job.views, desc=f"render {domain} hands", unit="img", leave=False,
                 disable=not progress) as bar:
        blocks = (_iter_blocks(job, n, nw) if sequence_frames is None else
                  ((start // job.views, imgs, labs) for start, imgs, labs in
                   _iter_sequences(job, n // sequence_frames, sequence_frames, nw)))
        for start, imgs, labs in blocks:
            imgs, labs = downsample(imgs, labs, size)
            if cube_mm is not None:
                cz = np.array([lab["pose"]["center"][2] for lab in labs])
                imgs = cube_encode(imgs, cz, cube_mm, empty_is_far=domain == "synthetic")
                for lab, z in zip(labs, cz):
                    lab["depth_encoding"] = {"kind": "cube", "near_mm": round(float(z - cube_mm / 2), 3),
                                             "cube_mm": cube_mm, "no_reading": 0, "far": 65535}
            names = [name(start * job.views + k) for k in range(len(imgs))]
            sink.add(names, imgs, (json_line({"file": nm, **lab}) for nm, lab in zip(names, labs)) if labels else None)
            bar.update(len(imgs))
        return sink.finish()


def benchmark(n: int = 512, *, domain: str = "synthetic", size: int = 224, repeats: int = 3,
              workers: int | None = None) -> float:
    """Rendering speed in images per second (median of ``repeats`` runs, no files written)."""
    rates = []
    for r in range(repeats):
        t0 = time.perf_counter()
        render_hands(n, seed=r, domain=domain, size=size, workers=workers)
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates))


__all__ = ["DOMAINS", "JOINT_NAMES", "HandRanges", "SensorModel", "benchmark", "cube_encode", "render_hands",
           "render_hand_sequences", "simulate_hands", "write_hands"]
