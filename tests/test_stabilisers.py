"""Issue 10's options: loss reduction, LSGAN / hinge losses, R1, spectral norm, anti-aliased D,
DiffAugment, R's padding and noise, `refine --variants`, the generic D from the image shape,
the balance line and the plain verdict."""

import json
import math
from pathlib import Path

import pytest
import torch

from simgan.models import losses
from simgan.training.augment import diff_augment
from simgan.config import (DiscriminatorConfig, RefinerConfig, generic_discriminator_for_shape, resolve_config)
from simgan.models.discriminator import build_discriminator, output_size
from simgan.errors import SimganError
from simgan.models.refiner import Grain, Refiner, count_parameters
from simgan.training import balance_line, effective_lambda, train, verdict


def logits_real_score(r: torch.Tensor) -> torch.Tensor:
    """Logits (N,2,h,w) whose realness logit_real - logit_refined is r."""
    return torch.stack([r, torch.zeros_like(r)], dim=1)


def test_mean_reduction_by_hand():
    p = torch.tensor([[[0.8, 0.5]]])
    ref = torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))], dim=1)
    real = ref.clone()
    # per patch means instead of sums: half the sum for 2 patches
    assert losses.realism_loss(ref, reduction="mean").item() == pytest.approx(
        (-math.log(0.2) - math.log(0.5)) / 2, rel=1e-5)
    assert losses.discriminator_loss(ref, real, reduction="mean").item() == pytest.approx(
        ((-math.log(0.8) - math.log(0.5)) / 2 + (-math.log(0.2) - math.log(0.5)) / 2) / 2, rel=1e-5)
    syn = torch.zeros(1, 1, 2, 2)
    out = torch.tensor([[[[0.4, 0.0], [0.0, 0.0]]]])
    assert losses.self_regularization_loss(out, syn, losses.Identity(), reduction="mean").item() == pytest.approx(0.1)


def test_least_squares_and_hinge_by_hand():
    r_ref = torch.tensor([[[0.5, -1.0]]])  # realness of refined patches
    r_real = torch.tensor([[[2.0, 0.0]]])
    ref, real = logits_real_score(r_ref), logits_real_score(r_real)
    # LSGAN 0-1 coding: D: ½ r_ref² + ½ (r_real - 1)²; R: ½ (r_ref - 1)²  (sums over patches, mean over images)
    d_ls = ((0.5 * 0.25 + 0.5 * 1.0) + (0.5 * 1.0 + 0.5 * 1.0)) / 2
    assert losses.discriminator_loss(ref, real, adversarial="least-squares").item() == pytest.approx(d_ls)
    assert losses.realism_loss(ref, adversarial="least-squares").item() == pytest.approx(0.5 * 0.25 + 0.5 * 4.0)
    # hinge: D: relu(1 + r_ref) + relu(1 - r_real); R: -r_ref
    d_h = ((1.5 + 0.0) + (0.0 + 1.0)) / 2
    assert losses.discriminator_loss(ref, real, adversarial="hinge").item() == pytest.approx(d_h)
    assert losses.realism_loss(ref, adversarial="hinge").item() == pytest.approx(0.5)
    assert losses.realism_loss(ref, adversarial="hinge", reduction="mean").item() == pytest.approx(0.25)


def test_r1_penalty_by_hand():
    # D(y) = sum over one patch of 3 * y: gradient 3 everywhere, ||grad||² = 9 * pixels
    y = torch.zeros(2, 1, 2, 2, requires_grad=True)
    scores = (3 * y).sum(dim=(1, 2, 3))[:, None, None]
    assert losses.r1_penalty(scores, y).item() == pytest.approx(9 * 4)


def test_spectral_norm_and_antialias_keep_shapes():
    layers = generic_discriminator_for_shape(24, 24)
    for kw in ({}, {"spectral_norm": True}, {"antialias": True}, {"spectral_norm": True, "antialias": True}):
        cfg = DiscriminatorConfig(layers=layers, **kw)
        d = build_discriminator(cfg, 3, 24, 24)
        assert d(torch.randn(2, 3, 24, 24)).shape == (2, 2, *output_size(cfg, 24, 24)), kw
    sn = build_discriminator(DiscriminatorConfig(layers=layers, spectral_norm=True), 3, 24, 24)
    assert any("parametrizations" in n for n, _ in sn.named_parameters())


