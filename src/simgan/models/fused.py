"""R's convolutions fused with the ReLU and the residual sum that follow them, for refining on a
CPU (inference only; training uses :mod:`simgan.models.refiner` as it is).

R (§3.1: a ``k×k`` stem, ResNet blocks of two ``k×k`` convolutions, a ``1×1`` head) is a chain of
convolutions, each followed by a ReLU, and in every block a shortcut sum. On a CPU whose
convolutions are fast (bf16 on AVX512-BF16 / AMX) those ReLUs and sums are what takes the time:
each is one more pass over an activation-sized tensor that no longer fits in the cache. oneDNN can
compute the ReLU and the sum inside the convolution (post-ops, the fusion PyTorch's own compiler
uses for CPU inference).

:func:`fuse_for_cpu` swaps the stem's convolution and each
:class:`~simgan.models.refiner.ResnetBlock`'s two convolutions for their fused form; a
batch-normalised block has its (eval-mode) batch norm folded into the convolution. Where oneDNN or
its fused operator is missing, R is left as it is.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F


def _op():
    """oneDNN's fused convolution operator, or None where this PyTorch build has none."""
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_convolution_pointwise", None)


class FusedConv(nn.Module):
    """``relu(conv(x) [+ residual])`` (or ``conv(x)`` with ``relu=False``) in one oneDNN call, with
    an eval-mode batch norm after the convolution folded into its weights and bias."""

    def __init__(self, conv: nn.Conv2d, norm: nn.Module | None = None, *, relu: bool = True):
        super().__init__()
        weight = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(
            conv.out_channels, dtype=weight.dtype, device=weight.device)
        if isinstance(norm, nn.BatchNorm2d):
            scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
            weight = weight * scale.to(weight.dtype)[:, None, None, None]
            bias = (bias - norm.running_mean) * scale + norm.bias.detach()
        self.weight = nn.Parameter(weight.clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.to(weight.dtype).clone(), requires_grad=False)
        self.relu = relu
        self.stride, self.dilation, self.groups = list(conv.stride), list(conv.dilation), conv.groups
        self.pad_mode = conv.padding_mode
        ph, pw = conv.padding
        # zero padding happens inside the convolution; other modes pad first (one more pass)
        self.padding = [ph, pw] if self.pad_mode == "zeros" else [0, 0]
        self.pad4 = (pw, pw, ph, ph)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if self.pad_mode != "zeros":
            # under CPU autocast reflect/replicate padding runs in fp32; oneDNN wants the weights' dtype
            x = F.pad(x, self.pad4, mode=self.pad_mode).to(self.weight.dtype)
        op = torch.ops.mkldnn._convolution_pointwise
        if residual is None:
            return op(x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
                      "relu" if self.relu else "none", [], "")
        return op.binary(x, residual, self.weight, self.bias, self.padding, self.stride, self.dilation,
                         self.groups, "add", None, "relu" if self.relu else None, [], "")


class FusedResnetBlock(nn.Module):
    """A ResNet block ``relu(conv2(relu(conv1(x))) + x)`` as two calls (the second convolution
    adds the shortcut and applies the ReLU inside the kernel), then the block's texture noise and
    context, if any."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.conv1 = FusedConv(block.conv1, block.norm1, relu=True)
        self.conv2 = FusedConv(block.conv2, block.norm2, relu=True)
        self.context, self.texture = block.context, block.texture

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        y = self.conv2(self.conv1(x), residual=x)
        if self.texture is not None:
            y = self.texture(y, noise)
        return y if self.context is None else self.context(y)


def fuse_for_cpu(refiner: nn.Module, dtype: torch.dtype | None = None, *, channels_last: bool = False) -> nn.Module:
    """``refiner`` (in eval mode, on the CPU) with its stem and ResNet blocks fused, in place;
    returned as it is where fusion is not available. ``dtype`` and ``channels_last``: how R will
    run (default: in its weights' dtype, NCHW). A tiny forward pass of both forms, the fused one as
    R will run, must agree (to bf16's rounding), else the original is kept. oneDNN's fused bf16
    convolution needs AVX512-BW or AVX-NE-CONVERT, so on an AVX2-only CPU a bf16 refine keeps the
    plain layers (which run there) instead of failing; and where bf16 has no AMX (AVX512-BF16
    alone) the fused sum takes bf16 only in channels-last, so the probe must run in the layout of
    the refine, or a channels-last bf16 refine would lose its fusion to an NCHW probe."""
    if _op() is None or next(refiner.parameters()).device.type != "cpu":
        return refiner
    stem_conv = FusedConv(refiner.stem.conv, relu=True)
    blocks = nn.Sequential(*[FusedResnetBlock(b) for b in refiner.blocks])
    own = refiner.head.weight.dtype
    dtype = dtype or own
    x = torch.linspace(-1, 1, 2 * stem_conv.weight.shape[1] * 9 * 11, dtype=own).reshape(
        2, stem_conv.weight.shape[1], 9, 11)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    try:
        with torch.no_grad():
            want = refiner.blocks(refiner.stem.act(refiner.stem.conv(x.clone()))).float()
            probe = nn.Sequential(stem_conv, blocks)
            probe = probe if dtype == own and not channels_last else copy.deepcopy(probe).to(dtype, memory_format=layout)
            got = probe(x.to(dtype).contiguous(memory_format=layout)).float()
    except RuntimeError:
        return refiner
    if got.shape != want.shape or not torch.allclose(got, want, rtol=0.05, atol=0.05):
        return refiner
    refiner.stem.conv, refiner.stem.act, refiner.blocks = stem_conv, nn.Identity(), blocks
    return refiner
