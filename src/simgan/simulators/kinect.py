"""The ``target`` domain of the hand simulator: a structured-light depth sensor (a Kinect v1 model).

The NYU hand pose data (§3.2) were captured by three Kinects (PrimeSense structured light). The
paper: "The main source of noise in real depth images is from depth discontinuity at the edges"
(Figure 8). This module turns clean scenes into what such a sensor reports, one effect at a time;
each effect is a documented property of the sensor, with its source:

1. **Surroundings** (what NYU's frames contain around the hand): a background surface (the
   body or a wall) 150-650 mm behind the hand in 80% of frames, tilted up to 30 deg, and 0-2
   clutter objects (spheres) near the frame's border. The synthetic domain has none: NYU's
   synthetic renders show the hand model alone.
2. **Projector shadow**: the IR projector sits ``b = 75 mm`` beside the IR camera; surface points
   the camera sees but the projector's pattern cannot reach get no reading, a band beside every
   foreground edge ``f b (1/z_near - 1/z_far)`` pixels wide (Khoshelham & Elberink, "Accuracy
   and resolution of Kinect depth data", Sensors 2012; Mallick, Das & Majumdar, "Characterizations
   of noise in Kinect depth images: a review", IEEE Sensors J. 2014, "shadow"/"occlusion").
3. **Grazing angles**: where the surface turns away from the camera the projected speckles
   stretch until matching fails; readings vanish with a probability rising (linearly in the
   cosine) from 0 at 72 deg to 1 at 84 deg between the ray and the normal (Nguyen, Izadi & Lovell, "Modeling Kinect sensor
   noise for improved 3D reconstruction and tracking", 3DIMPVT 2012: noise grows sharply
   beyond ~70 deg).
4. **Jagged, quantised edges**: disparity comes from matching 9x9 windows of the speckle
   pattern (Khoshelham & Elberink 2012), so where a window straddles an edge, which side wins
   depends on the local speckles: the edge is displaced by up to ~2 sensor pixels in blocky,
   random steps. Modelled by resampling the depth map (nearest neighbour) at positions shifted
   by a blockwise-constant random field ("lateral noise", Nguyen et al. 2012; Mallick et al. 2014).
5. **Missing readings and flying pixels at silhouettes**: windows that mix foreground and
   background either fail (no reading) or return a depth in between ("flying pixels", Mallick
   et al. 2014; Sarbolandi, Lefloch & Kolb, "Kinect range sensing: structured-light versus
   time-of-flight Kinect", CVIU 2015): pixels next to a depth jump of more than 12 mm are
   dropped with probability ``p_edge_drop`` or set to a random blend of the two depths with
   probability ``p_flying``.
6. **Holes**: small blobs without readings on the surfaces (IR-absorbing or specular spots,
   speckle dropout; Mallick et al. 2014).
7. **Axial noise**: Gaussian, ``sigma_z = 1.2 + 1.9 (z - 0.4 m)^2`` mm with ``z`` in metres
   (Nguyen et al. 2012, for angles below 60 deg).
8. **Disparity quantisation**: the sensor reports disparity in 1/8 pixel steps of its 580 px
   focal length IR camera with the 75 mm baseline; depth is ``f b / d``, so its steps grow with
   ``z^2`` (0.7 mm at 0.5 m, 2.8 mm at 1 m; Khoshelham & Elberink 2012). Then whole millimetres
   (NYU's depth PNGs store integer millimetres).

"No reading" is depth 0, as in NYU's and the Kinect's images. Pixel-scale effects (jagged edges,
edge bands, holes) are sized in sensor pixels, ``size / 160`` image pixels each: NYU's 224 px
crops enlarge a hand that spans about 150 Kinect pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .hand_scene import focal_px

KINECT_FOCAL_PX = 580.0
KINECT_BASELINE_MM = 75.0
SUBPIXEL = 8


@dataclass(frozen=True)
class SensorModel:
    """Strength of each effect (see the module docstring); ``SensorModel.clean()`` turns all off."""

    background_prob: float = 0.8
    background_mm: tuple = (150.0, 650.0)
    clutter_max: int = 2
    shadow: bool = True
    grazing_deg: tuple = (72.0, 84.0)
    jitter_px: float = 1.5  # sensor pixels, edge displacement amplitude
    jitter_block: int = 3  # sensor pixels per block of the displacement field
    p_edge_drop: float = 0.45
    p_flying: float = 0.25
    edge_jump_mm: float = 12.0
    holes_max: int = 3
    noise: bool = True
    quantise: bool = True

    @classmethod
    def clean(cls) -> "SensorModel":
        return cls(background_prob=0.0, clutter_max=0, shadow=False, grazing_deg=(90.0, 91.0), jitter_px=0.0,
                   p_edge_drop=0.0, p_flying=0.0, holes_max=0, noise=False, quantise=False)


def sensor_px(size: int) -> float:
    """Image pixels per sensor pixel at image size ``size``."""
    return size / 160.0


def surroundings(rng: np.random.Generator, center: np.ndarray, size: int, model: SensorModel):
    """Background planes and clutter spheres for each scene (``center``: (n, 3) hand centres).

    Returns ``planes`` (n, 4): ``(nx, ny, nz, d)`` with ``n . X = d`` (``d = 0``: no plane) and
    ``spheres`` (n, K, 4): ``(x, y, z, r)`` (``r = 0``: none)."""
    n = len(center)
    has = rng.random(n) < model.background_prob
    dist = center[:, 2] + rng.uniform(*model.background_mm, n)
    tilt = np.radians(rng.uniform(-30, 30, (n, 2)))
    normal = np.stack([np.sin(tilt[:, 0]), np.sin(tilt[:, 1]), np.ones(n)], 1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    point = np.stack([center[:, 0], center[:, 1], dist], 1)
    planes = np.concatenate([normal, (normal * point).sum(1, keepdims=True)], 1)
    planes[~has] = 0.0
    K = max(1, model.clutter_max)
    count = rng.integers(0, model.clutter_max + 1, n) if model.clutter_max else np.zeros(n, int)
    f = focal_px(size)
    # a position near the border: one coordinate at +-(0.35..0.5) of the frame, the other anywhere
    edge = rng.uniform(0.35, 0.55, (n, K)) * rng.choice([-1, 1], (n, K))
    other = rng.uniform(-0.5, 0.5, (n, K))
    swap = rng.random((n, K)) < 0.5
    u = np.where(swap, edge, other) * size
    v = np.where(swap, other, edge) * size
    z = center[:, 2, None] + rng.uniform(-80, 300, (n, K))
    r = rng.uniform(20, 60, (n, K))
    spheres = np.stack([u * z / f, v * z / f, z, r], -1)
    spheres[np.arange(K)[None, :] >= count[:, None]] = 0.0
    return planes, spheres


def plane_depth(planes: np.ndarray, size: int) -> np.ndarray:
    """Depth (n, size, size) of each plane ``n . X = d`` along the pixel rays (``inf``: none)."""
    f = focal_px(size)
    c = (size - 1) / 2.0
    g = (np.arange(size) - c) / f
    denom = (planes[:, 0, None, None] * g[None, None, :] + planes[:, 1, None, None] * g[None, :, None]
             + planes[:, 2, None, None])
    z = planes[:, 3, None, None] / np.where(np.abs(denom) > 1e-6, denom, 1e-6)
    ok = (planes[:, 3, None, None] > 0) & (z > 0)
    return np.where(ok, z, np.inf).astype(np.float32)


def _shadow(depth: np.ndarray, size: int) -> np.ndarray:
    """Pixels the projector (to the camera's right, +x) cannot light: a point at column ``x`` is
    in shadow if a nearer point at ``x - k`` has a disparity at least ``k`` larger, i.e. if some
    point to its left has a projector coordinate ``x' + disparity(x')`` at least its own (a
    running maximum along each row)."""
    f = focal_px(size)
    finite = np.isfinite(depth)
    disp = np.where(finite, f * KINECT_BASELINE_MM / np.where(finite, depth, 1.0), 0.0)
    proj = disp + np.arange(depth.shape[2])[None, None, :]
    before = np.maximum.accumulate(proj, axis=2)
    shadow = np.zeros(depth.shape, bool)
    shadow[:, :, 1:] = before[:, :, :-1] >= proj[:, :, 1:]
    return shadow & finite


def _grazing_cos(depth: np.ndarray, size: int) -> np.ndarray:
    """Cosine between the viewing ray and the surface normal, from the depth map's gradient."""
    f = focal_px(size)
    z = np.where(np.isfinite(depth), depth, np.nan)
    gy, gx = np.gradient(z, axis=(1, 2))
    scale = f / np.maximum(z, 1.0)  # pixels per millimetre at that depth
    sx, sy = gx * scale, gy * scale
    cos = 1.0 / np.sqrt(1.0 + sx * sx + sy * sy)
    return np.where(np.isfinite(cos), cos, 1.0)