def test_discriminator_global_context_sees_the_whole_image():
    """D's GlobalContext starts as the identity (same logits as the plain local D), keeps the
    patch map's shape, and, once trained, lets a pixel outside a patch change that patch's logit."""
    layers = generic_discriminator_for_shape(24, 24)
    plain = build_discriminator(DiscriminatorConfig(layers=layers, norm="none"), 1, 24, 24)
    ctx = build_discriminator(DiscriminatorConfig(layers=layers, norm="none", global_context=True), 1, 24, 24)
    missing = ctx.load_state_dict(plain.state_dict(), strict=False).missing_keys  # the same trunk and head
    assert missing and all(k.startswith("context.") for k in missing)
    ch = layers[-1].channels
    assert count_parameters(ctx) - count_parameters(plain) == (2 * ch * ch + ch) + (ch * 2 * ch + 2 * ch)
    x = torch.rand(2, 1, 24, 24) * 2 - 1
    assert torch.equal(ctx(x), plain(x)) and ctx(x).shape == (2, 2, *output_size(ctx.cfg, 24, 24))
    for p in ctx.context.fc2.parameters():
        torch.nn.init.normal_(p, std=0.1)
    far = x.clone()
    far[:, :, 16:, 16:] = 1.0  # bottom-right corner: outside the top-left patch's receptive field
    assert torch.equal(plain(x)[:, :, 0, 0], plain(far)[:, :, 0, 0])
    assert not torch.allclose(ctx(x)[:, :, 0, 0], ctx(far)[:, :, 0, 0])
    assert torch.allclose(ctx(x)[:1], ctx(x[:1]), atol=1e-6)  # per image: batch-independent


def test_discriminator_histogram_head_by_hand():
    """The histogram head starts at zero (D's logits unchanged); its soft histogram is computed as
    documented (by hand on two pixels); it adds one per-image logit pair to every patch; every
    pixel gets a gradient; trained, it tells flat histograms from dark ones, which the 9x9
    patches of this D see only in part."""
    from simgan.models.discriminator import HistogramHead
    layers = generic_discriminator_for_shape(24, 24)
    plain = build_discriminator(DiscriminatorConfig(layers=layers, norm="none"), 1, 24, 24)
    hd = build_discriminator(DiscriminatorConfig(layers=layers, norm="none", histogram_bins=8), 1, 24, 24)
    missing = hd.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("histogram.") for k in missing)
    assert count_parameters(hd) - count_parameters(plain) == (8 * 64 + 64) + (64 * 2 + 2)
    x = torch.rand(2, 1, 24, 24) * 2 - 1
    assert torch.equal(hd(x), plain(x))
    # by hand: 3 bins at -1, 0, 1 (sigma 1); a pixel at -1 weighs exp(0), exp(-1/2), exp(-2)
    head = HistogramHead(1, 3)
    img = torch.tensor([-1.0, 0.0]).reshape(1, 1, 1, 2)
    e = [1.0, math.exp(-0.5), math.exp(-2.0)]
    a = [v / sum(e) for v in e]
    b = [math.exp(-0.5) / (1 + 2 * math.exp(-0.5)), 1 / (1 + 2 * math.exp(-0.5)), math.exp(-0.5) / (1 + 2 * math.exp(-0.5))]
    want = torch.tensor([[[(a[i] + b[i]) / 2 for i in range(3)]]])
    assert torch.allclose(head.histogram(img), want, atol=1e-6)
    # one logit pair per image, added to every patch
    for p in hd.histogram.fc2.parameters():
        torch.nn.init.normal_(p, std=0.5)
    diff = hd(x) - plain(x)
    assert torch.allclose(diff, diff[:, :, :1, :1].expand_as(diff), atol=1e-5)
    assert not torch.allclose(diff[0], diff[1])
    # every pixel gets a gradient
    xg = x.clone().requires_grad_(True)
    hd.histogram(xg).sum().backward()
    assert (xg.grad != 0).all()
    # trained alone, it separates flat histograms from dark (gamma 3) images
    torch.manual_seed(0)
    head = HistogramHead(1, 16)
    opt = torch.optim.Adam(head.parameters(), lr=0.01)
    flat, dark = torch.rand(64, 1, 12, 12) * 2 - 1, (torch.rand(64, 1, 12, 12) ** 3) * 2 - 1
    for _ in range(100):
        opt.zero_grad()
        loss = losses.discriminator_loss(head(dark)[:, :, None, None], head(flat)[:, :, None, None])
        loss.backward()
        opt.step()
    fresh_flat, fresh_dark = torch.rand(32, 1, 12, 12) * 2 - 1, (torch.rand(32, 1, 12, 12) ** 3) * 2 - 1
    acc = (losses.discriminator_accuracy(head(fresh_dark)[:, :, None, None], losses.REFINED)
           + losses.discriminator_accuracy(head(fresh_flat)[:, :, None, None], losses.REAL)) / 2
    assert acc.item() > 0.95


