"""The kernel distance between two sets of image features: the unbiased estimate of the squared
maximum mean discrepancy with the cubic polynomial kernel ``k(x, y) = (xᵀy / d + 1)³`` (KID,
Bińkowski et al., "Demystifying MMD GANs", ICLR 2018). The realism measures use it on the frozen
CNN's features (:mod:`.realism`) and on Inception-v3's (:mod:`.inception`)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import SimganError


def polynomial_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² between feature sets ``x`` (m×d) and ``y`` (n×d), kernel ``(xᵀy/d + 1)³``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m, n, d = len(x), len(y), x.shape[1]
    if m < 2 or n < 2:
        raise SimganError("the kernel distance needs at least 2 images in each set")
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def kernel_distance(real_features: np.ndarray, candidate_features: np.ndarray, *, n_blocks: int = 10,
                    seed: int = 0) -> dict:
    """KID-style kernel distance with a standard error from ``n_blocks`` disjoint blocks.

    Both feature sets are shuffled and cut into ``n_blocks`` blocks of equal size (the smaller
    set's size // n_blocks, at least 2); the estimate is the mean of the per-block unbiased MMD²,
    its standard error the blocks' standard deviation / √n_blocks.
    """
    rng = np.random.RandomState(seed)
    m = min(len(real_features), len(candidate_features))
    blocks = max(1, min(n_blocks, m // 2))
    size = m // blocks
    if size < 2:
        raise SimganError("the kernel distance needs at least 2 images in each set")
    pr = rng.permutation(len(real_features))
    pc = rng.permutation(len(candidate_features))
    est = np.array([polynomial_mmd2_unbiased(real_features[pr[b * size:(b + 1) * size]],
                                             candidate_features[pc[b * size:(b + 1) * size]])
                    for b in range(blocks)])
    se = float(est.std(ddof=1) / math.sqrt(blocks)) if blocks > 1 else float("nan")
    return {"kid": float(est.mean()), "kid_se": se, "n_blocks": blocks, "block_size": size,
            "feature_dim": int(real_features.shape[1])}
