"""The target domain: eye scenes as a laptop webcam sees them, our stand-in for MPIIGaze (§3.1).

The paper's real set is MPIIGaze: eye crops from laptop webcams "captured under extreme
illumination conditions", with skin texture, sensor noise and iris detail that UnityEyes renders
lack (Figure 5). The ``target`` domain renders the *same kind of scenes* as the ``synthetic`` one
(same geometry and label distribution) and changes only their appearance, in two stages:

* extra scene layers, drawn by the rasteriser (:class:`~simgan.simulators.eye_render.RenderDetail`):
  skin texture (pores, blotches, wrinkles), individual eyelashes, corneal glints, spectacle rims;
* a camera (:func:`apply_camera`): uneven illumination (a strong gradient and a soft cast
  shadow), defocus blur and a sensor of lower resolution than the crop (down- then up-sampling),
  auto-exposure with a random gain that saturates highlights or crushes shadows, shot and read
  noise (partly blotchy, as after demosaicing and compression), a gamma tone curve, 8-bit
  quantisation, and histogram equalisation, the normalisation MPIIGaze's eye crops get.

All of these are local or per-image tone changes, the kind of gap a fully convolutional refiner
with a ~19 px receptive field can learn to close. Their strengths and probabilities live in one
:class:`TargetAppearance` so they can be tuned without touching code.

Speed: per-pixel noise is uniform (variance 1 after scaling; blurred or equalised it looks the
same as Gaussian noise and is 4x cheaper to draw), and the optics come from a small table of
precomputed resampling matrices, one per (sensor resolution, defocus) pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

from ..errors import SimganError
from .eye_render import RenderDetail, upsample
from .eye_scene import CORNEA_RADIUS, REFERENCE_WIDTH, EyeGeometry, EyeSceneParams

F32 = np.float32
GLINTS = 2  # light sources that can reflect on the cornea: a lamp or window, and the screen
OPTICS_LEVELS = (4, 5)  # table of optics: sensor resolutions x defocus levels across their ranges


@dataclass(frozen=True)
class TargetAppearance:
    """Knobs of the target domain's appearance. Ranges are ``(low, high)`` of a uniform draw per
    image; lengths in pixels are for a 55-px-wide image and scale with the width."""

    skin_texture: float = 0.05  # std of the multiplicative skin texture (pores + wrinkles), at most
    lash_prob: float = 0.85  # share of images with visible eyelashes
    lash_strength: tuple[float, float] = (0.4, 0.9)  # darkness of the upper lashes
    lash_length: tuple[float, float] = (1.2, 3.0)  # px
    lash_spacing: tuple[float, float] = (1.6, 3.0)  # px between strands
    glint_prob: float = 0.65  # share of images with a corneal reflection of the main light
    second_glint_prob: float = 0.25  # ... and of a second light (e.g. the screen)
    glint_strength: tuple[float, float] = (0.4, 1.2)  # added brightness at the glint's centre
    glint_sigma: tuple[float, float] = (0.45, 0.9)  # px
    glasses_prob: float = 0.15  # share of images crossed by a spectacle rim
    glasses_bright: float = 0.75  # share of those where the rim is a bright reflection (not dark)
    gradient: float = 1.2  # max log brightness ratio across the image width (uneven light)
    shadow_prob: float = 0.35  # share of images with a soft cast shadow
    shadow_strength: tuple[float, float] = (0.3, 0.85)  # fraction of light the shadow removes
    exposure: tuple[float, float] = (0.6, 1.6)  # gain over auto-exposure (log-uniform)
    gamma: tuple[float, float] = (0.6, 1.6)  # log-uniform
    blur_sigma: tuple[float, float] = (0.4, 1.1)  # px, defocus (Gaussian)
    downsample: tuple[float, float] = (1.0, 1.8)  # sensor pixels per crop pixel, inverse
    read_noise: tuple[float, float] = (0.0006, 0.005)  # std, on the [0, 1] scale
    shot_noise: tuple[float, float] = (0.002, 0.011)  # std at full exposure (grows as sqrt)
    equalize_prob: float = 1.0  # share of images histogram-equalised (MPIIGaze: all)

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            lo, hi = v if isinstance(v, tuple) else (v, v)
            if not 0.0 <= lo <= hi or (f.name.endswith(("prob", "bright")) and hi > 1.0):
                raise SimganError(f"TargetAppearance.{f.name}={v!r} is out of range")
        if self.exposure[0] <= 0 or self.gamma[0] <= 0 or self.downsample[0] < 1.0:
            raise SimganError("TargetAppearance: exposure and gamma must be positive, downsample at least 1")


@dataclass
class CameraLook:
    """Per-image camera settings drawn from a :class:`TargetAppearance` (one row per image)."""

    gradient: np.ndarray  # (n, 2) log brightness change per image width, along x and y
    shadow: np.ndarray  # (n, 4) normal angle, offset (px from the centre), softness (px), strength
    gain: np.ndarray  # (n,)
    gamma: np.ndarray  # (n,)
    optics: np.ndarray  # (n,) index into the table of optics (see _optics_table)
    read_noise: np.ndarray  # (n,)
    shot_noise: np.ndarray  # (n,)
    blotchy: np.ndarray  # (n,) share of the noise's variance that is blotchy (low resolution)
    noise: np.ndarray  # (n, H, W) unit-variance white noise
    noise_low: np.ndarray  # (n, ceil(H/2), ceil(W/2)) unit-variance noise for the blotchy part
    equalize: np.ndarray  # (n,) bool
    table: tuple  # (optics along y (K, H, H), along x (K, W, W)), shared by all images

    def take(self, index) -> "CameraLook":
        return CameraLook(**{k: (v if k == "table" else v[index]) for k, v in self.__dict__.items()})


def _unit_noise(rng: np.random.Generator, shape) -> np.ndarray:
    """Uniform noise with zero mean and unit variance, float32."""
    out = rng.random(shape, dtype=F32)
    out -= F32(0.5)
    out *= F32(math.sqrt(12.0))
    return out


def _resampling(size: int, factor: float, sigma: float) -> np.ndarray:
    """``(size, size)`` optics along one axis of a crop of ``size`` pixels seen by a sensor with
    ``m = round(size / factor)`` pixels across it: a defocus blur of ``sigma`` px and the
    integration over each sensor pixel (``m x size``), then linear interpolation back to the
    crop's pixels (``size x m``). ``factor = 1`` and ``sigma -> 0`` give the identity."""
    m = int(np.clip(round(size / factor), 2, size))
    step = size / m
    x = np.arange(size)
    centre = (np.arange(m) + 0.5) * step - 0.5
    var = sigma ** 2 + (step * step - 1.0) / 12.0 + 1e-3  # defocus + the sensor pixel's box
    down = np.exp(-0.5 * (x[None, :] - centre[:, None]) ** 2 / var)
    down /= down.sum(axis=1, keepdims=True)
    pos = np.clip((x + 0.5) / step - 0.5, 0.0, m - 1)
    up = np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(m)[None, :]))
    return up @ down


