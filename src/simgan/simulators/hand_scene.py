"""The articulated hand of ``simgan simulate hands`` (§3.2): skeleton, poses, camera, joints.

The paper's hand experiment uses the NYU hand pose data set (Tompson et al., "Real-time
continuous pose recovery of human hands using convolutional networks", ACM ToG 2014), whose
frames are labelled by fitting a 3-D hand model; every frame has a synthetic render of that
model and a Kinect depth image. simgan's stand-in is a capsule hand:

* **Skeleton** (hand frame, millimetres; x towards the thumb, y along the fingers, z out of the
  back of the hand, wrist at the origin): a palm, four fingers of three phalanges and a thumb of
  metacarpal + two phalanges, with adult segment lengths (index 40/25/20 mm, middle 45/28/22,
  ring 42/27/21, little 33/20/18, thumb 45/32/27 from the CMC joint) and radii (8-9 mm fingers,
  a 16 mm thick palm), and a forearm capsule entering the frame.
* **20 degrees of freedom**: per finger MCP flexion and abduction, PIP and DIP flexion (16);
  thumb CMC flexion and abduction, MCP and IP flexion (4). Limits are the usual active ranges
  (e.g. Hume et al. 1990; Lee & Kunjur, "Anatomical constraints", 2004: MCP -20..90 deg,
  PIP 0..110, DIP 0..80, abduction -20..20): :data:`LIMITS_DEG`.
* **Plausible poses**: not independent uniform angles but a random blend of canonical poses
  (open, relaxed, fist, point, pinch, two fingers (V), thumb up, claw), Dirichlet weights that
  favour one or two of them, plus small per-joint noise, clipped to the limits. Wrist flexion and
  deviation bend the hand against the forearm.
* **Global pose**: palm towards the camera with the fingers up, then random roll (+-60 deg),
  yaw (+-60), pitch (+-35); the centroid of the 14 joints 380-560 mm from the camera and within +-5%
  of the frame's width of the optical axis (the hand-centred views of NYU's crops).
* **Camera**: pinhole, square pixels, ``f = 1.8 * size`` pixels, principal point at the image
  centre (``(size-1)/2``): a 31 deg field of view that the hand fills about two thirds of.
  ``views=3`` adds two side cameras, the scene rotated by +-55 deg about the vertical axis
  through the palm centre (NYU's capture rig: one frontal and two side Kinects).

**The 14 evaluation joints** (Tompson et al.; NYU's joint_data indices 0, 3, 6, 9, 12, 15, 18,
21, 24, 25, 27, 30, 31, 32): :data:`JOINT_NAMES`, tips and PIP joints of the four fingers, thumb
tip, IP and MCP, two wrist points and the palm centre. Joints lie inside the capsules (on the
bone axis), as NYU's do inside the model's mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Tompson et al.'s 14 evaluation joints, in NYU's order (their indices into the 36 joints).
JOINT_NAMES = ("little_tip", "little_pip", "ring_tip", "ring_pip", "middle_tip", "middle_pip",
               "index_tip", "index_pip", "thumb_tip", "thumb_ip", "thumb_mcp", "wrist_ulnar",
               "wrist_radial", "palm")
NYU_JOINT_INDICES = (0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32)

FINGERS = ("little", "ring", "middle", "index")
# MCP joint positions in the hand frame (mm) and phalanx lengths (proximal, middle, distal)
MCP = {"index": (26.0, 82.0, 0.0), "middle": (6.0, 86.0, 0.0), "ring": (-13.0, 81.0, 0.0),
       "little": (-30.0, 72.0, 0.0)}
LENGTHS = {"index": (40.0, 25.0, 20.0), "middle": (45.0, 28.0, 22.0), "ring": (42.0, 27.0, 21.0),
           "little": (33.0, 20.0, 18.0)}
RADII = {"index": (8.5, 7.8, 7.0), "middle": (8.8, 8.0, 7.2), "ring": (8.3, 7.6, 6.9),
         "little": (7.5, 6.9, 6.3)}
THUMB_CMC = (24.0, 18.0, -6.0)
THUMB_LENGTHS = (45.0, 32.0, 27.0)
THUMB_RADII = (12.0, 9.5, 8.5)
PALM_RADIUS = 16.0
FOREARM_RADIUS = (24.0, 30.0)  # at the wrist, 260 mm up the arm (a tapered capsule's two ends)
FOREARM_LENGTH = 260.0

# Parameter order: per finger (little, ring, middle, index): mcp_flex, mcp_abd, pip, dip;
# then thumb: cmc_flex, cmc_abd, mcp, ip; then wrist_flex, wrist_dev.
PARAM_NAMES = tuple(f"{f}_{j}" for f in FINGERS for j in ("mcp_flex", "mcp_abd", "pip", "dip")) + (
    "thumb_cmc_flex", "thumb_cmc_abd", "thumb_mcp", "thumb_ip", "wrist_flex", "wrist_dev")
N_DOF = 20  # articulation (the two wrist angles come on top)
LIMITS_DEG = np.array(
    [(-20, 90), (-20, 20), (0, 110), (0, 80)] * 4
    + [(-20, 60), (0, 70), (-10, 70), (-15, 85), (-40, 40), (-15, 25)], dtype=np.float64)

_O = [0, 0, 0, 0]


def _finger(mcp, abd, pip, dip):
    return [mcp, abd, pip, dip]


# Canonical poses (degrees) in PARAM_NAMES order; abduction sign: positive spreads towards +x.
CANONICAL = {
    "open": _finger(0, -12, 0, 0) + _finger(0, -5, 0, 0) + _finger(0, 0, 0, 0) + _finger(0, 8, 0, 0)
    + [0, 50, 0, 0, 0, 0],
    "relaxed": _finger(30, -6, 40, 25) + _finger(25, -3, 35, 20) + _finger(20, 0, 30, 15)
    + _finger(15, 4, 25, 10) + [10, 35, 15, 15, 10, 0],
    "fist": _finger(88, 0, 105, 70) + _finger(88, 0, 105, 70) + _finger(88, 0, 105, 70)
    + _finger(85, 0, 100, 65) + [40, 10, 50, 60, 0, 0],
    "point": _finger(88, 0, 105, 70) + _finger(88, 0, 105, 70) + _finger(85, 0, 100, 65)
    + _finger(0, 0, 0, 0) + [35, 15, 45, 50, 0, 0],
    "pinch": _finger(20, -8, 25, 15) + _finger(15, -4, 20, 10) + _finger(25, 0, 35, 20)
    + _finger(45, 2, 40, 30) + [40, 45, 30, 40, 0, 0],
    "two": _finger(88, 0, 105, 70) + _finger(88, 0, 105, 70) + _finger(0, -10, 0, 0)
    + _finger(0, 12, 0, 0) + [40, 15, 45, 50, 0, 0],
    "thumb_up": _finger(88, 0, 105, 70) + _finger(88, 0, 105, 70) + _finger(88, 0, 105, 70)
    + _finger(88, 0, 105, 70) + [-10, 60, 0, 0, 0, 0],
    "claw": _finger(10, -10, 80, 60) + _finger(10, -5, 80, 60) + _finger(10, 0, 80, 60)
    + _finger(10, 8, 80, 60) + [20, 45, 30, 50, 0, 0],
}
POSE_NAMES = tuple(CANONICAL)
_CANON = np.radians(np.array([CANONICAL[k] for k in POSE_NAMES], dtype=np.float64))


@dataclass(frozen=True)
class HandRanges:
    """Ranges of the scene distribution (degrees and millimetres)."""

    roll_deg: float = 60.0
    yaw_deg: float = 60.0
    pitch_deg: float = 35.0
    depth_mm: tuple = (380.0, 560.0)
    offset_frac: float = 0.05  # palm centre within +-this fraction of the width off the axis
    joint_noise_deg: float = 8.0
    dirichlet: float = 0.35  # concentration of the pose blend: small -> mostly one canonical pose
    scale: tuple = (0.9, 1.1)  # hand size


def focal_px(size: int) -> float:
    """The simulator's focal length in pixels for ``size x size`` images (a 31 deg field of view)."""
    return 1.8 * size


