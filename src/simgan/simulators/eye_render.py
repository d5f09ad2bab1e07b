"""Rasterising eye scenes: a batch of :class:`~simgan.simulators.eye_scene.EyeGeometry` to gray
images, vectorised over the batch with numpy (float32, no Python loop over pixels or images).

Every shape is drawn with *analytic coverage*: each pixel gets ``clip(0.5 - d, 0, 1)`` of a shape
whose signed distance from the pixel centre is ``d`` pixels, so edges are anti-aliased and the
geometry (the pupil centre in particular) is sub-pixel accurate at one sample per pixel. Lids are
graphs ``y = f(x)`` after projection, evaluated once per column and shared by the column's pixels;
ellipses (iris, pupil) use the first-order distance ``f / |grad f|``.

The layers, back to front: the eyeball (sclera with a sphere's Lambertian shading and darker
corners, the caruncle, the iris with radial fibres, a collarette ring and a dark limbus, the
pupil), the shadow of the upper lid on it, and the skin around the lid opening (a dome shaded by
the scene's light, the lid crease, the lash line along the upper lid margin, the brow, an uneven
skin tone). Optional :class:`RenderDetail` layers add what the target domain has and clean
renders lack: fine skin texture, individual eyelashes, corneal glints and spectacle rims.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .eye_scene import EYEBALL_RADIUS, EyeGeometry, EyeSceneParams

F32 = np.float32


@dataclass
class RenderDetail:
    """Per-image extra layers (arrays with one row per image; strength 0 turns a layer off)."""

    skin_texture: np.ndarray  # (n, H, W) multiplicative albedo texture, around 1
    lash_strength: np.ndarray  # (n,) darkness of the upper eyelashes
    lash_length: np.ndarray  # (n,) px
    lash_spacing: np.ndarray  # (n,) px between strands
    lash_slant: np.ndarray  # (n,) horizontal px per px of height (strands lean outwards)
    lash_phase: np.ndarray  # (n,)
    lower_lash_strength: np.ndarray  # (n,)
    glint_pos: np.ndarray  # (n, G, 2) px
    glint_sigma: np.ndarray  # (n, G) px
    glint_amp: np.ndarray  # (n, G) added brightness (0: none)
    rim_centre: np.ndarray  # (n, 2) px, centre of a spectacle rim's circle
    rim_radius: np.ndarray  # (n,) px
    rim_width: np.ndarray  # (n,) px
    rim_amp: np.ndarray  # (n,) >0: bright reflection, <0: dark frame, 0: no glasses

    def take(self, index) -> "RenderDetail":
        return RenderDetail(**{k: v[index] for k, v in self.__dict__.items()})


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def columns(poly: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate polylines ``(n, m, 2)`` that are graphs over x at the pixel columns.

    Returns ``y`` and ``1/sqrt(1 + slope^2)`` as ``(n, width)`` arrays; beyond the ends the first
    and last segments are extended, so two lids meeting at a canthus cross there and the opening
    between them closes with a sharp corner.
    """
    xs, ys = poly[..., 0], poly[..., 1]
    flip = xs[:, -1] < xs[:, 0]
    xs = np.where(flip[:, None], xs[:, ::-1], xs)
    ys = np.where(flip[:, None], ys[:, ::-1], ys)
    m = xs.shape[1]
    xs = np.maximum.accumulate(xs, axis=1) + 1e-4 * np.arange(m)  # strictly increasing
    cols = np.arange(width, dtype=np.float64)
    idx = (xs[:, :, None] <= cols[None, None, :]).sum(axis=1)
    idx = np.clip(idx, 1, m - 1)
    x0 = np.take_along_axis(xs, idx - 1, 1)
    x1 = np.take_along_axis(xs, idx, 1)
    y0 = np.take_along_axis(ys, idx - 1, 1)
    y1 = np.take_along_axis(ys, idx, 1)
    slope = (y1 - y0) / (x1 - x0)
    y = y0 + slope * (cols[None, :] - x0)
    return y.astype(F32), (1.0 / np.sqrt(1.0 + slope * slope)).astype(F32)


