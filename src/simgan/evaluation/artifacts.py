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

Two more compare a set with the real set directly (:func:`look_measures`), for what a user sees
in a sample grid and the residual does not show:

* **frame**: per image, how far the mean colour of the ``band``-pixel border band lies from that
  of the band just inside it; a frame of another colour shows even when R changed the whole
  background (which the residual's border ratio would not flag). Reported as the candidate's
  mean over the real set's (``frame_ratio``, about 1 for a set without a frame).
* **looks**: each image's look is its mean colour and contrast (per channel); ``spread`` is the
  root of the summed variance of the looks over the images, and ``neighbour`` the median distance
  from an image's look to the nearest other image's. A refiner that paints a few fixed looks (mode
  collapse) leaves many images on top of each other: ``neighbour_ratio`` (the candidate's over the
  real set's, on equal numbers of images) falls towards 0, even where a couple of very different
  looks keep the spread up. About 1 when the candidate varies as the real images do.
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


FRAME_FLAG = 2.0  # frame_ratio above which a set has a frame the real images do not have
COLLAPSE_FLAG = 0.5  # neighbour_ratio below which a set's looks crowd together (mode collapse)


def _unit(images: np.ndarray, max_value: int) -> np.ndarray:
    return np.asarray(images, dtype=np.float64) / max_value


def frame_contrast(images: np.ndarray, *, max_value: int = 255, band: int = 2) -> float:
    """Mean over ``N×H×W×C`` images of ``|mean colour of the border band - mean colour of the band
    just inside it|`` (averaged over channels), in units of the pixel range."""
    x = _unit(images, max_value)
    h, w = x.shape[1:3]
    if min(h, w) < 4 * band + 1:
        return float("nan")

    def ring(a: np.ndarray, k: int) -> np.ndarray:  # mean colour of the band k..k+band from the edge
        outer = a[:, k:h - k, k:w - k].sum((1, 2))
        inner = a[:, k + band:h - k - band, k + band:w - k - band].sum((1, 2))
        n = (h - 2 * k) * (w - 2 * k) - (h - 2 * k - 2 * band) * (w - 2 * k - 2 * band)
        return (outer - inner) / n

    return float(np.abs(ring(x, 0) - ring(x, band)).mean())


def looks(images: np.ndarray, *, max_value: int = 255) -> np.ndarray:
    """``N × 2C``: each image's mean colour and standard deviation per channel (pixel-range units)."""
    x = _unit(images, max_value)
    return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)


def look_spread(images: np.ndarray, *, max_value: int = 255) -> float:
    """The root of the summed variance over images of their looks (:func:`looks`)."""
    return float(np.sqrt(looks(images, max_value=max_value).var(axis=0).sum()))


def look_neighbour(images: np.ndarray, *, max_value: int = 255, n: int | None = None, seed: int = 0) -> float:
    """The median distance from an image's look to the nearest other image's, over ``n`` images
    drawn with ``seed`` (all when ``n`` is None)."""
    v = looks(images, max_value=max_value)
    if n is not None and n < len(v):
        v = v[np.random.default_rng(seed).choice(len(v), n, replace=False)]
    d = np.sqrt(((v[:, None, :] - v[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return float(np.median(d.min(axis=1)))


def look_measures(candidate: np.ndarray, real: np.ndarray, *, max_value: int = 255, band: int = 2,
                  max_images: int = 1000) -> dict:
    """:func:`frame_contrast` and the looks' spread and nearest-neighbour distance of a candidate set
    against the real set's, with the flags they raise (``frame``: a frame the real images do not
    have; ``collapsed``: the candidate's looks crowd together twice as tightly as the real ones)."""
    floor = 0.5 / max_value  # half a grey level
    fc, fr = (frame_contrast(a, max_value=max_value, band=band) for a in (candidate, real))
    sc, sr = (look_spread(a, max_value=max_value) for a in (candidate, real))
    n = min(len(candidate), len(real), max_images)
    nc, nr = (look_neighbour(a, max_value=max_value, n=n) for a in (candidate, real))
    frame_ratio, neighbour_ratio = fc / max(fr, floor), nc / max(nr, floor)
    return {"frame_contrast": fc, "frame_contrast_real": fr, "frame_ratio": frame_ratio,
            "spread": sc, "spread_real": sr, "spread_ratio": sc / max(sr, floor),
            "neighbour": nc, "neighbour_real": nr, "neighbour_ratio": neighbour_ratio,
            "frame": bool(frame_ratio > FRAME_FLAG), "collapsed": bool(neighbour_ratio < COLLAPSE_FLAG),
            "band_px": band, "n": n}