def intrinsics(size: int) -> dict:
    f = focal_px(size)
    c = (size - 1) / 2.0
    return {"fx": f, "fy": f, "cx": c, "cy": c, "width": size, "height": size}


def rot(axis, angle: np.ndarray) -> np.ndarray:
    """``(B, 3, 3)`` rotations by ``angle`` (B,) radians about fixed ``axis`` (3,) or per-item ``(B, 3)``."""
    angle = np.asarray(angle, dtype=np.float64)
    a = np.broadcast_to(np.asarray(axis, dtype=np.float64), angle.shape + (3,))
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    x, y, z = a[..., 0], a[..., 1], a[..., 2]
    c, s = np.cos(angle), np.sin(angle)
    C = 1 - c
    return np.stack([
        np.stack([c + x * x * C, x * y * C - z * s, x * z * C + y * s], -1),
        np.stack([y * x * C + z * s, c + y * y * C, y * z * C - x * s], -1),
        np.stack([z * x * C - y * s, z * y * C + x * s, c + z * z * C], -1)], -2)


def sample_params(rng: np.random.Generator, n: int, ranges: HandRanges = HandRanges()) -> dict:
    """Random poses: articulation (n, 22) radians, global rotation (n, 3, 3), translation (n, 3),
    hand scale (n,), and the blend weights over :data:`POSE_NAMES` (n, K)."""
    k = len(POSE_NAMES)
    w = rng.dirichlet(np.full(k, ranges.dirichlet), size=n)
    art = w @ _CANON + np.radians(ranges.joint_noise_deg) * rng.standard_normal((n, _CANON.shape[1]))
    art[:, -2:] = np.radians(rng.uniform([-30, -10], [30, 20], size=(n, 2)))
    lim = np.radians(LIMITS_DEG)
    art = np.clip(art, lim[:, 0], lim[:, 1])
    roll = np.radians(rng.uniform(-ranges.roll_deg, ranges.roll_deg, n))
    yaw = np.radians(rng.uniform(-ranges.yaw_deg, ranges.yaw_deg, n))
    pitch = np.radians(rng.uniform(-ranges.pitch_deg, ranges.pitch_deg, n))
    # base: hand y (fingers) -> camera -y (up in the image), hand z (back) -> camera +z (away),
    # so the palm faces the camera; then pitch, yaw, roll in camera axes
    base = np.array([[-1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]])
    R = rot([0, 0, 1], roll) @ rot([0, 1, 0], yaw) @ rot([1, 0, 0], pitch) @ base
    z = rng.uniform(*ranges.depth_mm, n)
    half = 0.5 / 1.8  # tan of half the field of view
    xy = rng.uniform(-1, 1, (n, 2)) * ranges.offset_frac * 2 * half * z[:, None]
    t = np.concatenate([xy, z[:, None]], 1)
    scale = rng.uniform(*ranges.scale, n)
    return {"articulation": art, "rotation": R, "center": t, "scale": scale, "blend": w}