def test_generic_discriminator_from_shape():
    assert [l.stride for l in generic_discriminator_for_shape(24, 24)] == [2, 2, 1, 1]
    assert output_size(DiscriminatorConfig(layers=generic_discriminator_for_shape(24, 24)), 24, 24) == (3, 3)
    assert sum(l.stride == 2 for l in generic_discriminator_for_shape(224, 224)) == 5
    assert sum(l.stride == 2 for l in generic_discriminator_for_shape(8, 8)) == 1
    cfg = resolve_config("generic")
    assert cfg.discriminator.layers == [] and cfg.loss.reduction == "mean"
    assert resolve_config("eyes").loss.reduction == "sum"  # the eyes preset keeps the paper's sums


def test_diff_augment_shapes_and_gradient():
    x = (torch.rand(4, 3, 16, 12) * 2 - 1).requires_grad_(True)
    for policy in ("color", "translation", "cutout", "color,translation,cutout"):
        y = diff_augment(x, policy)
        assert y.shape == x.shape
        y.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        x.grad = None
    cut = diff_augment(torch.ones(8, 1, 16, 16), "cutout")
    assert ((cut == 0).flatten(1).sum(1) > 0).all()  # a square is zeroed in every image
    with pytest.raises(SimganError, match="diff_augment"):
        resolve_config("generic", overrides={"train": {"diff_augment": "colour"}})


def test_refiner_padding_and_noise():
    for pad in ("zeros", "reflect", "replicate"):
        r = Refiner(RefinerConfig(width=4, num_blocks=1, padding=pad), 3)
        assert r(torch.zeros(2, 3, 8, 8)).shape == (2, 3, 8, 8)
    r = Refiner(RefinerConfig(width=4, num_blocks=1, noise_channels=2), 1)
    torch.nn.init.normal_(r.head.weight)  # not the zero init, so the noise shows
    x = torch.zeros(1, 1, 8, 8)
    z = torch.randn(1, 2, 8, 8)
    assert torch.equal(r(x, z), r(x, z))
    assert not torch.equal(r(x, z), r(x, torch.randn(1, 2, 8, 8)))
    with pytest.raises(SimganError, match="padding"):
        resolve_config("generic", overrides={"refiner": {"padding": "circle"}})


def test_image_noise_is_one_code_per_image():
    r = Refiner(RefinerConfig(width=4, num_blocks=1, noise_channels=3, noise_kind="image"), 1)
    torch.nn.init.normal_(r.head.weight)
    z = r.sample_noise(2, 8, 8, generator=torch.Generator().manual_seed(0))
    assert z.shape == (2, 3, 1, 1)
    assert torch.equal(z, r.sample_noise(2, 8, 8, generator=torch.Generator().manual_seed(0)))
    assert r.sample_noise(5, 6, 7).shape == (5, 3, 1, 1)
    assert Refiner(RefinerConfig(noise_channels=2), 1).sample_noise(4, 6, 7).shape == (4, 2, 6, 7)
    x = torch.rand(2, 1, 8, 8)
    # the code is the same at every pixel: the same as passing the broadcast map explicitly
    assert torch.allclose(r(x, z), r(x, z.expand(-1, -1, 8, 8).contiguous()))
    assert r(x).shape == (2, 1, 8, 8)
    with pytest.raises(SimganError, match="noise_kind"):
        resolve_config("generic", overrides={"refiner": {"noise_kind": "row"}})


def test_diversity_term_by_hand():
    a = torch.zeros(2, 1, 2, 2)
    b = torch.tensor([0.3, 0.9]).view(2, 1, 1, 1).expand(2, 1, 2, 2)  # mean |a - b|: 0.3 and 0.9
    za = torch.zeros(2, 4, 1, 1)
    zb = torch.full((2, 4, 1, 1), 0.5)  # mean |za - zb| = 0.5
    # ratios 0.6 and 1.8; capped at 1: (0.6 + 1.0) / 2; capped at 2: (0.6 + 1.8) / 2
    assert losses.diversity_term(a, b, za, zb, cap=1.0).item() == pytest.approx(0.8)
    assert losses.diversity_term(a, b, za, zb, cap=2.0).item() == pytest.approx(1.2)
    with pytest.raises(SimganError, match="diversity needs refiner.noise_channels"):
        resolve_config("eyes", overrides={"loss": {"diversity": 1.0}})


