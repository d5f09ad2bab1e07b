"""Per-image operations on model tensors (N×C×H×W in [-1, 1]) that the refiner and the losses
share: histogram equalisation and standardisation. Both are differentiable."""

from __future__ import annotations

import torch


def soft_equalize(y: torch.Tensor, bins: int = 256, *, unit_range: bool = True) -> torch.Tensor:
    """Per-image, per-channel histogram equalisation of ``y``, differentiable.

    ``unit_range=False``: ``y`` may have any range; each image is first stretched from its own
    minimum to its maximum (which changes no rank), so no pixel is clamped.

    Each image's histogram is taken with linear interpolation between ``bins`` equal bins (so it
    moves smoothly with every pixel), its cumulative share is read back at each pixel the same way,
    and the result is stretched as OpenCV's ``equalizeHist`` stretches it (the darkest pixel to -1,
    the brightest to 1): ``(cdf(v) - cdf_min) / (cdf_max - cdf_min)``. On 8-bit images it lands
    within about a grey level of the exact equalisation, and its gradient reaches every pixel
    through both the histogram and the read-back."""
    n, c = y.shape[:2]
    flat = y.float().reshape(n * c, -1)
    if not 8 <= bins <= 65536:
        raise ValueError(f"soft_equalize: bins must be 8 .. 65536, got {bins}")
    if unit_range:
        u = (flat.clamp(-1.0, 1.0) + 1.0) * ((bins - 1) / 2)
    else:  # any range: stretched to the bins first (equalisation does not see an affine map)
        lo_v, hi_v = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
        u = (flat - lo_v) / (hi_v - lo_v).clamp_min(1e-6) * (bins - 1)
    i0 = u.detach().floor().clamp_(0, bins - 2)
    f = u - i0
    i0 = i0.long()
    hist = torch.zeros(n * c, bins, device=y.device).scatter_add(1, i0, 1.0 - f).scatter_add(1, i0 + 1, f)
    cdf = hist.cumsum(1) / flat.shape[1]
    e = cdf.gather(1, i0) * (1.0 - f) + cdf.gather(1, i0 + 1) * f
    lo, hi = e.min(dim=1, keepdim=True).values, e.max(dim=1, keepdim=True).values
    out = (e - lo) / (hi - lo).clamp_min(1e-6)
    return (out * 2.0 - 1.0).reshape(y.shape)


def standardize(x: torch.Tensor, min_std: float = 0.05) -> torch.Tensor:
    """Each image and channel with its mean removed and divided by its standard deviation
    (instance normalisation, Ulyanov et al. 2016); the deviation is floored at ``min_std`` so that
    a flat image's noise is not magnified."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True, correction=0).clamp_min(min_std)
    return (x - mean) / std



class _ClampInward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(y)
        return y.clamp(-1.0, 1.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        # a step of gradient descent moves y by -grad: let it through inside the range, and outside
        # only where it moves y back towards the range
        inward = (y.abs() <= 1.0) | ((y > 1.0) & (grad > 0)) | ((y < -1.0) & (grad < 0))
        return grad * inward


def clamp_inward(y: torch.Tensor) -> torch.Tensor:
    """``y`` clamped to the pixel range [-1, 1], with a gradient that can bring a saturated pixel
    back: a plain clamp passes no gradient past ±1, so a pixel pushed out of range never hears
    from either loss term again. Here the gradient passes inside the range as usual, and outside
    it wherever descending it moves the pixel back towards the range (never further out)."""
    return _ClampInward.apply(y)
