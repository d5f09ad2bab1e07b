"""Depth rendering of capsule scenes by z-buffering (the hand simulator's renderer, §3.2).

Each primitive is a tapered capsule: the set of points within ``r(s) = r1 + s (r2 - r1)`` of
the segment ``A + s (B - A)``, ``s`` in [0, 1] (a sphere when ``A = B``). For every pixel inside
the primitive's projected bounding box the ray ``t (x, y, 1)`` through the pixel centre is
intersected with the sphere of radius ``r(s*)`` centred at the segment point ``s*`` closest to the
ray. The silhouette is exact (the ray misses iff its distance to the segment exceeds the radius)
and so is the depth on the ridge and at the caps; on a steeply tilted capsule's flanks the depth
lies a fraction of a millimetre behind the exact surface. The nearest hit per pixel wins
(z-buffer). Everything is vectorised over a batch of images: one numpy pass per primitive
index, never a Python loop over pixels or images.

Depth is the z coordinate (distance along the optical axis) in millimetres, as depth cameras
report it; pixels no primitive covers are ``inf``.
"""

from __future__ import annotations

import numpy as np

from .hand_scene import focal_px


def render_depth(a: np.ndarray, b: np.ndarray, r: np.ndarray, size: int) -> np.ndarray:
    """Depth maps ``(n, size, size)`` float32 (mm; ``inf``: nothing) of capsules ``a, b`` (n, P, 3),
    radii ``r`` (n, P, 2), seen by the simulator's camera (:func:`~.hand_scene.intrinsics`)."""
    n, P, _ = a.shape
    f = focal_px(size)
    c = (size - 1) / 2.0
    npx = size * size
    zbuf = np.full((n, npx + 1), np.inf, np.float32)  # the last column: sink for samples off the image
    rows = np.arange(n)[:, None, None]
    for p in range(P):
        A = a[:, p].astype(np.float64)
        B = b[:, p].astype(np.float64)
        rmax = r[:, p].max(1)
        zmin = np.maximum(np.minimum(A[:, 2], B[:, 2]) - rmax, 1.0)
        rpx = f * rmax / zmin + 1.0
        ua = f * A[:, :2] / np.maximum(A[:, 2:], 1.0) + c
        ub = f * B[:, :2] / np.maximum(B[:, 2:], 1.0) + c
        lo = np.floor(np.minimum(ua, ub) - rpx[:, None])
        hi = np.ceil(np.maximum(ua, ub) + rpx[:, None])
        behind = (A[:, 2] <= rmax) | (B[:, 2] <= rmax)  # too close to the camera: skip
        lo = np.clip(lo, 0, size - 1).astype(np.int64)
        hi = np.clip(hi, 0, size - 1).astype(np.int64)
        ext = np.where(behind[:, None], 0, hi - lo + 1)
        ext = np.where(ext > 0, ext, 0)
        kx, ky = int(ext[:, 0].max()), int(ext[:, 1].max())
        if kx == 0 or ky == 0:
            continue
        ox = np.arange(kx)
        oy = np.arange(ky)
        px = lo[:, 0, None] + ox[None, :]  # (n, kx)
        py = lo[:, 1, None] + oy[None, :]  # (n, ky)
        inside = (ox[None, None, :] < ext[:, 0, None, None]) & (oy[None, :, None] < ext[:, 1, None, None])
        dx = ((px - c) / f).astype(np.float32)[:, None, :]  # ray direction (dx, dy, 1)
        dy = ((py - c) / f).astype(np.float32)[:, :, None]
        Af = A.astype(np.float32)
        e = (B - A).astype(np.float32)
        ex, ey, ez = (e[:, i, None, None] for i in range(3))
        Ax, Ay, Az = (Af[:, i, None, None] for i in range(3))
        # closest point of the segment to the ray: w0 = -A
        aa = dx * dx + dy * dy + 1.0
        bb = dx * ex + dy * ey + ez
        cc = (ex * ex + ey * ey + ez * ez)
        dd = -(dx * Ax + dy * Ay + Az)
        ee = -(ex * Ax + ey * Ay + ez * Az)
        den = aa * cc - bb * bb
        s = np.where(den > 1e-6 * aa * np.maximum(cc, 1e-12), (aa * ee - bb * dd) / np.where(den > 0, den, 1.0), 0.0)
        s = np.clip(s, 0.0, 1.0)
        Cx, Cy, Cz = Ax + s * ex, Ay + s * ey, Az + s * ez
        r1 = r[:, p, 0].astype(np.float32)[:, None, None]
        r2 = r[:, p, 1].astype(np.float32)[:, None, None]
        rho = r1 + s * (r2 - r1)
        dc = dx * Cx + dy * Cy + Cz
        disc = dc * dc - aa * (Cx * Cx + Cy * Cy + Cz * Cz - rho * rho)
        hit = (disc >= 0) & inside
        depth = np.where(hit, (dc - np.sqrt(np.maximum(disc, 0.0))) / aa, np.inf).astype(np.float32)
        flat = py[:, :, None] * size + px[:, None, :]
        flat = np.where(hit, flat, npx)
        cur = zbuf[rows, flat]
        zbuf[rows, flat] = np.minimum(cur, depth)
    return zbuf[:, :npx].reshape(n, size, size)
