"""The discriminator D (§2.2): the paper's patch maps, the global D of the ablation, D from the image shape,
spectral norm and anti-aliasing."""


from dataclasses import replace

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
    # 3x3 patches of the unpadded image would leave the last row and column out: D pads 3 px
    assert output_size(DiscriminatorConfig(layers=generic_discriminator_for_shape(24, 24)), 24, 24) == (4, 4)
    assert sum(l.stride == 2 for l in generic_discriminator_for_shape(224, 224)) == 5
    assert sum(l.stride == 2 for l in generic_discriminator_for_shape(8, 8)) == 1
    cfg = resolve_config("generic")
    assert cfg.discriminator.layers == [] and cfg.loss.reduction == "mean"
    assert resolve_config("eyes").loss.reduction == "sum"  # the eyes preset keeps the paper's sums


def _reached(D, h, w):
    """Pixels whose value changes D's output (autograd; max-pooling read as average pooling, the
    same geometry, so that every pixel a pool window holds passes a gradient)."""
    for name, m in list(D.trunk.named_children()):
        if isinstance(m, torch.nn.MaxPool2d):
            D.trunk._modules[name] = torch.nn.AvgPool2d(m.kernel_size, m.stride, m.padding)
    with torch.no_grad():
        for p in D.parameters():
            p.uniform_(0.01, 0.02)  # positive: every ReLU passes
    D.eval()
    x = (torch.rand(1, 1, h, w) + 0.5).requires_grad_(True)
    D(x).sum().backward()
    return x.grad[0, 0] != 0


@pytest.mark.parametrize("name,sizes", [("eyes", [(35, 55)]), ("eyes-demo", [(35, 55)]), ("hands", [(224, 224)]),
                                        ("hands-demo", [(64, 64), (61, 70)]),
                                        ("generic", [(24, 24), (28, 28), (32, 32), (35, 55), (64, 48), (224, 224)])])
def test_every_pixel_reaches_d(name, sizes):
    """§2.2 judges every patch of the image: D's output depends on every pixel, at every size, for
    every preset and recipe, and simgan's count of patches per pixel says the same."""
    from simgan.config import for_image_shape
    from simgan.models.discriminator import patches_per_pixel

    for h, w in sizes:
        d = for_image_shape(preset(name), h, w).discriminator
        for kind in ("local", "global"):
            dk = replace(d, kind=kind)
            reached = _reached(build_discriminator(dk, 1, h, w), h, w)
            assert reached.all(), (name, h, w, kind, int((~reached).sum()))
        assert (patches_per_pixel(d, h, w) > 0).all()
    # the same geometry with anti-aliased downsampling
    d = replace(for_image_shape(preset("generic"), 24, 24).discriminator, antialias=True)
    assert _reached(build_discriminator(d, 1, 24, 24), 24, 24).all()


def test_without_its_padding_d_misses_the_last_rows_the_count_says_so(monkeypatch):
    """The check can fail: with the input padding switched off, the generic D at 24x24 and the
    hand demo's D at 64x64 never see their last rows and columns."""
    from simgan.config import for_image_shape
    from simgan.models import discriminator as dm

    monkeypatch.setattr(dm, "input_padding", lambda cfg, h, w: (0, 0, 0, 0))
    for name, n, missed in (("generic", 24, 1), ("hands-demo", 64, 7)):
        d = for_image_shape(preset(name), n, n).discriminator
        reached = _reached(build_discriminator(d, 1, n, n), n, n)
        assert not reached[-missed:].any() and not reached[:, -missed:].any() and reached[:-missed, :-missed].all()
        counts = dm.patches_per_pixel(d, n, n)
        assert (counts[-missed:] == 0).all() and (counts[:-missed, :-missed] > 0).all()
