"""Measuring refinement: gaze accuracy (§3.1, Tables 2–3, Figure 7), realism (the visual Turing
test of Table 1, automated) and label preservation (§3.1, "Preserving Ground Truth").

The API the CLI (``simgan evaluate``) and ``simgan demo`` / ``simgan ablate`` call::

    from simgan.evaluation import evaluate_gaze, evaluate_realism, evaluate_preservation
    m = evaluate_gaze({"synthetic": "synth/", "refined": "refined/"}, test="real_test/", out="eval/gaze")
    r = evaluate_realism("real/", {"synthetic": "synth/", "refined": "refined/"}, out="eval/realism")
    p = evaluate_preservation("synth/", "refined/", out="eval/preservation")

Lower-level pieces (arrays in, numbers out) are exported too: :func:`train_gaze_estimator`,
:class:`GazeEstimator`, :func:`angular_error_deg`, :func:`gaze_metrics`,
:func:`classifier_two_sample_test`, :func:`kernel_distance`, :func:`image_features`,
:func:`fit_pupil`.
"""

from ..gaze_convention import gaze_from_pitch_yaw, pitch_yaw_from_gaze
from .common import gaze_labels, gaze_of
from .gaze import (GazeEstimator, GazeNet, GazeTrainSettings, angular_error_deg, evaluate_gaze,
                   format_gaze_table, gaze_metrics, plot_gaze_cdf, train_gaze_estimator)
from .preservation import (PupilFit, evaluate_preservation, fit_pupil, fit_pupil_pair,
                           format_preservation_table, pair_indices)
from .kernel import kernel_distance, polynomial_mmd2_unbiased
from .realism import C2STSettings, classifier_two_sample_test, evaluate_realism, format_realism_table, image_features
from .task import TaskSettings, evaluate_task, format_task_table

__all__ = [
    "C2STSettings", "GazeEstimator", "GazeNet", "GazeTrainSettings", "PupilFit", "angular_error_deg",
    "classifier_two_sample_test", "evaluate_gaze", "evaluate_preservation", "evaluate_realism", "fit_pupil",
    "fit_pupil_pair",
    "format_gaze_table", "format_preservation_table", "format_realism_table", "gaze_from_pitch_yaw",
    "gaze_labels", "gaze_metrics", "gaze_of", "image_features", "kernel_distance", "pair_indices",
    "pitch_yaw_from_gaze", "plot_gaze_cdf", "polynomial_mmd2_unbiased", "train_gaze_estimator",
    "TaskSettings", "evaluate_task", "format_task_table",
]
