"""Built-in simulators: labelled synthetic images, and a "target" domain standing in for real ones.

``eyes`` is the paper's gaze experiment (§3.1) in miniature: a procedural eye renderer in the
manner of UnityEyes, and a webcam look standing in for MPIIGaze.
"""

from .eye_scene import EyeGeometry, EyeSceneParams, EyeSceneRanges
from .eyes import DOMAINS, benchmark, pupil_masks, render_eyes, simulate_eyes
from .webcam import TargetAppearance

__all__ = [
    "DOMAINS", "EyeGeometry", "EyeSceneParams", "EyeSceneRanges", "TargetAppearance", "benchmark",
    "pupil_masks", "render_eyes", "simulate_eyes",
]
