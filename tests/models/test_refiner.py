"""The refiner R (§2.1): shapes and receptive field (measured by back-propagation), the noise code, per-image context,
output stages, and the fused CPU inference form."""

import copy

import pytest
import torch

from simgan.config import RefinerConfig, preset, resolve_config
from simgan.errors import SimganError
from simgan.models.refiner import (
    Refiner,
    count_parameters,
    refiner_flops,
    refiner_receptive_field,
)
from simgan.runtime import autocast


def measured_field(model, shape, out_index):
    """Side of the input region that influences one output element (gradient support)."""
    x = torch.rand(shape).requires_grad_(True)  # positive input, positive weights: every ReLU passes
    y = model(x)
    y[out_index].backward()
    nz = x.grad[0].abs().sum(0).nonzero()
    return int(nz[:, 0].max() - nz[:, 0].min() + 1), int(nz[:, 1].max() - nz[:, 1].min() + 1)


def test_eyes_refiner_shape_and_field():
    cfg = preset("eyes")
    R = Refiner(cfg.refiner, 1)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in R.parameters():  # small positive weights: no cancellation, no tanh saturation
            p.uniform_(0.001, 0.002)
    x = torch.rand(2, 1, 35, 55) * 2 - 1
    assert R(x).shape == x.shape
    assert refiner_receptive_field(cfg.refiner) == 19
    assert measured_field(R, (1, 1, 35, 55), (0, 0, 17, 27)) == (19, 19)
    assert abs(refiner_flops(cfg.refiner, 1, 35, 55) / 1e9 - 1.14) < 0.01  # 1.14 GFLOP per 55x35 image


@pytest.mark.parametrize("changes", [
    {},  # the eyes refiner
    {"norm": "batch", "padding": "reflect"},
    {"noise_channels": 2, "global_context": True, "kernel_size": 5, "num_blocks": 2},
])
def test_fused_refiner_computes_the_same(changes):
    """For CPU inference R's stem and blocks run as fused oneDNN convolutions
    (simgan.models.fused): the same outputs as the layers they replace, in fp32 to float
    rounding and in bf16 to bf16's, with batch norm folded into the convolution and non-zero
    padding modes padded first."""
    from dataclasses import replace

    from simgan.models import fused

    if fused._op() is None:
        pytest.skip("this PyTorch build has no oneDNN fused convolution")
    torch.manual_seed(0)
    R = Refiner(replace(preset("eyes").refiner, **changes), 1)
    with torch.no_grad():
        R.head.weight.normal_(0, 0.07)
        for m in R.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # running statistics that are not the identity
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 2.0), m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    R.eval()
    x = torch.rand(3, 1, 35, 55) * 2 - 1
    noise = torch.randn(3, R.noise_channels, 1, 1) if R.noise_channels else None
    with torch.no_grad():
        want = R(x, noise)
        Rf = copy.deepcopy(R).for_inference("fp32")
        assert isinstance(Rf.blocks[0], fused.FusedResnetBlock) and isinstance(Rf.stem.conv, fused.FusedConv)
        assert (Rf(x, noise) - want).abs().max() < 1e-5
        Rb = copy.deepcopy(R).for_inference("bf16").to(memory_format=torch.channels_last)
        got = Rb(x.contiguous(memory_format=torch.channels_last), noise)
        assert got.dtype == torch.float32 and (got - want).abs().max() < 0.02
        # as `simgan refine` calls it: under CPU autocast, which pads (reflect/replicate) in fp32
        with autocast(torch.device("cpu"), "bf16"):
            got = Rb(x.contiguous(memory_format=torch.channels_last), noise)
        assert got.dtype == torch.float32 and (got - want).abs().max() < 0.02


def test_fusion_falls_back_where_unavailable(monkeypatch):
    from simgan.models import fused
    monkeypatch.setattr(fused, "_op", lambda: None)
    R = Refiner(preset("eyes").refiner, 1).for_inference("fp32")
    assert isinstance(R.stem.conv, torch.nn.Conv2d) and not isinstance(R.blocks[0], fused.FusedResnetBlock)


