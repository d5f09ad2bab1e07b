"""R and D of both presets: shapes, receptive fields (measured by back-propagation), the generic
preset and the global discriminator."""

import pytest
import torch

from simgan.config import preset, resolve_config
from simgan.models.discriminator import build_discriminator, patch_geometry
from simgan.models.refiner import Refiner, refiner_flops, refiner_receptive_field
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
    assert abs(refiner_flops(cfg.refiner, 1, 35, 55) / 1e9 - 1.14) < 0.01  # the 1.14 GFLOP


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


def test_hands_preset():
    cfg = preset("hands")
    assert cfg.image.height == 224 and cfg.image.bit_depth == 16
    assert refiner_receptive_field(cfg.refiner) == 127  # 7x7 filters, 10 blocks
    R = Refiner(cfg.refiner, 1)
    x = torch.zeros(1, 1, 40, 40)  # fully convolutional: any size keeps its shape
    with torch.no_grad():
        assert R(x).shape == x.shape
    D = build_discriminator(cfg.discriminator, 1, 224, 224)
    assert D(torch.zeros(2, 1, 224, 224)).shape == (2, 2, 5, 5)
    g = patch_geometry(cfg.discriminator, 224, 224)
    assert (g.receptive_field, g.stride, g.patches) == (71, 32, 25)


def test_generic_preset_from_parameters(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("refiner: {kernel_size: 5, width: 16, num_blocks: 2}\n"
                 "discriminator: {generic: {depth: 3, width: 32, kernel: 3}}\n")
    cfg = resolve_config("generic", config_file=p)
    assert refiner_receptive_field(cfg.refiner) == 1 + 4 * 5
    D = build_discriminator(cfg.discriminator, 3, 64, 64)
    assert D(torch.zeros(1, 3, 64, 64)).shape[1] == 2
    g = patch_geometry(cfg.discriminator, 64, 64)
    # three stride-2 3x3 convs then a stride-1 3x3: 1 + 2 + 4 + 8 + 2 * 8
    assert g.receptive_field == 31 and g.stride == 8


def test_global_discriminator_one_decision_per_image():
    cfg = preset("eyes")
    cfg.discriminator.kind = "global"
    D = build_discriminator(cfg.discriminator, 1, 35, 55)
    assert D(torch.zeros(4, 1, 35, 55)).shape == (4, 2, 1, 1)
    assert any(isinstance(m, torch.nn.Linear) for m in D.modules())


def test_discriminator_too_deep_for_image_is_an_error():
    from simgan.errors import SimganError
    with pytest.raises(SimganError, match="shrink"):
        build_discriminator(preset("hands").discriminator, 1, 35, 55)


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
    import copy
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
    noise = torch.randn(3, R.noise_channels, 35, 55) if R.noise_channels else None
    with torch.no_grad():
        want = R(x, noise)
        Rf = copy.deepcopy(R).for_inference("fp32")
        assert isinstance(Rf.blocks[0], fused.FusedResnetBlock) and isinstance(Rf.stem, fused.FusedStem)
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
    assert isinstance(R.stem, torch.nn.Sequential) and not isinstance(R.blocks[0], fused.FusedResnetBlock)


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


def test_auto_precision_follows_a_capped_onednn(monkeypatch):
    """``ONEDNN_MAX_CPU_ISA`` below AVX512-BF16 makes oneDNN compute bf16 as an AVX2 CPU does
    (emulated, slow): ``auto`` must pick fp32 then, even on a CPU whose flags have bf16."""
    from simgan import runtime
    monkeypatch.setattr(runtime, "_cpuinfo_has_bf16", lambda: True)
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(var, raising=False)
    cpu = torch.device("cpu")
    assert runtime.onednn_isa_cap() is None and runtime.resolve_precision("auto", cpu) == "bf16"
    for cap, native in [("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True),
                        ("AVX512_CORE_AMX", True), ("ALL", True)]:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert runtime.cpu_has_native_bf16() is native, cap
        assert runtime.resolve_precision("auto", cpu) == ("bf16" if native else "fp32"), cap
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2_VNNI")
    assert runtime.onednn_isa_cap() == "AVX2_VNNI" and not runtime.cpu_has_native_bf16()


def test_bf16_refine_runs_with_onednn_capped_to_avx2():
    """The same on real oneDNN: with the CPU capped to AVX2 (as an AVX2-only machine computes), a
    bf16 refiner for inference runs, and ``auto`` is fp32."""
    import os
    import subprocess
    import sys
    code = ("import torch; from simgan.config import preset; from simgan.models.refiner import Refiner; "
            "from simgan.runtime import resolve_precision; "
            "R = Refiner(preset('eyes').refiner, 1).for_inference('bf16'); "
            "y = R(torch.zeros(2, 1, 35, 55, dtype=torch.bfloat16)); assert y.shape == (2, 1, 35, 55); "
            "print(resolve_precision('auto', torch.device('cpu')))")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "fp32"
