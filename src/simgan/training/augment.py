"""Differentiable augmentation of D's inputs (Zhao, Liu, Lin, Zhu, Han, "Differentiable
Augmentation for Data-Efficient GAN Training", NeurIPS 2020).

With few real images D memorises them and its gradients stop telling R anything useful. DiffAugment
applies the same family of random, differentiable transformations to *every* image D sees (real
and refined, in D's step and in R's step), so D cannot tell the sets apart by memorising, and R
still receives gradients through the transformation. The three policies follow the authors'
reference code (images in [-1, 1]):

* ``color``: brightness ``+ U(-0.5, 0.5)``, saturation ``(x - mean_c) · U(0, 2) + mean_c``,
  contrast ``(x - mean) · U(0.5, 1.5) + mean``, one draw per image;
* ``translation``: shift by up to 1/8 of the image side in each direction, zero fill;
* ``cutout``: a square of half the image side set to zero at a random place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    tx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = torch.clamp(gy[None] + ty + 1, 0, h + 1)
    gx = torch.clamp(gx[None] + tx + 1, 0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1))  # zeros: shifted-in pixels are 0 in [-1, 1] (mid grey)
    idx = (gy * (w + 2) + gx).flatten(1)  # N × HW
    flat = padded.flatten(2)  # N × C × (H+2)(W+2)
    out = torch.gather(flat, 2, idx[:, None, :].expand(-1, x.shape[1], -1))
    return out.view_as(x)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    inside = ((gy[None] - cy + ch // 2).clamp(min=0) < ch) & ((gy[None] - cy + ch // 2) >= 0) \
        & ((gx[None] - cx + cw // 2) >= 0) & ((gx[None] - cx + cw // 2) < cw)
    return x * (~inside)[:, None].to(x.dtype)


POLICIES = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """Apply the comma-separated ``policy`` (``color``, ``translation``, ``cutout``) to ``x``
    (N×C×H×W in [-1, 1]); differentiable with respect to ``x``."""
    for name in (p.strip() for p in policy.split(",")):
        if name:
            x = POLICIES[name](x)
    return x.contiguous()
