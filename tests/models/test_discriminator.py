"""The discriminator D (§2.2): the paper's patch maps, the global D of the ablation, D from the image shape,
spectral norm and anti-aliasing."""


import pytest
import torch

from simgan.config import (
    DiscriminatorConfig,
    generic_discriminator_for_shape,
    preset,
    resolve_config,
)
from simgan.errors import SimganError
from simgan.models.discriminator import build_discriminator, output_size, patch_geometry


def measured_field(model, shape, out_index):
    """Side of the input region that influences one output element (gradient support)."""
    x = torch.rand(shape).requires_grad_(True)  # positive input, positive weights: every ReLU passes
    y = model(x)
    y[out_index].backward()
    nz = x.grad[0].abs().sum(0).nonzero()
    return int(nz[:, 0].max() - nz[:, 0].min() + 1), int(nz[:, 1].max() - nz[:, 1].min() + 1)


def test_eyes_discriminator_patches():
    cfg = preset("eyes")
    D = build_discriminator(cfg.discriminator, 1, 35, 55)
    assert D(torch.zeros(3, 1, 35, 55)).shape == (3, 2, 4, 9)
    g = patch_geometry(cfg.discriminator, 35, 55)
    assert (g.receptive_field, g.stride, g.map_width, g.map_height, g.patches) == (23, 4, 9, 4, 36)
    D.eval()
    with torch.no_grad():
        for m in D.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.uniform_(0.01, 0.02)
    # Max-pooling passes gradient to one input only; average pooling has the same geometry.
    for i, m in enumerate(D.trunk):
        if isinstance(m, torch.nn.MaxPool2d):
            D.trunk[i] = torch.nn.AvgPool2d(m.kernel_size, m.stride, m.padding)
    assert measured_field(D, (1, 1, 35, 55), (0, 1, 2, 4)) == (23, 23)


def test_global_discriminator_one_decision_per_image():
    cfg = preset("eyes")
    cfg.discriminator.kind = "global"
    D = build_discriminator(cfg.discriminator, 1, 35, 55)
    assert D(torch.zeros(4, 1, 35, 55)).shape == (4, 2, 1, 1)
    assert any(isinstance(m, torch.nn.Linear) for m in D.modules())


def test_discriminator_too_deep_for_image_is_an_error():
    with pytest.raises(SimganError, match="shrink"):
        build_discriminator(preset("hands").discriminator, 1, 35, 55)


def test_spectral_norm_and_antialias_keep_shapes():
    layers = generic_discriminator_for_shape(24, 24)
    for kw in ({}, {"spectral_norm": True}, {"antialias": True}, {"spectral_norm": True, "antialias": True}):
        cfg = DiscriminatorConfig(layers=layers, **kw)
        d = build_discriminator(cfg, 3, 24, 24)
        assert d(torch.randn(2, 3, 24, 24)).shape == (2, 2, *output_size(cfg, 24, 24)), kw
    sn = build_discriminator(DiscriminatorConfig(layers=layers, spectral_norm=True), 3, 24, 24)
    assert any("parametrizations" in n for n, _ in sn.named_parameters())


def test_generic_discriminator_from_shape():
    assert [l.stride for l in generic_discriminator_for_shape(24, 24)] == [2, 2, 1, 1]
    assert output_size(DiscriminatorConfig(layers=generic_discriminator_for_shape(24, 24)), 24, 24) == (3, 3)
    assert sum(l.stride == 2 for l in generic_discriminator_for_shape(224, 224)) == 5
    assert sum(l.stride == 2 for l in generic_discriminator_for_shape(8, 8)) == 1
    cfg = resolve_config("generic")
    assert cfg.discriminator.layers == [] and cfg.loss.reduction == "mean"
    assert resolve_config("eyes").loss.reduction == "sum"  # the eyes preset keeps the paper's sums