def test_effective_lambda_and_balance_line():
    cfg = resolve_config("generic", overrides={"loss": {"lambda_reg": 1.0}})  # lambda 1 as a mean
    lam_mean, lam_sum = effective_lambda(cfg, patches=9, elements=1728)
    assert lam_mean == 1.0 and lam_sum == pytest.approx(9 / 1728)
    eyes = resolve_config("eyes")  # lambda 0.1 summed: 0.1 * 1925 / 36 per patch vs per pixel
    assert effective_lambda(eyes, 36, 1925)[0] == pytest.approx(0.1 * 1925 / 36)
    line = balance_line(cfg, 9, 1728)
    assert line.startswith("balance: lambda 1 with means over 9 patches and 1728 feature elements")


def test_verdict_on_a_run_that_changes_nothing():
    rows = [{"phase": "adversarial", "mean_abs_diff": 0.019, "d_acc_real": 0.97, "d_acc_refined": 0.99}] * 8
    cfg = resolve_config("generic", overrides={"train": {"kg": 2}, "loss": {"lambda_reg": 0.1}})
    v = verdict(rows, cfg)
    assert v["changed"] is False and v["fooled"] is False
    assert v["verdict"] == ("R changed images by 0.019 on average (in [-1, 1]) and never fooled D (accuracy 98%): "
                            "raise --kg (now 2) or lower --lambda-reg (now 0.1).")
    ok = [{"phase": "adversarial", "mean_abs_diff": 0.2, "d_acc_real": 0.6, "d_acc_refined": 0.4}] * 4
    assert verdict(ok, cfg)["verdict"].endswith("refinement is working; look at the sample grids for artifacts.")
    rare = rows[:7] + [{"phase": "adversarial", "mean_abs_diff": 0.3, "d_acc_real": 0.9, "d_acc_refined": 0.4}] \
        + [{"phase": "adversarial", "mean_abs_diff": 0.3, "d_acc_real": 0.9, "d_acc_refined": 0.9}] * 12
    v = verdict(rare, cfg)  # fooled once in 20 rounds: D still wins
    assert v["fooled"] is False and "fooled D in 1 of 20 logged rounds" in v["verdict"] and "D still wins" in v["verdict"]


def test_global_context_sees_the_whole_image():
    """GlobalContext starts as the identity; once trained, a pixel far outside R's 3x3 receptive
    field changes the output everywhere, and each image's output depends on that image alone."""
    torch.manual_seed(0)
    local = Refiner(RefinerConfig(width=4, num_blocks=1, kernel_size=3), 1)
    ctx = Refiner(RefinerConfig(width=4, num_blocks=1, kernel_size=3, global_context=True), 1)
    assert count_parameters(ctx) - count_parameters(local) == (8 * 4 + 4) + (4 * 8 + 8)
    x = torch.rand(2, 1, 12, 12) * 0.2 - 0.1
    assert torch.equal(ctx(x), x)  # zero head, zero MLP output: the identity
    torch.manual_seed(0)
    for r in (local, ctx):
        for p in r.parameters():
            torch.nn.init.normal_(p, std=0.1)  # small: no output reaches the clamp at +-1
    far = x.clone()
    far[:, :, 8:, 8:] += 0.5  # 8+ px from pixel (0, 0); R's local field is 7 px wide
    assert torch.equal(local(x)[:, :, 0, 0], local(far)[:, :, 0, 0])
    assert not torch.allclose(ctx(x)[:, :, 0, 0], ctx(far)[:, :, 0, 0])
    # per image: refining image 0 alone or next to image 1 gives the same output
    assert torch.allclose(ctx(x)[:1], ctx(x[:1]), atol=1e-6)
    assert Refiner(RefinerConfig(global_context=True), 3)(torch.zeros(1, 3, 9, 7)).shape == (1, 3, 9, 7)
    # a flat image makes every map constant (zero variance): the gradient stays finite
    ctx(torch.zeros(1, 1, 12, 12)).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in ctx.parameters())