# Numeric kernel (longer than 60 lines on purpose): the sensor's effects in their physical order, one pass.
def apply_sensor(depth: np.ndarray, rng: np.random.Generator, size: int, model: SensorModel) -> np.ndarray:
    """Clean depth (n, H, W) float mm (``inf``: nothing) -> sensor output uint16 mm (0: no reading).

    The sensor's effects in their physical order (numbered as in the module docstring); one
    function, because the order of the random draws is the seed contract.
    """
    n, H, W = depth.shape
    spx = sensor_px(size)
    z = depth.astype(np.float32)
    valid = np.isfinite(z)
    f32 = np.float32
    # 2. projector shadow (decided on the clean geometry)
    drop = _shadow(z, size) if model.shadow else np.zeros(z.shape, bool)
    # 3. grazing angles
    c_lo, c_hi = (np.cos(np.radians(a)) for a in model.grazing_deg)
    cos = _grazing_cos(z, size)
    p_graze = np.clip((c_lo - cos) / max(c_lo - c_hi, 1e-6), 0.0, 1.0)  # linear in the cosine
    drop |= rng.random(z.shape, dtype=f32) < p_graze
    # 4. jagged edges: resample at blockwise-constant random offsets
    if model.jitter_px > 0:
        block = max(1, int(round(model.jitter_block * spx)))
        bh, bw = -(-H // block), -(-W // block)
        amp = model.jitter_px * spx
        off = np.rint(rng.uniform(-amp, amp, (n, 2, bh, bw))).astype(np.int64)
        off = np.repeat(np.repeat(off, block, 2), block, 3)[:, :, :H, :W]
        yy = np.clip(np.arange(H)[None, :, None] + off[:, 0], 0, H - 1)
        xx = np.clip(np.arange(W)[None, None, :] + off[:, 1], 0, W - 1)
        idx = np.arange(n)[:, None, None]
        z = z[idx, yy, xx]
        drop = drop[idx, yy, xx]
        valid = np.isfinite(z)
    # 5. silhouettes: pixels next to a depth jump (or next to nothing)
    zf = np.where(valid, z, f32(1e5))
    zmax = ndimage.maximum_filter(zf, size=(1, 3, 3), mode="nearest")
    zmin = ndimage.minimum_filter(zf, size=(1, 3, 3), mode="nearest")
    near_edge = valid & ((zmax - zf > model.edge_jump_mm) | (zf - zmin > model.edge_jump_mm))
    if spx > 1.5:  # bands of about one sensor pixel
        near_edge = valid & ndimage.binary_dilation(near_edge, np.ones((1, 3, 3), bool), iterations=int(spx // 1.5))
    u = rng.random(z.shape, dtype=f32)
    edge_drop = near_edge & (u < model.p_edge_drop)
    flying = near_edge & (u >= model.p_edge_drop) & (u < model.p_edge_drop + model.p_flying) & (zmax - zf > model.edge_jump_mm)
    fy = np.nonzero(flying)
    k = len(fy[0])
    far = np.where(zmax[fy] >= 1e5, zf[fy] + rng.uniform(50, 400, k), zmax[fy])  # next to nothing: fly outwards
    z[fy] = zf[fy] + rng.random(k) * (far - zf[fy])
    drop |= edge_drop
    # 6. holes
    if model.holes_max > 0:
        count = rng.integers(0, model.holes_max + 1, n)
        nvalid = np.maximum(valid.sum((1, 2)), 1)
        seeds = valid & (rng.random(z.shape, dtype=f32) < (count / nvalid)[:, None, None])
        rad = max(1, int(round(1.2 * spx)))
        disk = np.hypot(*np.mgrid[-rad:rad + 1, -rad:rad + 1]) <= rad + 0.3
        drop |= ndimage.binary_dilation(seeds, disk[None])
    # 7. axial noise, 8. disparity quantisation
    zz = np.where(np.isfinite(z), z, f32(0.0))
    if model.noise:
        zm = zz / f32(1000.0)
        sigma = f32(1.2) + f32(1.9) * (zm - f32(0.4)) ** 2  # mm (Nguyen et al.: metres in, 1e-3 m out)
        zz = zz + rng.standard_normal(z.shape, dtype=f32) * sigma
    if model.quantise:
        fb = KINECT_FOCAL_PX * KINECT_BASELINE_MM
        d = np.rint(f32(SUBPIXEL * fb) / np.maximum(zz, f32(1.0))) / f32(SUBPIXEL)
        zz = np.where(zz > 0, f32(fb) / np.maximum(d, f32(1.0 / SUBPIXEL)), f32(0.0))
    out = np.rint(zz)
    out[drop | ~np.isfinite(z)] = 0
    return np.clip(out, 0, 65535).astype(np.uint16)
