"""The gaze convention of every eye label: gaze vector <-> (pitch, yaw), in one place.

The paper's eye experiments (§3.1) label each image with its 3-d gaze direction; MPIIGaze
(Zhang et al., "Appearance-based gaze estimation in the wild", CVPR 2015), the paper's real
data, stores the same direction as two angles. Camera coordinates: x right in the image, y down,
z away from the camera, so an eye looking into the camera has ``gaze = [0, 0, -1]`` and
``pitch = yaw = 0``:

- ``pitch = asin(-g_y)`` (looking up is positive),
- ``yaw = atan2(-g_x, -g_z)`` (looking towards the image's left is positive).

The readers (UnityEyes, MPIIGaze), the eye simulator and the gaze evaluation all use these
functions; head directions (``head_pitch``, ``head_yaw``) follow the same formulas. The module
sits at the package's top and needs only numpy, so the simulators (which import no torch) and
the dataset readers can import it as well as the evaluation.
"""

from __future__ import annotations

import numpy as np

from .errors import SimganError


def gaze_from_pitch_yaw(pitch, yaw) -> np.ndarray:
    """Unit gaze vectors ``(..., 3)`` from ``pitch`` and ``yaw`` in radians (arrays broadcast)."""
    pitch = np.asarray(pitch, dtype=np.float64)
    yaw = np.asarray(yaw, dtype=np.float64)
    cp = np.cos(pitch)
    return np.stack([-cp * np.sin(yaw), -np.sin(pitch), -cp * np.cos(yaw)], axis=-1)


def pitch_yaw_from_gaze(gaze) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`gaze_from_pitch_yaw` for vectors ``(..., 3)`` (they need not be unit length)."""
    g = np.asarray(gaze, dtype=np.float64)
    g = g / np.linalg.norm(g, axis=-1, keepdims=True)
    return np.arcsin(np.clip(-g[..., 1], -1.0, 1.0)), np.arctan2(-g[..., 0], -g[..., 2])


def gaze_angles(gaze) -> tuple[float, float]:
    """``(pitch, yaw)`` in radians of one camera-space direction; a one-line error for a zero vector."""
    g = np.asarray([float(v) for v in gaze], dtype=np.float64)
    if not np.linalg.norm(g) > 0:
        raise SimganError(f"gaze vector {g.tolist()} has no direction")
    pitch, yaw = pitch_yaw_from_gaze(g)
    return float(pitch), float(yaw)
