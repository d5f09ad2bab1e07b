"""Devices and precision: `auto` follows what oneDNN may use, and a bf16 refine runs on an AVX2-capped oneDNN."""

import torch


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

