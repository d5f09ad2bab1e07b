"""Eye scenes: the random parameters of one rendered eye and its projected geometry.

The built-in stand-in for UnityEyes (Wood et al. 2016), whose 1.2M renders are the synthetic set
of the paper's gaze experiment (§3.1). A scene is a small 3D model in millimetres, in a *head
frame* centred on the eyeball (x right, y down, z away from the camera when the head faces the
camera): an eyeball of radius :data:`EYEBALL_RADIUS` with an iris disc and a pupil, two eyelid
margins running from the inner to the outer canthus over a surface close to the eyeball, and a
lid crease above the upper lid. The head is rotated by its pose, the eye inside the head by its
gaze, and everything is projected with a weak-perspective (scaled orthographic) camera, so the
iris is an ellipse whose centre and squash follow the gaze *in camera coordinates*, the label the
gaze estimator learns.

The lids follow the gaze as real lids do (the upper lid rides on the top of the iris: it lowers
when the eye looks down and rises when it looks up; the lid peaks slide towards the iris), so the
whole eye region, not only the iris, carries the gaze.

Sampling is vectorised: :meth:`EyeSceneParams.sample` draws ``n`` scenes from a
``numpy.random.Generator`` as a struct of arrays, and :func:`project` turns them into the image-
space geometry the rasteriser (:mod:`simgan.simulators.eye_render`) and the labels use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from ..gaze_convention import gaze_from_pitch_yaw, pitch_yaw_from_gaze
from ..errors import SimganError

EYEBALL_RADIUS = 12.0  # mm
CORNEA_RADIUS = 7.8  # mm, radius of curvature of the cornea
CORNEA_OFFSET = 5.6  # mm, from the eyeball centre to the centre of the corneal sphere
LID_RADIUS = 12.6  # mm, lids slide over the eyeball at about this distance from its centre
LID_CURVATURE = 0.06  # 1/mm, paraboloid standing in for the eyeball under the lids (see _lid_z)
CREASE_RADIUS = 13.6  # mm, the lid crease lies on skin a little in front of the lid margins
REFERENCE_WIDTH = 55  # px: the eye's image scale is given for a 55-px-wide crop and scales with it
LID_SAMPLES = 17  # points per projected lid polyline (the rasteriser interpolates between them)
LABEL_LID_POINTS = 9  # eyelid landmarks per lid in the labels, from the inner to the outer corner
SKIN_GRID = (4, 6)  # rows, columns of the coarse random field that makes skin tone uneven


@dataclass(frozen=True)
class EyeSceneRanges:
    """The distribution scenes are drawn from: uniform ranges, angles in degrees.

    The defaults follow UnityEyes' defaults (eye rotation within about ±30° of the head's
    forward direction, camera within about ±20° of the face) with the head kept nearly upright,
    as in MPIIGaze's normalised eye crops.
    """

    gaze_pitch: tuple[float, float] = (-30.0, 30.0)  # eye in head; positive looks up
    gaze_yaw: tuple[float, float] = (-35.0, 35.0)  # eye in head; positive looks to image left
    head_pitch: tuple[float, float] = (-15.0, 15.0)
    head_yaw: tuple[float, float] = (-20.0, 20.0)
    head_roll: tuple[float, float] = (-8.0, 8.0)  # in-plane tilt left after crop normalisation
    eye_width: tuple[float, float] = (0.66, 0.84)  # frontal canthus-to-canthus width / image width
    centre_jitter: float = 0.04  # max offset of the eye centre from the image centre / width

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            lo, hi = v if isinstance(v, tuple) else (0.0, v)
            if not lo <= hi:
                raise SimganError(f"EyeSceneRanges.{f.name}={v!r}: the low end exceeds the high end")
        # beyond these the eye model breaks down: the iris leaves the lid opening, and with more
        # head rotation the projected lids start to fold over (see _lid_z; none do with the
        # defaults, 0.5% of lid creases do at the limits)
        for name, limit in (("gaze_pitch", 50), ("gaze_yaw", 50), ("head_pitch", 25), ("head_yaw", 25),
                            ("head_roll", 15)):
            if max(map(abs, getattr(self, name))) > limit:
                raise SimganError(f"EyeSceneRanges.{name} must stay within ±{limit} degrees")


@dataclass
class EyeSceneParams:
    """``n`` sampled scenes as a struct of arrays (each field has ``n`` rows).

    Lengths are millimetres, angles radians, tones are gray levels in [0, 1] before lighting.
    """

    side: np.ndarray  # +1: subject's right eye (inner corner towards image right), -1: left eye
    gaze_pitch: np.ndarray  # eye in head
    gaze_yaw: np.ndarray
    head_pitch: np.ndarray
    head_yaw: np.ndarray
    head_roll: np.ndarray
    eye_width: np.ndarray  # fraction of the image width
    centre: np.ndarray  # (n, 2) offset of the canthus midpoint from the image centre / width
    inner_x: np.ndarray  # |x| of the inner canthus
    outer_x: np.ndarray  # |x| of the outer canthus
    inner_y: np.ndarray
    canthal_tilt: np.ndarray  # how much higher the outer canthus sits than the inner one
    upper_cover: np.ndarray  # how far the upper lid reaches over the top of the iris
    lower_drop: np.ndarray  # lower lid's lowest point below the eyeball centre, primary gaze
    upper_peak: np.ndarray  # where the upper lid is highest, 0 = inner .. 1 = outer canthus
    lower_peak: np.ndarray
    upper_power: np.ndarray  # lid shape exponents (larger: more almond-shaped)
    lower_power: np.ndarray
    crease_gap: np.ndarray  # lid crease height above the upper lid margin
    crease_depth: np.ndarray  # how dark the crease shadow is
    brow_gap: np.ndarray  # brow height above the upper lid peak
    brow_darkness: np.ndarray
    iris_radius: np.ndarray
    pupil_radius: np.ndarray
    skin_tone: np.ndarray
    sclera_tone: np.ndarray
    iris_tone: np.ndarray
    pupil_tone: np.ndarray
    limbus_darkness: np.ndarray
    collarette_radius: np.ndarray  # fraction of the iris radius
    collarette_contrast: np.ndarray
    iris_phases: np.ndarray  # (n, 3) phases of the iris fibres' angular harmonics
    iris_amps: np.ndarray  # (n, 3) their relative amplitudes
    lash_line: np.ndarray  # darkness of the lash line along the upper lid margin
    caruncle: np.ndarray  # darkness of the caruncle at the inner corner
    light_dir: np.ndarray  # (n, 3) unit vector towards the light, camera coordinates
    ambient: np.ndarray  # ambient share of the lighting
    skin_field: np.ndarray  # (n, *SKIN_GRID) coarse normal noise for uneven skin tone
    skin_field_amp: np.ndarray

    def __len__(self) -> int:
        return len(self.side)

    def take(self, index) -> "EyeSceneParams":
        """A subset (slice, index array or boolean mask) of the scenes."""
        return EyeSceneParams(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def sample(cls, rng: np.random.Generator, n: int, ranges: EyeSceneRanges = EyeSceneRanges()) -> "EyeSceneParams":
        """Draw ``n`` scenes. The draws happen in a fixed order, one array per field, so the
        result depends only on the generator's state and ``n``."""
        u = lambda lo, hi, size=n: rng.uniform(lo, hi, size)  # noqa: E731
        deg = lambda r: np.radians(u(*r))  # noqa: E731
        side = np.where(rng.random(n) < 0.5, 1.0, -1.0)
        gaze_pitch, gaze_yaw = deg(ranges.gaze_pitch), deg(ranges.gaze_yaw)
        head_pitch, head_yaw, head_roll = deg(ranges.head_pitch), deg(ranges.head_yaw), deg(ranges.head_roll)
        eye_width = u(*ranges.eye_width)
        centre = u(-ranges.centre_jitter, ranges.centre_jitter, (n, 2))
        inner_x, outer_x = u(11.5, 13.0), u(13.0, 15.0)
        inner_y, canthal_tilt = u(0.3, 1.8), u(-0.5, 2.5)
        upper_cover, lower_drop = u(1.2, 3.6), u(3.8, 5.8)
        upper_peak, lower_peak = u(0.38, 0.52), u(0.48, 0.62)
        upper_power, lower_power = u(1.0, 1.5), u(1.1, 1.8)
        crease_gap, crease_depth = u(2.0, 5.0), u(0.1, 0.35)
        brow_gap, brow_darkness = u(8.0, 13.0), u(0.0, 0.5)
        iris_radius, pupil_radius = u(5.5, 6.3), u(2.0, 3.4)
        skin_tone, sclera_tone = u(0.35, 0.85), u(0.7, 0.95)
        iris_tone, pupil_tone = u(0.10, 0.55), u(0.02, 0.07)
        limbus_darkness = u(0.2, 0.7)
        collarette_radius, collarette_contrast = u(0.45, 0.65), u(-0.1, 0.25)
        iris_phases = u(0.0, 2 * math.pi, (n, 3))
        iris_amps = u(0.0, 1.0, (n, 3)) * u(0.03, 0.18)[:, None]
        lash_line, caruncle = u(0.45, 0.9), u(0.1, 0.45)
        azimuth, off_axis = u(0.0, 2 * math.pi), np.radians(u(0.0, 60.0))
        light_dir = np.stack([np.sin(off_axis) * np.cos(azimuth), np.sin(off_axis) * np.sin(azimuth),
                              -np.cos(off_axis)], axis=1)
        ambient = u(0.3, 0.6)
        skin_field = rng.standard_normal((n, *SKIN_GRID))
        skin_field_amp = u(0.02, 0.08)
        return cls(side=side, gaze_pitch=gaze_pitch, gaze_yaw=gaze_yaw, head_pitch=head_pitch,
                   head_yaw=head_yaw, head_roll=head_roll, eye_width=eye_width, centre=centre,
                   inner_x=inner_x, outer_x=outer_x, inner_y=inner_y, canthal_tilt=canthal_tilt,
                   upper_cover=upper_cover, lower_drop=lower_drop, upper_peak=upper_peak,
                   lower_peak=lower_peak, upper_power=upper_power, lower_power=lower_power,
                   crease_gap=crease_gap, crease_depth=crease_depth, brow_gap=brow_gap,
                   brow_darkness=brow_darkness, iris_radius=iris_radius,
                   pupil_radius=pupil_radius, skin_tone=skin_tone, sclera_tone=sclera_tone,
                   iris_tone=iris_tone, pupil_tone=pupil_tone, limbus_darkness=limbus_darkness,
                   collarette_radius=collarette_radius, collarette_contrast=collarette_contrast,
                   iris_phases=iris_phases, iris_amps=iris_amps, lash_line=lash_line,
                   caruncle=caruncle, light_dir=light_dir, ambient=ambient,
                   skin_field=skin_field, skin_field_amp=skin_field_amp)