def test_bf16_refiner_keeps_plain_layers_where_fused_bf16_fails(monkeypatch):
    """On an AVX2-only CPU oneDNN's fused convolution refuses bf16 ("bf16 path needs the cpu support
    avx_ne_convert or avx512bw ..."); the fusion probe runs in the dtype R will run in, so a bf16
    refiner keeps its plain layers there and still refines, while fp32 still fuses."""
    from simgan.models import fused
    real_forward = fused.FusedConv.forward

    def refuse_bf16(self, x, residual=None):
        if x.dtype == torch.bfloat16:
            raise RuntimeError("mkldnn_convolution: bf16 path needs the cpu support avx_ne_convert or avx512bw")
        return real_forward(self, x, residual)

    monkeypatch.setattr(fused.FusedConv, "forward", refuse_bf16)
    torch.manual_seed(0)
    R = Refiner(preset("eyes").refiner, 1)
    x = torch.rand(2, 1, 35, 55) * 2 - 1
    with torch.no_grad():
        want = R.eval()(x)
        bf16 = Refiner(preset("eyes").refiner, 1)
        bf16.load_state_dict(R.state_dict())
        bf16 = bf16.for_inference("bf16")
        assert not isinstance(bf16.blocks[0], fused.FusedResnetBlock)
        assert (bf16(x.bfloat16()).float() - want).abs().max() < 0.05
    if fused._op() is not None:
        assert isinstance(R.for_inference("fp32").blocks[0], fused.FusedResnetBlock)


def test_fusion_is_probed_in_the_layout_the_refine_runs_in(monkeypatch):
    """Where bf16 has no AMX (AVX512-BF16 alone), oneDNN's fused convolution + sum takes bf16 only
    in channels-last ("Unsupported datatype for add_relu" in NCHW). The probe runs in the layout
    that refine will use, so a channels-last refiner keeps its fusion there and an NCHW one falls
    back to the plain layers. Simulated here for any dtype by a fused convolution that refuses
    NCHW inputs."""
    from simgan.models import fused
    if fused._op() is None:
        pytest.skip("this PyTorch build has no oneDNN fused convolution")
    real_forward = fused.FusedConv.forward

    def refuse_nchw(self, x, residual=None):
        if residual is not None and not x.is_contiguous(memory_format=torch.channels_last):
            raise RuntimeError("Unsupported datatype for add_relu")
        return real_forward(self, x, residual)

    monkeypatch.setattr(fused.FusedConv, "forward", refuse_nchw)
    torch.manual_seed(0)
    R = Refiner(preset("eyes").refiner, 1)
    with torch.no_grad():
        R.head.weight.normal_(0, 0.07)
    x = torch.rand(2, 1, 35, 55) * 2 - 1
    with torch.no_grad():
        want = R.eval()(x)
        nchw = copy.deepcopy(R).for_inference("fp32", channels_last=False)
        assert not isinstance(nchw.blocks[0], fused.FusedResnetBlock)
        cl = copy.deepcopy(R).for_inference("fp32", channels_last=True).to(memory_format=torch.channels_last)
        assert isinstance(cl.blocks[0], fused.FusedResnetBlock)
        assert (cl(x.contiguous(memory_format=torch.channels_last)) - want).abs().max() < 1e-5


def test_a_channels_last_bf16_refiner_fuses_where_bf16_is_native():
    """The refine's own call on a CPU with native bf16: fused, and the pixels of fp32's."""
    from simgan.models import fused
    from simgan.runtime import cpu_has_native_bf16
    if fused._op() is None or not cpu_has_native_bf16():
        pytest.skip("needs oneDNN's fused convolution and a CPU with native bf16")
    torch.manual_seed(0)
    R = Refiner(preset("eyes").refiner, 1)
    with torch.no_grad():
        R.head.weight.normal_(0, 0.07)
    x = (torch.rand(4, 1, 35, 55) * 2 - 1).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = R.eval()(x)
        Rb = copy.deepcopy(R).for_inference("bf16", channels_last=True).to(memory_format=torch.channels_last)
        assert isinstance(Rb.blocks[0], fused.FusedResnetBlock)
        with autocast(torch.device("cpu"), "bf16"):
            assert (Rb(x) - want).abs().max() < 0.02