def test_tone_curve_by_hand():
    """The tone curve starts as the identity; its knots follow the MLP's output as documented
    (start - 1, then softplus rises scaled so that 0 gives 2 / segments); it is monotone, per
    image, driven by each image's histogram, and can equalise."""
    from simgan.models.refiner import ToneCurve
    torch.manual_seed(0)
    r = Refiner(RefinerConfig(width=4, num_blocks=1, kernel_size=3, tone_curve=2), 1)
    plain = Refiner(RefinerConfig(width=4, num_blocks=1, kernel_size=3), 1)
    assert count_parameters(r) - count_parameters(plain) == (2 + 8) * 4 + 4 + 4 * 3 + 3
    x = torch.rand(3, 1, 6, 5) * 2 - 1
    assert torch.equal(r(x), x)  # zero head, zero MLP output: the identity
    # by hand: two segments, start 0.5 - 1, rises softplus(0) and softplus(1), scaled by 1 / ln 2
    with torch.no_grad():
        r.tone.fc2.bias.copy_(torch.tensor([0.5, 0.0, 1.0]))
    sp = lambda v: math.log1p(math.exp(v)) / math.log(2.0)  # noqa: E731
    v0, v1 = -0.5, -0.5 + sp(0.0)
    v2 = v1 + sp(1.0)
    y = torch.tensor([-1.0, -0.5, 0.0, 0.4, 1.0]).reshape(1, 1, 1, 5)
    want = [v0, v0 + 0.5 * (v1 - v0), v1, v1 + 0.4 * (v2 - v1), v2]
    assert torch.allclose(r(y).flatten(), torch.tensor(want).clamp(-1, 1), atol=1e-6)
    assert r(y).flatten()[2].item() == pytest.approx(0.5, abs=1e-6)  # -0.5 + softplus(0) / ln 2 = -0.5 + 1
    # the histogram: the share of pixels in each of the segments' bins
    tc = ToneCurve(1, 4, 2)
    img = torch.tensor([-1.0, -0.9, 0.1, 1.0]).reshape(1, 1, 2, 2)
    assert torch.equal(tc.histogram(img), torch.tensor([[[0.5, 0.0, 0.25, 0.25]]]))
    # random curves: monotone in the pixel value, per image (batch-independent), histogram-driven
    for p in r.tone.parameters():
        torch.nn.init.normal_(p, std=0.5)
    ramp = torch.linspace(-1, 1, 30).reshape(1, 1, 5, 6).repeat(2, 1, 1, 1)
    ramp[1] = ramp[1].clamp(max=-0.5)  # a dark image: another histogram
    out = r(ramp).flatten(1)
    assert (out[0, 1:] >= out[0, :-1]).all()
    assert torch.allclose(r(ramp[:1]), r(ramp)[:1], atol=1e-6)
    assert not torch.allclose(out[0, :5], out[1, :5])  # same first pixels, other histogram, other curve
    # it can represent histogram equalisation: the curve of a 16-segment R fitted to the
    # equalised version of dark images (gamma 2.5) makes their grey levels close to uniform
    torch.manual_seed(0)
    eq = Refiner(RefinerConfig(width=4, num_blocks=1, kernel_size=3, tone_curve=16), 1)
    opt = torch.optim.Adam(eq.tone.parameters(), lr=0.05)
    dark = (torch.rand(8, 1, 16, 16) ** 2.5) * 2 - 1
    target = (dark.flatten(1).argsort(1).argsort(1).float() / 255 * 2 - 1).reshape(dark.shape)
    before = (eq(dark) - target).abs().mean().item()
    for _ in range(200):
        opt.zero_grad()
        loss = (eq(dark) - target).abs().mean()
        loss.backward()
        opt.step()
    assert loss.item() < 0.25 * before