@lru_cache(maxsize=16)
def _optics_table(height: int, width: int, downsample: tuple, blur_sigma: tuple) -> tuple:
    """Optics for every (sensor resolution, defocus) level: ``(K, H, H)`` and ``(K, W, W)``."""
    px = width / REFERENCE_WIDTH
    factors = np.linspace(*downsample, OPTICS_LEVELS[0])
    sigmas = np.linspace(*blur_sigma, OPTICS_LEVELS[1]) * px
    ys = [_resampling(height, f, sg) for f in factors for sg in sigmas]
    xs = [_resampling(width, f, sg) for f in factors for sg in sigmas]
    return np.stack(ys).astype(F32), np.stack(xs).astype(F32)


# Numeric kernel (longer than 60 lines on purpose): one fixed sequence of draws, whose order keeps sets reproducible.
def sample_look(rng: np.random.Generator, p: EyeSceneParams, g: EyeGeometry,
                appearance: TargetAppearance) -> tuple[RenderDetail, CameraLook]:
    """Draw the target appearance of ``len(p)`` scenes (a fixed sequence of draws from ``rng``).

    Long on purpose: the order of the draws is the simulator's seed contract (the same seed gives
    the same images), so they stand in one place, in order, one commented group per effect.
    """
    n, H, W = len(p), g.height, g.width
    a = appearance
    px = W / REFERENCE_WIDTH
    u = lambda r, size=n: rng.uniform(r[0], r[1], size)  # noqa: E731
    logu = lambda r, size=n: np.exp(rng.uniform(math.log(r[0]), math.log(r[1]), size))  # noqa: E731
    chance = lambda prob: rng.random(n) < prob  # noqa: E731

    # skin texture: pores (fine), blotches (medium), wrinkles (long along x); the coarser ones
    # are drawn at low resolution and interpolated
    amps = (rng.uniform(0.1, 1.0, (3, n)) ** 2 * a.skin_texture).astype(F32)[:, :, None, None]
    fine = _unit_noise(rng, (n, H, W))
    medium = _unit_noise(rng, (n, (H + 3) // 4, (W + 3) // 4))
    wrinkles = _unit_noise(rng, (n, H, (W + 5) // 6))
    texture = fine * amps[0]
    texture += upsample(medium, H, W) * (amps[1] * F32(1.5))  # (interpolation lowers the variance)
    texture += upsample(wrinkles, H, W) * (amps[2] * F32(0.8))
    texture += F32(1.0)
    np.maximum(texture, F32(0.2), out=texture)

    # eyelashes lean towards the outer canthus
    outward = np.sign(g.upper[:, -1, 0] - g.upper[:, 0, 0])
    lash_strength = u(a.lash_strength) * chance(a.lash_prob)
    lash_length, lash_spacing = u(a.lash_length) * px, u(a.lash_spacing) * px
    lash_slant = -outward * rng.uniform(0.2, 0.9, n)
    lash_phase = rng.uniform(0.0, 2 * math.pi, n)
    lower_lash = rng.uniform(0.0, 0.3, n) * (lash_strength > 0)

    # glints: the mirror reflection of each light on the corneal sphere, seen from the camera
    second = rng.standard_normal((n, 3))
    second[:, 2] = -np.abs(second[:, 2]) - 1.0
    lights = np.stack([p.light_dir, second / np.linalg.norm(second, axis=1, keepdims=True)], axis=1)
    half = lights + np.array([0.0, 0.0, -1.0])
    half /= np.linalg.norm(half, axis=2, keepdims=True)
    glint_pos = g.cornea[:, None, :] + (g.scale * CORNEA_RADIUS)[:, None, None] * half[:, :, :2]
    glint_sigma = u(a.glint_sigma, (n, GLINTS)) * px
    glint_amp = u(a.glint_strength, (n, GLINTS)) * np.stack([chance(a.glint_prob), chance(a.second_glint_prob)], 1)

    # spectacle rims: an arc of a large circle through a point above or across the eye
    worn = chance(a.glasses_prob)
    through = np.stack([rng.uniform(0, W - 1, n), rng.uniform(0.05, 0.6, n) * (H - 1)], 1)
    tilt = np.radians(rng.uniform(-25, 25, n))
    rim_radius = rng.uniform(40, 120, n) * px
    rim_centre = through + rim_radius[:, None] * np.stack([-np.sin(tilt), np.cos(tilt)], 1)
    rim_width = rng.uniform(0.4, 0.9, n) * px
    rim_sign = np.where(rng.random(n) < a.glasses_bright, 1.0, -1.0)
    rim_amp = rim_sign * np.where(rim_sign > 0, rng.uniform(0.3, 0.9, n), rng.uniform(0.3, 0.7, n)) * worn

    detail = RenderDetail(texture, lash_strength, lash_length, lash_spacing, lash_slant, lash_phase,
                          lower_lash, glint_pos, glint_sigma, glint_amp, rim_centre, rim_radius,
                          rim_width, rim_amp)

    # camera
    angle = rng.uniform(0, 2 * math.pi, n)
    gradient = (rng.uniform(0, 1, n) * a.gradient)[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    shadow = np.stack([rng.uniform(0, 2 * math.pi, n), rng.uniform(-0.35, 0.35, n) * W,
                       rng.uniform(1.0, 6.0, n) * px, u(a.shadow_strength) * chance(a.shadow_prob)], 1)
    gain, gamma = logu(a.exposure), logu(a.gamma)
    optics = rng.integers(0, OPTICS_LEVELS[0] * OPTICS_LEVELS[1], n)
    read_noise, shot_noise = u(a.read_noise), u(a.shot_noise)
    blotchy = rng.uniform(0.0, 0.8, n)
    noise = _unit_noise(rng, (n, H, W))
    noise_low = _unit_noise(rng, (n, (H + 1) // 2, (W + 1) // 2))
    equalize = chance(a.equalize_prob)
    table = _optics_table(H, W, a.downsample, a.blur_sigma)
    look = CameraLook(gradient, shadow, gain, gamma, optics, read_noise, shot_noise, blotchy,
                      noise, noise_low, equalize, table)
    return detail, look


def _col(a) -> np.ndarray:
    return np.asarray(a, dtype=F32)[:, None, None]


def apply_camera(img: np.ndarray, look: CameraLook) -> np.ndarray:
    """Turn rendered ``(n, H, W)`` float images into 8-bit webcam frames ``(n, H, W)`` uint8."""
    n, H, W = img.shape
    X = (np.arange(W, dtype=F32) - (W - 1) / 2)[None, None, :]
    Y = (np.arange(H, dtype=F32) - (H - 1) / 2)[None, :, None]
    # uneven illumination: a strong gradient and, sometimes, a soft-edged cast shadow
    img = img * (np.exp(X * _col(look.gradient[:, 0] / W)) * np.exp(Y * _col(look.gradient[:, 1] / W)))
    ang, off, soft, strength = (look.shadow[:, k] for k in range(4))
    dist = (X * _col(np.cos(ang) / soft) + Y * _col(np.sin(ang) / soft)) - _col(off / soft)
    img *= 1.0 - _col(strength) / (1.0 + np.exp(-dist))
    # auto-exposure brings the mean to 0.4; the gain over- or under-exposes from there
    img *= _col(0.4 * look.gain / np.maximum(img.mean(axis=(1, 2)), 1e-3))
    # lens blur, sensor resolution and interpolation back to the crop
    table_y, table_x = look.table
    img = table_y[look.optics] @ img @ table_x[look.optics].transpose(0, 2, 1)
    # shot and read noise, part of it blotchy; saturation; the camera's tone curve
    low = upsample(look.noise_low, H, W)
    noise = look.noise * _col(np.sqrt(1.0 - look.blotchy))
    noise += low * _col(np.sqrt(look.blotchy) * 1.6)  # (interpolation halves the variance)
    std = np.sqrt(np.maximum(img, F32(0.0)))
    std *= _col(look.shot_noise)
    std += _col(look.read_noise)
    img += std * noise
    np.clip(img, 0.0, 1.0, out=img)
    np.maximum(img, F32(1e-6), out=img)
    np.log(img, out=img)
    img *= _col(look.gamma)
    np.exp(img, out=img)  # img ** gamma, twice as fast as numpy's power
    img *= F32(255.0)
    img += F32(0.5)
    out = img.astype(np.uint8)
    if np.any(look.equalize):
        idx = np.nonzero(look.equalize)[0]
        out[idx] = equalize_histograms(out[idx])
    return out


def equalize_histograms(images: np.ndarray) -> np.ndarray:
    """Histogram-equalise each ``(H, W)`` uint8 image of a batch (OpenCV's ``equalizeHist``:
    ``lut[v] = round((cdf[v] - cdf_min) / (N - cdf_min) * 255)``)."""
    n = images.shape[0]
    flat = images.reshape(n, -1)
    count = flat.shape[1]
    hist = np.bincount((flat + (np.arange(n) * 256)[:, None]).ravel(), minlength=n * 256).reshape(n, 256)
    cdf = np.cumsum(hist, axis=1)
    cdf_min = np.take_along_axis(cdf, flat.min(axis=1, keepdims=True).astype(np.intp), 1)
    denom = np.maximum(count - cdf_min, 1)
    lut = np.clip(np.round((cdf - cdf_min) * 255.0 / denom), 0, 255).astype(np.uint8)
    flat_eq = np.take_along_axis(lut, flat.astype(np.intp), 1)
    constant = (count - cdf_min[:, 0]) == 0  # a flat image stays as it was
    flat_eq[constant] = flat[constant]
    return flat_eq.reshape(images.shape)
