"""The digits domains of ``simgan demo digits``: an *appearance* gap built from data that ships in
PyPI packages, the way the pixel-level domain-adaptation literature builds MNIST -> MNIST-M
(Ganin & Lempitsky, ICML 2015, §5).

* **Digits**: the 1,797 real handwritten digits of scikit-learn (``sklearn.datasets.load_digits``,
  8×8 pixels, 17 grey levels), upsampled bilinearly to :data:`WORKING_SIZE` (24×24, an integer
  factor of 3) and scaled to [0, 1].
* **Photographs**: the colour photographs scikit-image ships inside its wheel
  (:data:`PHOTOS`; no download).
* **Synthetic, labelled**: clean digits, white on black, as 3-channel images.
* **Real, unlabelled for SimGAN**: *other* digits blended into random photo patches,
  ``|patch - digit|`` per colour channel (MNIST-M's blend).
* **Test, labelled**: blended digits from a third, held-out set of digits that neither the
  synthetic nor the real training set contains.

The three sets partition the 1,797 digits (by a seeded permutation), so a test digit is never
seen in training; every blended image keeps the label of its digit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SimganError

WORKING_SIZE = 24  # 8x8 digits upsampled x3
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
          "retina")


def _need(module: str):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - both are dependencies of simgan
        raise SimganError(f"the digits demo needs {module.split('.')[0]} (pip install scikit-learn scikit-image)") from None


def load_digit_images(size: int = WORKING_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits as ``N×size×size`` floats in [0, 1] and their labels."""
    datasets = _need("sklearn.datasets")
    from PIL import Image
    d = datasets.load_digits()
    imgs = d.images.astype(np.float32) / 16.0
    out = np.empty((len(imgs), size, size), np.float32)
    for i, im in enumerate(imgs):
        out[i] = np.asarray(Image.fromarray(im, mode="F").resize((size, size), Image.BILINEAR))
    return np.clip(out, 0.0, 1.0), d.target.astype(np.int64)


def load_photos() -> list[np.ndarray]:
    """The colour photographs of :data:`PHOTOS` as ``H×W×3`` floats in [0, 1]."""
    data = _need("skimage.data")
    out = []
    for name in PHOTOS:
        im = np.asarray(getattr(data, name)())
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=2)
        out.append(im[..., :3].astype(np.float32) / 255.0)
    return out


def random_patches(photos: list[np.ndarray], n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random crops (side ``size`` to ``4·size``, resized to ``size``) of random photos."""
    from PIL import Image
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        p = photos[rng.integers(len(photos))]
        side = int(rng.integers(size, min(4 * size, *p.shape[:2]) + 1))
        y = int(rng.integers(0, p.shape[0] - side + 1))
        x = int(rng.integers(0, p.shape[1] - side + 1))
        crop = (p[y:y + side, x:x + side] * 255).round().astype(np.uint8)
        out[i] = np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR), np.float32) / 255.0
    return out


def blend(digits: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """MNIST-M's blend: ``|patch - digit|`` per colour channel (digits ``N×H×W``, patches ``N×H×W×3``)."""
    return np.abs(patches - digits[..., None])


def to_uint8(images: np.ndarray) -> np.ndarray:
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=3)
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


@dataclass
class DigitsDomains:
    """Images are ``N×H×W×3`` uint8; labels are digit classes 0-9. ``*_ids`` index load_digits."""

    synthetic: np.ndarray
    synthetic_labels: np.ndarray
    synthetic_ids: np.ndarray
    real: np.ndarray  # unlabelled for SimGAN; the labels are the upper-bound classifier's
    real_labels: np.ndarray
    real_ids: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray
    test_ids: np.ndarray


def make_digits_domains(seed: int = 0, *, size: int = WORKING_SIZE, n_test_digits: int = 400,
                        real_per_digit: int = 2, test_per_digit: int = 1,
                        limit: int | None = None) -> DigitsDomains:
    """Split the digits three ways (synthetic / real / test) by a permutation seeded with ``seed``
    and build the three sets. ``limit`` caps the number of digits used (for tests)."""
    if size < 8:
        raise SimganError("digits working size must be at least 8")
    digits, labels = load_digit_images(size)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(digits))
    if limit is not None:
        perm = perm[:limit]
    n_test = min(n_test_digits, len(perm) // 3)
    test_ids = np.sort(perm[:n_test])
    rest = perm[n_test:]
    real_ids = np.sort(rest[: len(rest) // 2])
    syn_ids = np.sort(rest[len(rest) // 2:])
    photos = load_photos()

    def blended(ids: np.ndarray, per: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rep = np.repeat(ids, per)
        return to_uint8(blend(digits[rep], random_patches(photos, len(rep), size, rng))), labels[rep], rep

    real, real_labels, real_rep = blended(real_ids, real_per_digit)
    test, test_labels, test_rep = blended(test_ids, test_per_digit)
    return DigitsDomains(to_uint8(digits[syn_ids]), labels[syn_ids], syn_ids, real, real_labels, real_rep,
                         test, test_labels, test_rep)