def test_grain_by_hand():
    """Grain starts at about softplus(-6) per pixel; its noise is s(x) * z with z ~ N(0, 1) from the
    given generator (reproducible, different per draw); its strength is bounded by Grain.MAX_STD;
    it comes before the tone curve; with_clean returns the output without it; it can learn the
    strength of a target's noise."""
    torch.manual_seed(0)
    cfg = RefinerConfig(width=4, num_blocks=1, kernel_size=3, grain=True)
    r = Refiner(cfg, 1)
    plain = Refiner(RefinerConfig(width=4, num_blocks=1, kernel_size=3), 1)
    assert count_parameters(r) - count_parameters(plain) == 4 + 1
    x = torch.rand(2, 1, 40, 50) * 1.6 - 0.8  # away from the clamp at +-1
    out, clean = r(x, generator=torch.Generator().manual_seed(3), with_clean=True)
    assert torch.equal(clean, x)  # zero head: the noise-free output is the input
    def bounded(b):  # s = MAX_STD * tanh(softplus(b) / MAX_STD)
        return 0.1 * math.tanh(math.log1p(math.exp(b)) / 0.1)

    assert Grain.MAX_STD == 0.1
    s0 = bounded(-6.0)
    assert s0 == pytest.approx(math.log1p(math.exp(-6.0)), rel=1e-3)  # about softplus far below the bound
    z = torch.randn((2, 1, 40, 50), generator=torch.Generator().manual_seed(3))
    assert torch.allclose(out, x + s0 * z, atol=1e-6)  # by hand
    assert torch.equal(out, r(x, generator=torch.Generator().manual_seed(3)))  # reproducible
    assert not torch.equal(out, r(x, generator=torch.Generator().manual_seed(4)))
    # a strength by hand: bias b gives std MAX_STD * tanh(softplus(b) / MAX_STD) at every pixel
    with torch.no_grad():
        r.grain.std_head.bias.fill_(-2.0)
    noise = r(x, generator=torch.Generator().manual_seed(5)) - x
    assert noise.std().item() == pytest.approx(bounded(-2.0), rel=0.05)
    assert abs(noise.mean().item()) < 0.01
    # bounded: a head driven far up (a run-away grain) stays at MAX_STD, the image still there
    with torch.no_grad():
        r.grain.std_head.bias.fill_(50.0)
    noise = r(x, generator=torch.Generator().manual_seed(5)) - x
    assert noise.std().item() == pytest.approx(0.1, rel=0.05)
    # before the tone curve: a curve that maps everything to one level hides the grain
    rt = Refiner(RefinerConfig(width=4, num_blocks=1, kernel_size=3, grain=True, tone_curve=2), 1)
    with torch.no_grad():
        rt.grain.std_head.bias.fill_(-1.0)
        rt.tone.fc2.bias.copy_(torch.tensor([0.7, -30.0, -30.0]))  # start -0.3, rises ~0: flat
    flat = rt(x)
    assert (flat - flat.mean()).abs().max() < 1e-4
    # learnable: the grain head fitted to a noise std of 0.05 (its root mean square)
    r2 = Refiner(cfg, 1)
    opt = torch.optim.Adam(r2.grain.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        out, clean = r2(x, with_clean=True)
        loss = (((out - clean) ** 2).mean().sqrt() - 0.05) ** 2
        loss.backward()
        opt.step()
    out, clean = r2(x, with_clean=True)
    assert (out - clean).std().item() == pytest.approx(0.05, rel=0.15)


def test_soft_equalize_matches_opencv_and_keeps_gradients():
    """soft_equalize on 8-bit images lands within a grey level of the exact (OpenCV) equalisation,
    flat, dark and few-level images included; it ignores a monotone tone change of its input, and
    its gradient reaches every pixel."""
    from simgan.models.refiner import soft_equalize
    from simgan.simulators.webcam import equalize_histograms

    g = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (35, 55), generator=g),                       # uniform noise
            (torch.randn(35, 55, generator=g) * 20 + 60).clamp(0, 255).round(),   # dark, narrow
            torch.randint(0, 4, (35, 55), generator=g) * 40 + 100,                 # four levels
            torch.full((35, 55), 77)]                                              # flat
    u8 = torch.stack(imgs).to(torch.uint8).numpy()
    exact = torch.tensor(equalize_histograms(u8), dtype=torch.float32)
    x = torch.tensor(u8, dtype=torch.float32)[:, None] / 127.5 - 1.0
    soft = ((soft_equalize(x)[:, 0] + 1.0) * 127.5).round()
    assert (soft[:3] - exact[:3]).abs().max().item() <= 1.0
    assert torch.isfinite(soft[3]).all()  # a flat image does not divide by zero
    # invariant to a monotone tone curve of the input (up to the bins' width: 4 grey levels)
    assert (soft_equalize(torch.tanh(2 * x[:1])) - soft_equalize(x[:1])).abs().max().item() < 0.03
    # differentiable: every pixel of an image with distinct values gets a gradient
    v = (torch.rand(1, 1, 20, 30, generator=g) * 2 - 1).requires_grad_()
    (soft_equalize(v) * torch.randn(1, 1, 20, 30, generator=g)).sum().backward()
    assert (v.grad != 0).float().mean().item() > 0.95