PALM_CENTER = np.array([0.0, 42.0, 0.0])


# Numeric kernel (longer than 60 lines on purpose): the hand's kinematic chain, joint by joint, in one pass.
def skeleton(params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Capsules and joints of the hands in camera space (mm).

    Returns ``a, b`` (n, P, 3) capsule end points, ``r`` (n, P, 2) their radii at each end, and
    ``joints`` (n, 14, 3) in :data:`JOINT_NAMES` order.

    Long on purpose: the hand's kinematic chain written out bone by bone (palm, then each finger
    from its base), which reads as the anatomy it builds.
    """
    art = params["articulation"]
    n = art.shape[0]
    s = params["scale"][:, None]
    X, Y, Z = np.eye(3)
    caps_a, caps_b, caps_r = [], [], []
    joints = {}

    def add(p, q, r1, r2):
        caps_a.append(p)
        caps_b.append(q)
        caps_r.append(np.stack([r1 * s[:, 0], r2 * s[:, 0]], -1))

    # wrist flexion/deviation: the hand rotates relative to the forearm about the wrist
    Rw = rot(X, art[:, 20]) @ rot(Z, art[:, 21])
    for k, f in enumerate(FINGERS):
        mcp_flex, abd, pip, dip = (art[:, 4 * k + j] for j in range(4))
        p0 = np.broadcast_to(np.array(MCP[f]), (n, 3)) * s
        R = rot(Z, -abd) @ rot(X, -mcp_flex)  # flexion turns the finger towards the palm (-z)
        pts = [p0]
        for j, (length, bend) in enumerate(zip(LENGTHS[f], (None, pip, dip))):
            if bend is not None:
                R = R @ rot(X, -bend)
            pts.append(pts[-1] + np.einsum("nij,j->ni", R, Y) * length * s)
        rr = RADII[f]
        for j in range(3):
            add(pts[j], pts[j + 1], rr[j], rr[min(j + 1, 2)] if j < 2 else rr[2] * 0.9)
        # the palm's part under this finger: wrist area -> MCP
        base = np.broadcast_to(np.array([MCP[f][0] * 0.55, 14.0, 0.0]), (n, 3)) * s
        add(base, p0, PALM_RADIUS * 0.9, PALM_RADIUS * 0.75)
        joints[f"{f}_tip"], joints[f"{f}_pip"] = pts[3], pts[1]
    # thumb: metacarpal from the CMC joint, flexing across the palm about a tilted axis
    cmc_flex, cmc_abd, t_mcp, t_ip = (art[:, 16 + j] for j in range(4))
    p0 = np.broadcast_to(np.array(THUMB_CMC), (n, 3)) * s
    # rest direction 40 deg from the fingers towards +x; CMC flexion swings it across the palm
    # (about z), palmar abduction lifts it out of the palm plane towards the palm side (-z)
    R = rot(Z, np.radians(-40.0) + cmc_flex) @ rot(X, -cmc_abd)
    bend_axis = np.array([1.0, 0.0, -0.5])  # MCP/IP flexion curls the tip towards the palm and the little finger
    pts = [p0]
    for j, length in enumerate(THUMB_LENGTHS):
        if j == 1:
            R = R @ rot(bend_axis, -t_mcp)
        elif j == 2:
            R = R @ rot(bend_axis, -t_ip)
        pts.append(pts[-1] + np.einsum("nij,j->ni", R, Y) * length * s)
    for j in range(3):
        add(pts[j], pts[j + 1], THUMB_RADII[j], THUMB_RADII[min(j + 1, 2)])
    joints["thumb_tip"], joints["thumb_ip"], joints["thumb_mcp"] = pts[3], pts[2], pts[1]
    # palm body: across the knuckles and across the base
    add(np.broadcast_to(np.array(MCP["index"]) - [0, 12, 0], (n, 3)) * s,
        np.broadcast_to(np.array(MCP["little"]) - [0, 10, 0], (n, 3)) * s, PALM_RADIUS, PALM_RADIUS * 0.9)
    add(np.broadcast_to(np.array([20.0, 22.0, 0.0]), (n, 3)) * s,
        np.broadcast_to(np.array([-20.0, 22.0, 0.0]), (n, 3)) * s, PALM_RADIUS, PALM_RADIUS)
    joints["wrist_ulnar"] = np.broadcast_to(np.array([-18.0, 4.0, 0.0]), (n, 3)) * s
    joints["wrist_radial"] = np.broadcast_to(np.array([18.0, 4.0, 0.0]), (n, 3)) * s
    joints["palm"] = np.broadcast_to(PALM_CENTER, (n, 3)) * s

    a = np.stack(caps_a, 1)
    b = np.stack(caps_b, 1)
    r = np.stack(caps_r, 1)
    J = np.stack([joints[k] for k in JOINT_NAMES], 1)
    # hand frame -> forearm frame (wrist angles), then -> camera
    R = params["rotation"]
    t = params["center"][:, None, :]
    # the joints' centroid goes to ``center``'s place: the hand, not the arm, is centred
    pc = np.einsum("nij,npj->npi", Rw, J).mean(1, keepdims=True)

    def to_cam(p):
        p = np.einsum("nij,npj->npi", Rw, p)
        return np.einsum("nij,npj->npi", R, p - pc) + t

    a, b, J = to_cam(a), to_cam(b), to_cam(J)
    # forearm: from the wrist down the arm (forearm frame -y), not bent by the wrist angles
    w0 = to_cam(np.zeros((n, 1, 3)))
    arm = np.einsum("nij,j->ni", R, -Y)[:, None, :]
    wrist_pt = w0 + arm * 5.0
    a = np.concatenate([a, wrist_pt], 1)
    b = np.concatenate([b, wrist_pt + arm * FOREARM_LENGTH], 1)
    r = np.concatenate([r, np.stack([FOREARM_RADIUS[0] * s[:, 0], FOREARM_RADIUS[1] * s[:, 0]], -1)[:, None]], 1)
    return a, b, r, J


def view_transform(points: np.ndarray, center: np.ndarray, angle_deg: float) -> np.ndarray:
    """Points (n, P, 3) as seen by a camera rotated ``angle_deg`` about the vertical axis through
    ``center`` (n, 3): the side views of ``views=3``."""
    if angle_deg == 0:
        return points
    R = rot([0, 1, 0], np.full(points.shape[0], np.radians(angle_deg)))
    c = center[:, None, :]
    return np.einsum("nij,npj->npi", R, points - c) + c


VIEW_ANGLES = (0.0, 55.0, -55.0)


def project(points: np.ndarray, size: int) -> np.ndarray:
    """Camera-space points (..., 3) -> pixel coordinates (..., 2) (u right, v down, pixel centres
    at integers)."""
    f = focal_px(size)
    c = (size - 1) / 2.0
    z = np.maximum(points[..., 2], 1e-6)
    return np.stack([f * points[..., 0] / z + c, f * points[..., 1] / z + c], -1)