# ----------------------------------------------------------------------------------------------
# rotations and gaze vectors (MPIIGaze's convention)


# ``direction(pitch, yaw)`` and its inverse ``pitch_yaw(v)``: the one gaze convention of
# :mod:`simgan.gaze_convention` (``(0, 0)`` is ``[0, 0, -1]``, into the camera; positive pitch looks up).
direction, pitch_yaw = gaze_from_pitch_yaw, pitch_yaw_from_gaze


def rotation(pitch: np.ndarray, yaw: np.ndarray, roll: np.ndarray | None = None) -> np.ndarray:
    """``(n, 3, 3)`` rotations ``Ry(yaw) Rx(-pitch) Rz(roll)``: they turn ``[0, 0, -1]`` into
    ``direction(pitch, yaw)``, and ``roll`` spins the frame about that axis first."""
    n = len(pitch)
    cx, sx = np.cos(-pitch), np.sin(-pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    rx = np.zeros((n, 3, 3)); rx[:, 0, 0] = 1; rx[:, 1, 1] = cx; rx[:, 1, 2] = -sx; rx[:, 2, 1] = sx; rx[:, 2, 2] = cx  # noqa: E702
    ry = np.zeros((n, 3, 3)); ry[:, 1, 1] = 1; ry[:, 0, 0] = cy; ry[:, 0, 2] = sy; ry[:, 2, 0] = -sy; ry[:, 2, 2] = cy  # noqa: E702
    r = ry @ rx
    if roll is not None:
        cz, sz = np.cos(roll), np.sin(roll)
        rz = np.zeros((n, 3, 3)); rz[:, 2, 2] = 1; rz[:, 0, 0] = cz; rz[:, 0, 1] = -sz; rz[:, 1, 0] = sz; rz[:, 1, 1] = cz  # noqa: E702
        r = r @ rz
    return r


# ----------------------------------------------------------------------------------------------
# projected geometry


@dataclass
class EyeGeometry:
    """Image-space geometry of ``n`` scenes, in pixels.

    Pixel coordinates: x to the right, y down, ``(0, 0)`` the *centre* of the top-left pixel (so
    the centre of a ``W x H`` image is ``((W-1)/2, (H-1)/2)``).
    """

    height: int
    width: int
    scale: np.ndarray  # (n,) px per mm
    gaze: np.ndarray  # (n, 3) unit gaze, camera coordinates
    head: np.ndarray  # (n, 3) unit forward direction of the head, camera coordinates
    eyeball: np.ndarray  # (n, 2) projected eyeball centre
    iris_centre: np.ndarray  # (n, 2) also the pupil centre
    iris_axes: np.ndarray  # (n, 2) semi-axes: along the major axis, along the minor axis
    minor_dir: np.ndarray  # (n, 2) unit vector along the minor axis (the gaze's image direction)
    pupil_ratio: np.ndarray  # (n,) pupil radius / iris radius
    cornea: np.ndarray  # (n, 2) projected centre of the corneal sphere
    upper: np.ndarray  # (n, LID_SAMPLES, 2) upper lid margin, inner -> outer canthus
    lower: np.ndarray  # (n, LID_SAMPLES, 2)
    crease: np.ndarray  # (n, LID_SAMPLES, 2)
    brow_y: np.ndarray  # (n,) y of the brow's lower edge at the eye's centre

    def take(self, index) -> "EyeGeometry":
        """A subset of the scenes (slice, index array or boolean mask)."""
        return EyeGeometry(self.height, self.width, **{
            f.name: getattr(self, f.name)[index] for f in fields(self) if f.name not in ("height", "width")})

    @property
    def iris_angle(self) -> np.ndarray:
        """Direction of the major axis, radians from +x towards +y."""
        return np.arctan2(self.minor_dir[:, 0], -self.minor_dir[:, 1])


def _lid_z(x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """Depth of a lid point: a paraboloid cap standing in for the eyeball's sphere.

    A sphere's depth is singular at its silhouette, where the canthi lie, and would fold the
    projected lids back on themselves under head yaw; the paraboloid's slope stays below ~2 over
    the lids and creases, so they project to graphs over x for every default head pose (and for
    all but ~0.5% of creases at the ranges' limits, see :class:`EyeSceneRanges`).
    """
    return -(radius - LID_CURVATURE * (x * x + y * y))


def _bump(t: np.ndarray, peak: np.ndarray, power: np.ndarray) -> np.ndarray:
    """``sin(pi t^k)^p`` on [0, 1]: zero at both canthi, 1 at ``t = peak``."""
    k = math.log(0.5) / np.log(peak)
    return np.sin(math.pi * t ** k[:, None]) ** power[:, None]


# Numeric kernel (longer than 60 lines on purpose): one chain of geometry from the eyeball to the camera.
def project(p: EyeSceneParams, height: int, width: int) -> EyeGeometry:
    """Pose the eye and the head, and project the scene into a ``height x width`` image.

    Long on purpose: one chain of geometry (eyeball, iris, lids, crease, brow, then the camera)
    whose intermediate frames are shared all the way down.
    """
    n = len(p)
    R = EYEBALL_RADIUS
    head_rot = rotation(p.head_pitch, p.head_yaw, p.head_roll)
    gaze_head = direction(p.gaze_pitch, p.gaze_yaw)
    gaze = np.einsum("nij,nj->ni", head_rot, gaze_head)
    head = head_rot[:, :, 2] * -1.0

    d_iris = np.sqrt(R * R - p.iris_radius ** 2)  # iris plane's distance from the eyeball centre
    # lids, in the head frame: t runs from the inner (t=0) to the outer (t=1) canthus
    t = np.linspace(0.0, 1.0, LID_SAMPLES)[None, :]
    x_in, x_out = p.side * p.inner_x, -p.side * p.outer_x
    x = x_in[:, None] + (x_out - x_in)[:, None] * t
    y_line = p.inner_y[:, None] - p.canthal_tilt[:, None] * t
    iris_head = d_iris[:, None] * gaze_head
    t_iris = np.clip((iris_head[:, 0] - x_in) / (x_out - x_in), 0.0, 1.0)
    upper_peak = np.clip(p.upper_peak + 0.45 * (t_iris - 0.5), 0.25, 0.75)
    lower_peak = np.clip(p.lower_peak + 0.25 * (t_iris - 0.5), 0.3, 0.75)
    line_at = lambda tp: p.inner_y - p.canthal_tilt * tp  # noqa: E731
    # the upper lid rides on the top of the iris; the lower lid drops a little when looking down
    # (it follows the iris top fully downwards, three quarters of the way upwards)
    iris_top = iris_head[:, 1] - p.iris_radius * np.abs(np.cos(p.gaze_pitch))
    iris_top0 = -p.iris_radius  # primary gaze
    iris_top = iris_top0 + np.where(iris_top < iris_top0, 0.75, 1.0) * (iris_top - iris_top0)
    h_up = np.clip(line_at(upper_peak) - (iris_top + p.upper_cover), 0.8, 8.0)
    h_low = np.clip(p.lower_drop + 0.35 * iris_head[:, 1] - line_at(lower_peak), 1.0, 8.0)
    y_up = y_line - h_up[:, None] * _bump(t, upper_peak, p.upper_power)
    y_low = y_line + h_low[:, None] * _bump(t, lower_peak, p.lower_power)
    # the crease runs a little past both canthi and converges towards them
    tc = np.linspace(-0.15, 1.15, LID_SAMPLES)[None, :]
    xc = x_in[:, None] + (x_out - x_in)[:, None] * tc
    lift = p.crease_gap[:, None] + h_up[:, None] * _bump(np.clip(tc, 0.0, 1.0), upper_peak, p.upper_power)
    y_crease = p.inner_y[:, None] - p.canthal_tilt[:, None] * tc - lift * np.sin(math.pi * (tc + 0.15) / 1.3)

    scale = p.eye_width * width / (p.inner_x + p.outer_x)  # px per mm

    def to_image(xh, yh, zh):
        pts = np.stack([xh, yh, zh], axis=-1)  # (n, m, 3)
        cam = np.einsum("nij,nmj->nmi", head_rot, pts)
        return cam[..., :2] * scale[:, None, None]

    upper = to_image(x, y_up, _lid_z(x, y_up, LID_RADIUS))
    lower = to_image(x, y_low, _lid_z(x, y_low, LID_RADIUS))
    crease = to_image(xc, y_crease, _lid_z(xc, y_crease, CREASE_RADIUS))
    # place the canthus midpoint at the image centre (plus jitter), as MPIIGaze's crops do
    mid = 0.5 * (upper[:, 0] + upper[:, -1])
    target = np.array([(width - 1) / 2.0, (height - 1) / 2.0]) + p.centre * width
    offset = target - mid
    upper += offset[:, None]
    lower += offset[:, None]
    crease += offset[:, None]
    eyeball = offset
    iris_centre = eyeball + scale[:, None] * d_iris[:, None] * gaze[:, :2]
    cornea = eyeball + scale[:, None] * CORNEA_OFFSET * gaze[:, :2]
    r_px = scale * p.iris_radius
    iris_axes = np.stack([r_px, r_px * np.abs(gaze[:, 2])], axis=1)
    gxy = np.hypot(gaze[:, 0], gaze[:, 1])
    minor_dir = np.where(gxy[:, None] > 1e-9, gaze[:, :2] / np.maximum(gxy, 1e-9)[:, None], [1.0, 0.0])
    peak_y = upper[np.arange(n), np.argmin(upper[:, :, 1], axis=1), 1]
    brow_y = peak_y - p.brow_gap * scale
    return EyeGeometry(height, width, scale, gaze, head, eyeball, iris_centre, iris_axes, minor_dir,
                       p.pupil_radius / p.iris_radius, cornea, upper, lower, crease, brow_y)


def labels(p: EyeSceneParams, g: EyeGeometry) -> list[dict]:
    """The JSON labels of each scene (see :func:`simgan.simulators.eyes.render_eyes`)."""
    pitch, yaw = pitch_yaw(g.gaze)
    head_pitch, head_yaw = pitch_yaw(g.head)
    idx = np.round(np.linspace(0, LID_SAMPLES - 1, LABEL_LID_POINTS)).astype(int)
    gaze = np.round(g.gaze, 6).tolist()
    py = np.round(np.stack([pitch, yaw], 1), 6).tolist()
    head = np.round(np.stack([head_pitch, head_yaw], 1), 6).tolist()
    pupil = np.round(g.iris_centre, 3).tolist()
    axes = np.round(g.iris_axes, 3).tolist()
    pupil_axes = np.round(g.iris_axes * g.pupil_ratio[:, None], 3).tolist()
    angle = np.round(g.iris_angle, 4).tolist()
    upper = np.round(g.upper[:, idx], 2).tolist()
    lower = np.round(g.lower[:, idx], 2).tolist()
    out = []
    for i in range(len(p)):
        out.append({
            "gaze": gaze[i], "pitch": py[i][0], "yaw": py[i][1], "head_pose": head[i],
            "pupil": pupil[i], "pupil_radii": pupil_axes[i],
            "iris": {"center": pupil[i], "radii": axes[i], "angle": angle[i]},
            "eyelids": {"upper": upper[i], "lower": lower[i]},
        })
    return out