def test_refiner_equalize_comes_last_and_self_regularisation_sees_before_it():
    torch.manual_seed(0)
    from simgan.models.refiner import soft_equalize

    r = Refiner(RefinerConfig(width=4, num_blocks=1, kernel_size=3, equalize=True), 1)
    assert count_parameters(r) == count_parameters(Refiner(RefinerConfig(width=4, num_blocks=1, kernel_size=3), 1))
    x = torch.rand(2, 1, 12, 16) * 1.2 - 0.9
    out, clean = r(x, with_clean=True)
    assert torch.equal(clean, x)  # zero head: R is the identity before the equaliser
    assert torch.allclose(out, soft_equalize(x, unit_range=False))
    assert (out - soft_equalize(x)).abs().max().item() < 0.02  # the stretch to the bins changes no rank
    assert out.amin(dim=(1, 2, 3)).tolist() == [-1.0, -1.0] and torch.allclose(out.amax(dim=(1, 2, 3)), torch.ones(2))
    # R's output before the equaliser is not clamped: pushed far past -1 (a saturated image), the
    # equalised output still shows the image and self-regularisation still has a gradient
    with torch.no_grad():
        r.head.bias.fill_(-5.0)
    r.zero_grad()
    out, clean = r(x, with_clean=True)
    assert clean.min().item() < -5.0 and torch.allclose(out, soft_equalize(x, unit_range=False), atol=1e-4)
    (clean - x).abs().mean().backward()
    assert r.head.bias.grad.abs().item() > 0
    # with grain, self-regularisation still sees the output before the grain and the equaliser
    rg = Refiner(RefinerConfig(width=4, num_blocks=1, kernel_size=3, equalize=True, grain=True), 1)
    out, clean = rg(x, generator=torch.Generator().manual_seed(1), with_clean=True)
    assert torch.equal(clean, x) and not torch.equal(out, soft_equalize(x))