def test_refiner_padding_and_noise():
    for pad in ("zeros", "reflect", "replicate"):
        r = Refiner(RefinerConfig(width=4, num_blocks=1, padding=pad), 3)
        assert r(torch.zeros(2, 3, 8, 8)).shape == (2, 3, 8, 8)
    r = Refiner(RefinerConfig(width=4, num_blocks=1, noise_channels=2), 1)
    torch.nn.init.normal_(r.head.weight)  # not the zero init, so the noise shows
    x = torch.zeros(1, 1, 8, 8)
    z = torch.randn(1, 2, 1, 1)
    assert torch.equal(r(x, z), r(x, z))
    assert not torch.equal(r(x, z), r(x, torch.randn(1, 2, 1, 1)))
    with pytest.raises(SimganError, match="padding"):
        resolve_config("generic", overrides={"refiner": {"padding": "circle"}})


def test_image_noise_is_one_code_per_image():
    r = Refiner(RefinerConfig(width=4, num_blocks=1, noise_channels=3), 1)
    torch.nn.init.normal_(r.head.weight)
    z = r.sample_noise(2, generator=torch.Generator().manual_seed(0))
    assert z.shape == (2, 3, 1, 1)
    assert torch.equal(z, r.sample_noise(2, generator=torch.Generator().manual_seed(0)))
    assert r.sample_noise(5).shape == (5, 3, 1, 1)
    x = torch.rand(2, 1, 8, 8)
    # the code is the same at every pixel: the same as passing the broadcast map explicitly
    assert torch.allclose(r(x, z), r(x, z.expand(-1, -1, 8, 8).contiguous()))
    assert r(x).shape == (2, 1, 8, 8)
    # an earlier simgan's per-pixel noise is gone: a run that used it is refused, by name
    with pytest.raises(SimganError, match="noise_kind was removed"):
        resolve_config("generic", overrides={"refiner": {"noise_kind": "pixel"}})


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


def test_refiner_equalize_comes_last_and_self_regularisation_sees_before_it():
    torch.manual_seed(0)
    from simgan.models.image_ops import soft_equalize

    r = Refiner(RefinerConfig(width=4, num_blocks=1, kernel_size=3, equalize=True), 1)
    assert count_parameters(r) == count_parameters(Refiner(RefinerConfig(width=4, num_blocks=1, kernel_size=3), 1))
    x = torch.rand(2, 1, 12, 16) * 1.2 - 0.9
    out, before = r(x), r.before_stages(x)
    assert torch.equal(before, x)  # zero head: R is the identity before the equaliser
    assert torch.allclose(out, soft_equalize(x, unit_range=False))
    assert (out - soft_equalize(x)).abs().max().item() < 0.02  # the stretch to the bins changes no rank
    assert out.amin(dim=(1, 2, 3)).tolist() == [-1.0, -1.0] and torch.allclose(out.amax(dim=(1, 2, 3)), torch.ones(2))
    # R's output before the equaliser is not clamped: pushed far past -1 (a saturated image), the
    # equalised output still shows the image and self-regularisation still has a gradient
    with torch.no_grad():
        r.head.bias.fill_(-5.0)
    r.zero_grad()
    out, before = r(x), r.before_stages(x)
    assert before.min().item() < -5.0 and torch.allclose(out, soft_equalize(x, unit_range=False), atol=1e-4)
    (before - x).abs().mean().backward()
    assert r.head.bias.grad.abs().item() > 0
    # without an output stage, R's image is clamped to the pixel range and is what it returns
    plain = Refiner(RefinerConfig(width=4, num_blocks=1, kernel_size=3), 1)
    with torch.no_grad():
        plain.head.bias.fill_(-5.0)
    assert torch.equal(plain(x), plain.before_stages(x)) and plain(x).min().item() == -1.0


