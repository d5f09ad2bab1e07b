"""Built-in simulators: labelled synthetic images, and a "target" domain standing in for real ones.

``eyes`` is the paper's gaze experiment (§3.1) in miniature: a procedural eye renderer in the
manner of UnityEyes, and a webcam look standing in for MPIIGaze. ``hands`` is the hand-pose experiment (§3.2): depth images
of an articulated capsule hand, and a structured-light (Kinect-like) sensor standing in for NYU.
"""

from .eye_scene import EyeGeometry, EyeSceneParams, EyeSceneRanges
from .eyes import DOMAINS, benchmark, pupil_masks, render_eyes, simulate_eyes
from .hands import render_hands, simulate_hands
from .webcam import TargetAppearance

__all__ = [
    "DOMAINS", "EyeGeometry", "EyeSceneParams", "EyeSceneRanges", "TargetAppearance", "benchmark",
    "pupil_masks", "render_eyes", "render_hands", "simulate_eyes", "simulate_hands",
]
