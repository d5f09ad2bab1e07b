"""Refinement artifacts as numbers: a stride-periodic grid and a frame along the border.

Both are measured on the *residual* ``R(x) - x`` (what refinement added), so the content of the
images does not count:

* **periodic ratio**: the mean power of the residual's 2-D spectrum at D's stride frequencies
  (``m / stride`` cycles per pixel along either axis, ``m = 1 .. stride - 1``, and their
  combinations), divided by the mean power over all non-constant frequencies. About 1 for a
  residual without a grid; a strided D whose decisions R learned to please leaves peaks there
  (checkerboard artifacts, Odena et al., Distill 2016).
* **border ratio**: mean ``|residual|`` in a band of ``band`` pixels along the border, divided by
  the mean ``|residual|`` inside. About 1 without a frame; zero-padded convolutions tend to leave one.
"""

from __future__ import annotations

import numpy as np


def residuals(synthetic: np.ndarray, refined: np.ndarray, max_value: int = 255) -> np.ndarray:
    """``N×H×W`` residuals in [-1, 1] units, averaged over channels."""
    r = (refined.astype(np.float64) - synthetic.astype(np.float64)) * (2.0 / max_value)
    return r.mean(axis=3)


def periodic_ratio(residual: np.ndarray, stride: int) -> float:
    """Power at the stride frequencies / mean non-DC power (see module doc); NaN for stride 1
    or a zero residual."""
    if stride < 2:
        return float("nan")
    n, h, w = residual.shape
    power = (np.abs(np.fft.fft2(residual - residual.mean(axis=(1, 2), keepdims=True))) ** 2).mean(axis=0)
    fy = {int(round(m * h / stride)) % h for m in range(stride)}
    fx = {int(round(m * w / stride)) % w for m in range(stride)}
    mask = np.zeros((h, w), bool)
    for a in fy:
        for b in fx:
            mask[a, b] = True
    mask[0, 0] = False
    nondc = np.ones((h, w), bool)
    nondc[0, 0] = False
    total = power[nondc].mean()
    if total <= 0 or not mask.any():
        return float("nan")
    return float(power[mask].mean() / total)


def border_ratio(residual: np.ndarray, band: int = 2) -> float:
    """Mean |residual| in the ``band``-pixel border / mean |residual| inside; NaN if the inside is flat."""
    a = np.abs(residual)
    inner = a[:, band:-band, band:-band]
    border_sum = a.sum() - inner.sum()
    border_n = a[0].size - inner[0].size
    inside = inner.mean()
    if inside <= 0:
        return float("nan")
    return float((border_sum / (border_n * len(a))) / inside)


def artifact_measures(synthetic: np.ndarray, refined: np.ndarray, stride: int, *, max_value: int = 255,
                      band: int = 2) -> dict:
    r = residuals(synthetic, refined, max_value)
    return {"periodic_ratio": periodic_ratio(r, stride), "stride": stride, "border_ratio": border_ratio(r, band),
            "border_band_px": band, "mean_abs_residual": float(np.abs(r).mean()), "n": len(r)}


def artifacts_for_run(cfg, synthetic: np.ndarray, refined: np.ndarray, *, max_value: int = 255) -> dict:
    """:func:`artifact_measures` of ``N×H×W×C`` synthetic/refined pairs at the stride of the D
    that ``cfg`` builds for images of their size."""
    from ..config import for_image_shape
    from ..models.discriminator import patch_geometry

    h, w = synthetic.shape[1:3]
    geom = patch_geometry(for_image_shape(cfg, h, w).discriminator, h, w)
    return artifact_measures(synthetic, refined, geom.stride, max_value=max_value)