def test_forward_returns_one_tensor_and_the_training_view_adds_what_psi_compares():
    """R(x) is the refined image whatever the options; the training step gets the image before the
    output stages from the same forward pass (simgan.training.trainer.RefinerForLoss)."""
    from simgan.training.trainer import RefinerForLoss

    torch.manual_seed(0)
    for cfg in (RefinerConfig(width=4, num_blocks=1), RefinerConfig(width=4, num_blocks=1, equalize=True,
                                                                     noise_channels=2, global_context=True)):
        r = Refiner(cfg, 1)
        torch.nn.init.normal_(r.head.weight, std=0.1)
        x = torch.rand(3, 1, 10, 12) * 2 - 1
        z = r.sample_noise(3) if cfg.noise_channels else None
        assert isinstance(r(x, z), torch.Tensor)
        out, before = RefinerForLoss(r)(x, z)
        assert torch.equal(out, r(x, z)) and torch.equal(before, r.before_stages(x, z))


def test_weights_of_an_earlier_layout_load():
    """A refiner saved by an earlier simgan (stem as ``stem.0``, contexts as ``context.i``) loads."""
    torch.manual_seed(0)
    r = Refiner(RefinerConfig(width=4, num_blocks=2, global_context=True), 1)
    old = {}
    for k, v in r.state_dict().items():
        k = k.replace("stem.conv.", "stem.0.")
        for i in range(2):
            k = k.replace(f"blocks.{i}.context.", f"context.{i}.")
        old[k] = v
    assert "stem.0.weight" in old and "context.1.fc2.bias" in old
    again = Refiner(RefinerConfig(width=4, num_blocks=2, global_context=True), 1)
    again.load_state_dict(old)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), r.state_dict().values()))


def test_the_context_option_leaves_the_convolutions_initial_weights_alone():
    """For one seed R's convolutions start from the same weights with or without per-image context
    (the contexts are made after them), so the option changes what it adds and nothing else."""
    torch.manual_seed(0)
    plain = Refiner(RefinerConfig(width=8, num_blocks=3), 1)
    torch.manual_seed(0)
    ctx = Refiner(RefinerConfig(width=8, num_blocks=3, global_context=True), 1)
    ctx_state = ctx.state_dict()
    assert all(torch.equal(v, ctx_state[k]) for k, v in plain.state_dict().items())


def test_texture_noise_starts_as_the_identity_and_draws_texture_reproducibly():
    """One N(0, 1) map per image and block, added with a learned strength per map that starts at
    zero; from a given generator a refine is reproducible, and the fused CPU form agrees."""

    torch.manual_seed(0)
    r = Refiner(RefinerConfig(width=4, num_blocks=2, texture_noise=True), 1)
    plain = Refiner(RefinerConfig(width=4, num_blocks=2), 1)
    assert count_parameters(r) - count_parameters(plain) == 2 * 4  # a strength per map and block
    x = torch.rand(2, 1, 10, 12) * 1.6 - 0.8
    assert torch.equal(r(x), x)  # zero head, zero strengths: the identity
    with torch.no_grad():
        torch.nn.init.normal_(r.head.weight, std=0.3)
        for block in r.blocks:
            block.texture.strength.fill_(0.5)
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    flat = torch.zeros(1, 1, 10, 12)
    out = r(flat, generator=g(1))
    assert out[0, 0, 3:7, 3:7].std() > 1e-3  # texture inside a flat region
    assert torch.equal(out, r(flat, generator=g(1))) and not torch.equal(out, r(flat, generator=g(2)))
    r.eval()
    fused = copy.deepcopy(r).for_inference("fp32")
    assert (fused(flat, generator=g(1)) - r(flat, generator=g(1))).abs().max() < 1e-5