def test_training_with_every_option_writes_summary(tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    cfg = resolve_config("generic", config_file=tiny_config, overrides={
        "discriminator": {"spectral_norm": True, "antialias": True, "global_context": True, "histogram_bins": 8},
        "refiner": {"padding": "reflect", "noise_channels": 2, "noise_kind": "image", "global_context": True,
                    "tone_curve": 4, "grain": True, "equalize": True},
        "loss": {"adversarial": "hinge", "r1_gamma": 1.0, "diversity": 1.0},
        "train": {"diff_augment": "color,translation,cutout"}})
    res = train(cfg, syn, real, tmp_path / "run", progress=False, echo=lambda m: None)
    summary = json.loads((res.run / "summary.json").read_text())
    assert summary["step"] == res.step and summary["verdict"].startswith("R changed images by")
    log = (res.run / "train.log").read_text()
    assert "balance: lambda 0.01 with means over" in log and "verdict: R changed images" in log


def test_refine_variants(cli, tiny_sets, tiny_config, tmp_path):
    syn, real = tiny_sets
    code, _, err = cli("train", "--synthetic", syn, "--real", real, "--out", tmp_path / "run", "--preset", "generic",
                       "--config", tiny_config, "--quiet")
    assert code == 0, err
    code, _, err = cli("refine", "--run", tmp_path / "run", "--input", syn, "--out", tmp_path / "ref",
                       "--variants", "3", "--quiet")
    assert code == 0, err
    lines = [json.loads(l) for l in (tmp_path / "ref" / "labels.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 48 and lines[1]["file"].endswith("_v1.png") and lines[0]["id"] == lines[2]["id"]
    assert all((tmp_path / "ref" / l["file"]).exists() for l in lines)


def test_artifact_measures_see_a_grid_and_a_frame():
    import numpy as np
    from simgan.evaluation.artifacts import border_ratio, periodic_ratio
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.1, (16, 24, 32))
    assert 0.5 < periodic_ratio(noise, 4) < 1.5 and 0.8 < border_ratio(noise) < 1.2
    grid = noise.copy()
    grid[:, ::4, ::4] += 0.5  # a stride-4 grid
    assert periodic_ratio(grid, 4) > 3
    frame = noise.copy()
    frame[:, :2] += 0.5
    frame[:, :, -2:] += 0.5
    assert border_ratio(frame) > 3


def test_generic_defaults_take_noise_and_eyes_stay_the_paper():
    g = resolve_config("generic")
    assert (g.refiner.noise_channels, g.refiner.noise_kind, g.loss.diversity, g.loss.lambda_reg) == (8, "image", 1.0, 0.3)
    for name in ("eyes", "hands"):
        p = resolve_config(name)
        assert p.refiner.noise_channels == 0 and p.loss.diversity == 0.0 and p.loss.reduction == "sum"


def test_lr_decay_schedule_by_hand(tiny_sets, tiny_config, tmp_path):
    """train.lr_decay (CycleGAN's schedule): constant, then linearly towards 0 over the last
    fraction of the adversarial steps; the lr column of metrics.jsonl shows it, per step."""
    syn, real = tiny_sets
    cfg = resolve_config("generic", config_file=tiny_config,
                         overrides={"train": {"steps": 8, "lr_decay": 0.5, "log_every": 1}})
    res = train(cfg, syn, real, tmp_path / "run", progress=False, echo=lambda m: None)
    rows = [json.loads(line) for line in (res.run / "metrics.jsonl").read_text().splitlines()]
    adv = [r["lr"] for r in rows if r["phase"] == "adversarial"]
    lr = cfg.train.lr  # 8 adversarial steps; the last 4 (k = 4..7) at 1 - (k - 4)/4: 1, 3/4, 1/2, 1/4
    assert adv == pytest.approx([lr] * 4 + [lr, 0.75 * lr, 0.5 * lr, 0.25 * lr])
    assert all(r["lr"] == pytest.approx(lr) for r in rows if r["phase"] != "adversarial")
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(SimganError, match="lr_decay"):
            resolve_config("generic", overrides={"train": {"lr_decay": bad}})


def test_snapshot_steps_by_hand():
    """K snapshots evenly spaced over the last span of the adversarial steps, newest first; the
    final step is the run's refiner.safetensors, not a snapshot."""
    from simgan.config import TrainConfig
    from simgan.training.snapshots import snapshot_steps
    t = TrainConfig(disc_pretrain=50, steps=150, snapshots=4, snapshot_span=0.5)
    assert snapshot_steps(t) == [175, 150, 125]  # rounds 125, 100, 75 of 150, after 50 D steps
    assert snapshot_steps(TrainConfig(steps=150, snapshots=1)) == [] == snapshot_steps(TrainConfig(steps=150))
    assert snapshot_steps(TrainConfig(refiner_pretrain=3, disc_pretrain=2, steps=6, snapshots=3, snapshot_span=1.0)) == [8]  # round 0 is no snapshot
    for bad in ({"snapshots": -1}, {"snapshot_span": 0.0}, {"snapshot_span": 1.5}):
        with pytest.raises(SimganError, match="snapshot"):
            resolve_config("generic", overrides={"train": bad})


def test_refine_variants_cycle_through_snapshots(cli, tiny_sets, tiny_config, tmp_path):
    """Variant v is refined by snapshot v mod K: variant 0 by the final refiner (as --variants 1),
    variant 1 by the snapshot before it, so it differs from the final refiner's output for the
    same noise (checked against the same run with its snapshots removed)."""
    import shutil

    import numpy as np
    from PIL import Image
    syn, real = tiny_sets
    code, _, err = cli("train", "--synthetic", syn, "--real", real, "--out", tmp_path / "run", "--preset", "generic",
                       "--config", tiny_config, "--quiet")
    assert code == 0, err
    snaps = sorted(p.name for p in (tmp_path / "run" / "snapshots").iterdir())
    assert snaps == ["refiner_step_0000008.safetensors", "refiner_step_0000009.safetensors",
                     "refiner_step_0000010.safetensors"]  # generic: 4 snapshots over the last half of 6 rounds
    shutil.copytree(tmp_path / "run", tmp_path / "bare")
    shutil.rmtree(tmp_path / "bare" / "snapshots")
    for name in ("run", "bare"):
        code, _, err = cli("refine", "--run", tmp_path / name, "--input", syn, "--out", tmp_path / f"ref_{name}",
                           "--variants", "2", "--quiet")
        assert code == 0, err
    first = sorted((tmp_path / "ref_run").rglob("*_v0.png"))[0]
    rel = first.relative_to(tmp_path / "ref_run")
    load = lambda root, r: np.asarray(Image.open(root / r))
    assert np.array_equal(load(tmp_path / "ref_run", rel), load(tmp_path / "ref_bare", rel))
    rel1 = Path(str(rel).replace("_v0.png", "_v1.png"))
    assert not np.array_equal(load(tmp_path / "ref_run", rel1), load(tmp_path / "ref_bare", rel1))