def _lerp_axis(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Resample ``a`` to ``size`` samples along ``axis`` by linear interpolation, its first and
    last samples landing on the first and last output samples."""
    n_in = a.shape[axis]
    if n_in == 1:
        return np.repeat(a, size, axis=axis)
    pos = np.linspace(0.0, n_in - 1.0, size)
    lo = np.minimum(pos.astype(np.intp), n_in - 2)
    shape = [1] * a.ndim
    shape[axis] = size
    frac = (pos - lo).astype(a.dtype).reshape(shape)
    left = np.take(a, lo, axis=axis)
    return left + (np.take(a, lo + 1, axis=axis) - left) * frac


def upsample(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resampling of a batch of coarse grids ``(n, h, w)`` to ``(n, height, width)``
    (explicit gathers: small BLAS products thrash when the cores are shared)."""
    return _lerp_axis(_lerp_axis(a, width, 2), height, 1)


def _col(a) -> np.ndarray:
    """Per-image values as ``(n, 1, 1)`` float32 for broadcasting against ``(n, H, W)``."""
    return np.asarray(a, dtype=F32)[:, None, None]


def _decay(x):
    """A cheap stand-in for ``exp(-x)`` on ``x >= 0``: ``1 / (1 + x + x^2/2)``, the same value
    and slope at 0 and nearly the same fall-off; numpy's ``exp`` costs ~6 times more per pixel."""
    return 1.0 / (1.0 + x * (1.0 + x * F32(0.5)))


def _bump(x):
    """A cheap smooth bump standing in for ``exp(-x^2)``: ``(1 - x^2/4)^2`` for ``|x| < 2``."""
    return np.square(np.maximum(1.0 - x * x * F32(0.25), F32(0.0)))


# Numeric kernel (longer than 60 lines on purpose): every layer of the eye drawn in order in one vectorised pass.
def rasterize(p: EyeSceneParams, g: EyeGeometry, detail: RenderDetail | None = None,
              *, pupil_mask: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Render a batch of scenes to ``(n, H, W)`` float32 gray levels (about [0, 1], unclipped).

    With ``pupil_mask=True`` also returns the visible pupil's coverage ``(n, H, W)`` in [0, 1]
    (the pupil ellipse times the lid opening), e.g. to check the ``pupil`` label.

    Long on purpose: one vectorised pass in marked sections (lid opening, eyeball, skin) that
    share a dozen per-pixel arrays and update them in place to keep the simulator's memory
    traffic low; split into functions, those arrays would be passed around or recomputed.
    """
    H, W = g.height, g.width
    X = np.arange(W, dtype=F32)[None, None, :]
    Y = np.arange(H, dtype=F32)[None, :, None]
    s = _col(g.scale)
    inv_s = 1.0 / s
    zero = F32(0.0)

    # --- lid opening ---------------------------------------------------------------------
    yu, nu = columns(g.upper, W)
    yl, nl = columns(g.lower, W)
    yc, _ = columns(g.crease, W)
    d_up = (Y - yu[:, None, :]) * nu[:, None, :]  # px below the upper lid margin
    d_low = (yl[:, None, :] - Y) * nl[:, None, :]  # px above the lower lid margin
    opening = np.minimum(d_up, d_low)
    opening += F32(0.5)
    np.clip(opening, 0.0, 1.0, out=opening)

    # --- eyeball: sclera shaded as a sphere (darker towards the canthi), the caruncle ----------
    light = p.light_dir.astype(F32)
    lx, ly, lz = _col(light[:, 0]), _col(light[:, 1]), _col(light[:, 2])
    amb = _col(p.ambient)
    inv_sr = inv_s * F32(1.0 / EYEBALL_RADIUS)
    ex = (X - _col(g.eyeball[:, 0])) * inv_sr  # (n, 1, W), eyeball radii
    ey = (Y - _col(g.eyeball[:, 1])) * inv_sr  # (n, H, 1)
    nz = 1.0 - (ex * ex + ey * ey)
    np.sqrt(np.maximum(nz, zero, out=nz), out=nz)  # depth of the sphere's normal
    eye = (ex * lx + ey * ly) - nz * lz  # Lambert
    np.maximum(eye, zero, out=eye)
    eye *= 1.0 - amb
    eye += amb
    nz *= F32(0.55)
    nz += F32(0.45)
    eye *= nz
    inner = g.upper[:, 0]
    toward = np.sign(g.eyeball[:, 0] - inner[:, 0]) * 1.2 * g.scale  # the caruncle sits inside the canthus
    car_x = _bump((X - _col(inner[:, 0] + toward)) * _col(1.0 / (1.8 * g.scale)))
    car_y = _bump((Y - _col(inner[:, 1])) * _col(1.0 / (1.8 * g.scale)))
    sclera = 1.0 - (_col(p.caruncle) * car_x) * car_y
    sclera *= _col(p.sclera_tone)
    albedo, pupil = _iris(p, g, sclera, want_pupil=pupil_mask)
    eye *= albedo
    # the upper lid and its lashes shade the top of the eyeball, the lower lid a thin band
    shade = _decay(np.maximum(d_up, zero) * (inv_s * F32(1 / 0.8)))
    shade *= F32(-0.35)
    shade += F32(1.0)
    eye *= shade
    shade = _decay(np.maximum(d_low, zero) * (inv_s * F32(1 / 0.5)))
    shade *= F32(-0.2)
    shade += F32(1.0)
    eye *= shade

    # --- skin: a dome lit by the scene's light, the crease, the lid margins, the brow ------------
    dome_r = F32(24.0)
    qx = (X - _col(g.eyeball[:, 0])) * (inv_s * F32(1 / 1.3))  # mm; the dome is wider than high
    qy = (Y - _col(g.eyeball[:, 1])) * inv_s
    dome_z = dome_r * dome_r - (qx * qx + qy * qy)
    np.sqrt(np.maximum(dome_z, F32(1.0), out=dome_z), out=dome_z)
    skin = (qx * lx + qy * ly) - dome_z * lz
    skin *= F32(1.0) / dome_r
    np.maximum(skin, zero, out=skin)
    skin *= 1.0 - amb
    skin += amb
    x_in = _col(inner[:, 0])
    t_raw = (X - x_in) / _col(g.upper[:, -1, 0] - inner[:, 0])  # 0 inner .. 1 outer canthus
    t_outer = np.clip(t_raw, 0.0, 1.0)
    fade = np.clip(1.0 - ((t_raw - 0.5) * F32(1 / 0.75)) ** 2, 0.0, 1.0)  # (n, 1, W): ends past the canthi
    # the crease is a fold: dark in its groove, darker when lit from above
    dark = _bump((Y - yc[:, None, :]) * (inv_s * F32(1 / 1.3)))
    dark *= _col(p.crease_depth) * (1.0 - 0.6 * ly) * fade
    # rounded lid margins turn away from the light; the lash line darkens the upper one more
    # towards the outer canthus; below the lower lid, the shadow of the eye bag
    near = np.abs(d_up)
    near *= inv_s
    dark += _decay(near * F32(1 / 0.8)) * (F32(0.15) * fade)
    dark += _bump(near) * (_col(p.lash_line) * (0.35 + 0.65 * t_outer) * fade)
    near = np.abs(d_low)
    near *= inv_s
    dark += _decay(near * F32(1 / 0.6)) * (F32(0.15) * fade)
    near -= F32(4.0)
    near *= F32(0.5 / 1.2)
    dark += _bump(near) * (F32(0.12) * fade) * (d_low < 0)
    np.minimum(dark, F32(0.95), out=dark)
    skin *= 1.0 - dark
    db = (Y - _col(g.brow_y)) * inv_s  # (n, H, 1)
    tone = _skin_tone(p, H, W)
    tone *= 1.0 - _col(p.brow_darkness) * _sigmoid(-db * F32(1.0 / 1.2))
    if detail is not None:
        tone *= detail.skin_texture
    skin *= tone

    eye -= skin
    eye *= opening
    eye += skin
    img = eye
    if detail is not None:
        img = _details(img, detail, X, Y, d_up, d_low, opening, t_outer, s)
    if pupil_mask:
        return img, opening * pupil
    return img


IRIS_HARMONICS = (6, 10, 16)  # angular frequencies of the iris fibres


# Numeric kernel (longer than 60 lines on purpose): iris and pupil painted in one vectorised pass.
def _iris(p: EyeSceneParams, g: EyeGeometry, sclera: np.ndarray, want_pupil: bool = False):
    """Paint the iris and pupil over ``sclera`` ``(n, H, W)``: returns the eyeball's albedo and
    (if ``want_pupil``, else ``None``) the pupil's coverage.

    The ellipses are evaluated only in a square window around each iris (a third of the pixels
    at 55x35), gathered from and scattered back to the image with flat indices; window pixels
    outside the image go to a spare slot at the end of the flat buffer. One vectorised pass
    (window gather, ellipses, fibres, scatter), long for the same reason as :func:`rasterize`.
    """
    n, H, W = sclera.shape
    half = int(np.ceil(np.max(g.iris_axes[:, 0], initial=1.0) + 1.5))
    side = 2 * half + 1
    ox = np.floor(g.iris_centre[:, 0]).astype(np.int64) - half
    oy = np.floor(g.iris_centre[:, 1]).astype(np.int64) - half
    k = np.arange(side)
    wx = ox[:, None] + k[None, :]  # (n, side) image columns of the window
    wy = oy[:, None] + k[None, :]
    flat = (np.arange(n) * (H * W))[:, None, None] + wy[:, :, None] * W + wx[:, None, :]
    inside = ((wx >= 0) & (wx < W))[:, None, :] & ((wy >= 0) & (wy < H))[:, :, None]
    flat = np.where(inside, flat, n * H * W)

    # ellipse frame: m along the minor axis (the gaze's image direction), M along the major one
    du = (wx - g.iris_centre[:, :1]).astype(F32)[:, None, :]
    dv = (wy - g.iris_centre[:, 1:]).astype(F32)[:, :, None]
    ux, uy = _col(g.minor_dir[:, 0]), _col(g.minor_dir[:, 1])
    inv_a, inv_b = _col(1.0 / g.iris_axes[:, 0]), _col(1.0 / g.iris_axes[:, 1])
    m = (du * (ux * inv_b) + dv * (uy * inv_b))
    M = (dv * (ux * inv_a) - du * (uy * inv_a))
    r2 = m * m + M * M
    grad = np.sqrt(np.square(m * inv_b) + np.square(M * inv_a))
    grad *= F32(2.0)
    grad += F32(1e-6)
    inv_grad = 1.0 / grad
    iris_cov = np.clip(F32(0.5) - (r2 - F32(1.0)) * inv_grad, 0.0, 1.0)
    k2 = _col((p.pupil_radius / p.iris_radius) ** 2)
    pupil_cov = np.clip(F32(0.5) - (r2 - k2) * inv_grad, 0.0, 1.0)
    rho = np.sqrt(r2)
    # radial fibres: cos(k theta + phase) = Re(e^{i phase} z^k), z = (m + iM) / rho, by squaring
    inv_rho = 1.0 / (rho + F32(1e-6))
    zr, zi = m * inv_rho, M * inv_rho
    powers = {1: (zr, zi)}
    for e in (2, 4, 8, 16):
        ar, ai = powers[e // 2]
        powers[e] = (ar * ar - ai * ai, F32(2.0) * ar * ai)
    for e, (p1, p2) in ((6, (4, 2)), (10, (8, 2))):
        (ar, ai), (br, bi) = powers[p1], powers[p2]
        powers[e] = (ar * br - ai * bi, ar * bi + ai * br)
    fibres = np.ones_like(rho)
    for j, e in enumerate(IRIS_HARMONICS):
        cr, ci = powers[e]
        amp, ph = p.iris_amps[:, j], p.iris_phases[:, j]
        fibres += cr * _col(amp * np.cos(ph)) - ci * _col(amp * np.sin(ph))
    limbus = np.clip((rho - F32(0.72)) * F32(1.0 / 0.28), 0.0, 1.0)
    iris = 1.0 - _col(p.limbus_darkness) * np.square(limbus)
    iris *= fibres
    iris *= 1.0 + _col(p.collarette_contrast) * _bump((rho - _col(p.collarette_radius)) * F32(11.0))
    iris *= _col(p.iris_tone)
    iris += pupil_cov * (_col(p.pupil_tone) - iris)

    buf = np.empty(n * H * W + 1, F32)
    buf[:-1] = sclera.ravel()
    buf[-1] = 0.0  # the sink that off-eye entries of ``flat`` point at; never read back
    under = buf[flat]
    buf[flat] = under + iris_cov * (iris - under)
    albedo = buf[:-1].reshape(n, H, W)
    if not want_pupil:
        return albedo, None
    pbuf = np.zeros(n * H * W + 1, F32)
    pbuf[flat] = pupil_cov
    return albedo, pbuf[:-1].reshape(n, H, W)


def _skin_tone(p: EyeSceneParams, H: int, W: int) -> np.ndarray:
    """Skin albedo: the scene's skin tone, made uneven by its coarse random field."""
    field = upsample(p.skin_field.astype(F32), H, W)
    field *= _col(p.skin_field_amp)
    field += F32(1.0)
    field *= _col(p.skin_tone)
    return field


def _details(img, d: RenderDetail, X, Y, d_up, d_low, opening, t_outer, s):
    """The target domain's extra layers: eyelashes, glints, spectacle rims."""
    zero = F32(0.0)
    # eyelashes: strands rising from the upper lid margin, leaning outwards, denser at the outer
    # corner; a comb pattern across x whose phase shifts with height gives slanted strands
    h = np.maximum(-d_up, zero)
    band = _bump(h * _col(1.5 / d.lash_length))
    band *= np.minimum(h * F32(2.0), F32(1.0))
    comb = np.cos((X + _col(d.lash_slant) * h) * _col(2 * math.pi / d.lash_spacing) + _col(d.lash_phase))
    comb += F32(1.0)
    comb *= comb
    comb *= F32(0.15)  # 0.6 * ((1 + cos) / 2)^2
    comb += F32(0.4)
    lashes = band * comb
    lashes *= _col(d.lash_strength) * (0.3 + 0.7 * t_outer)
    hl = np.maximum(-d_low, zero)
    lower = _decay(hl * F32(1.5))
    lower *= np.minimum(hl * F32(2.0), F32(1.0))
    lower *= _col(d.lower_lash_strength) * t_outer
    lashes += lower
    np.minimum(lashes, F32(0.95), out=lashes)
    img *= 1.0 - lashes
    # glints: reflections of light sources on the cornea, inside the lid opening (a Gaussian
    # spot is separable: a product of a row and a column profile)
    for j in range(d.glint_pos.shape[1]):
        amp = d.glint_amp[:, j]
        if not np.any(amp > 0):
            continue
        inv = -0.5 / d.glint_sigma[:, j] ** 2
        gx = np.exp((X - _col(d.glint_pos[:, j, 0])) ** 2 * _col(inv))
        gy = np.exp((Y - _col(d.glint_pos[:, j, 1])) ** 2 * _col(inv)) * _col(amp)
        img += (gx * gy) * opening
    # spectacle rims: a thin bright (reflection) or dark (frame) arc of a large circle
    worn = np.nonzero(d.rim_amp != 0)[0]
    if len(worn):
        rx = X - _col(d.rim_centre[worn, 0])
        ry = Y - _col(d.rim_centre[worn, 1])
        dist = np.abs(np.sqrt(rx * rx + ry * ry) - _col(d.rim_radius[worn]))
        line = _bump(dist * _col(1.6 / d.rim_width[worn]))
        amp = _col(d.rim_amp[worn])
        img[worn] = img[worn] * (1.0 - np.maximum(-amp, zero) * line) + np.maximum(amp, zero) * line
    return img
