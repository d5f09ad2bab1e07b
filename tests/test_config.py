"""Settings: the presets as YAML recipes, the generic preset's D from the image shape, --config files, --set, and the
checks every setting declares."""

import re
from pathlib import Path

import pytest
import torch

from simgan.config import preset, resolve_config
from simgan.errors import SimganError
from simgan.models.discriminator import build_discriminator, patch_geometry
from simgan.models.refiner import Refiner, refiner_receptive_field


def measured_field(model, shape, out_index):
    """Side of the input region that influences one output element (gradient support)."""
    x = torch.rand(shape).requires_grad_(True)  # positive input, positive weights: every ReLU passes
    y = model(x)
    y[out_index].backward()
    nz = x.grad[0].abs().sum(0).nonzero()
    return int(nz[:, 0].max() - nz[:, 0].min() + 1), int(nz[:, 1].max() - nz[:, 1].min() + 1)


def test_hands_preset():
    cfg = preset("hands")
    assert cfg.image.height == 224 and cfg.image.bit_depth == 16
    assert refiner_receptive_field(cfg.refiner) == 127  # 7x7 filters, 10 blocks
    R = Refiner(cfg.refiner, 1)
    x = torch.zeros(1, 1, 40, 40)  # fully convolutional: any size keeps its shape
    with torch.no_grad():
        assert R(x).shape == x.shape
    D = build_discriminator(cfg.discriminator, 1, 224, 224)
    # the paper's 5x5 patches reach pixel 198 of 224; D pads its input by 7 px so that 6x6 reach all
    assert D(torch.zeros(2, 1, 224, 224)).shape == (2, 2, 6, 6)
    g = patch_geometry(cfg.discriminator, 224, 224)
    assert (g.receptive_field, g.stride, g.patches, g.padding) == (71, 32, 36, (3, 4, 3, 4))


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



def test_every_preset_is_a_yaml_recipe_that_loads_and_validates():
    from simgan.config import PRESET_NAMES, PRESETS, load_config_file
    from simgan.presets import lineage

    assert {"eyes", "hands", "generic", "eyes-demo", "hands-demo", "digits-demo"} <= set(PRESET_NAMES)
    folder = Path(__file__).resolve().parents[1] / "src" / "simgan" / "presets"
    for name in PRESET_NAMES:
        cfg = preset(name).validate()
        assert cfg.preset == name and PRESETS[name] == cfg
        # a preset file is also a --config file: the same settings either way (named after its parent)
        by_file = resolve_config(None, config_file=folder / f"{name}.yaml").to_dict()
        assert by_file.pop("preset") == (lineage(name)[1] if len(lineage(name)) > 1 else "eyes")
        assert by_file == {k: v for k, v in resolve_config(name).to_dict().items() if k != "preset"}
        assert isinstance(load_config_file(folder / f"{name}.yaml"), dict)
    assert lineage("digits-demo") == ["digits-demo", "generic", "eyes"]


def test_preset_file_and_preset_name_train_the_same_settings(tmp_path):
    """--config eyes-demo.yaml and --preset eyes-demo give the same settings (bar the name)."""
    folder = Path(__file__).resolve().parents[1] / "src" / "simgan" / "presets"
    by_file = resolve_config(None, config_file=folder / "eyes-demo.yaml").to_dict()
    by_name = resolve_config("eyes-demo").to_dict()
    assert by_file.pop("preset") == "eyes" and by_name.pop("preset") == "eyes-demo"
    assert by_file == by_name


def test_presets_command_lists_the_recipes_and_what_departs_from_the_paper(cli):
    code, out, _ = cli("presets")
    assert code == 0
    for name in ("eyes", "eyes-demo", "generic", "digits-demo", "hands", "hands-demo"):
        assert f"\n{name}" in "\n" + out
    code, out, _ = cli("presets", "generic", "--size", "24x24")
    assert code == 0
    assert "per-image noise code of 8 channels" in out and "diversity term 1" in out and "4 snapshots" in out
    assert "refiner.noise_channels: 8 (eyes: 0)" in out and "train.snapshots: 4 (eyes: 0)" in out
    code, out, _ = cli("presets", "eyes-demo")
    assert "refiner.equalize: True (eyes: False)  # R's output is equalised per image" in out
    code, out, _ = cli("presets", "eyes")
    assert "train.refiner_pretrain: 0  # paper: 1,000 steps" in out


def test_set_reads_values_as_yaml_and_comes_last():
    from simgan.config import parse_set
    from simgan.presets import merge_settings

    assert parse_set(["train.lr=2.0e-4", "refiner.padding=reflect", "train.betas=[0.5, 0.9]", "train.lr_disc=null"]) == {
        "train": {"lr": 2e-4, "betas": [0.5, 0.9], "lr_disc": None}, "refiner": {"padding": "reflect"}}
    # YAML 1.1 reads 2e-4 (no dot) as a string; a number setting takes it as the number it spells
    assert resolve_config("generic", overrides=parse_set(["train.lr=2e-4"])).train.lr == 2e-4
    with pytest.raises(SimganError, match="train.lr: expected a number, got 'fast'"):
        resolve_config("generic", overrides=parse_set(["train.lr=fast"]))
    flags = {"train": {"kg": 3, "lr": 1e-3}}
    cfg = resolve_config("generic", overrides=merge_settings(flags, parse_set(["train.lr=5e-5"])))
    assert (cfg.train.kg, cfg.train.lr) == (3, 5e-5)
    for bad in ("train.lr", "lr=1", "a.b.c=1", "train.=1"):
        with pytest.raises(SimganError, match="section.key=value"):
            parse_set([bad])


def test_declared_bounds_are_checked_with_the_setting_named():
    for section, key, value, needle in [("train", "kg", 0, "train.kg must be >= 1"),
                                        ("train", "ema_decay", 1.0, "train.ema_decay must be < 1"),
                                        ("train", "betas", [0.5, 1.0], "train.betas must be < 1"),
                                        ("refiner", "padding", "circle", "refiner.padding must be one of"),
                                        ("loss", "diversity_cap", 0.0, "loss.diversity_cap must be > 0"),
                                        ("train", "seed", 2 ** 32, "train.seed must be <= 4294967295"),
                                        ("image", "channels", 2, "image.channels must be one of 1, 3")]:
        with pytest.raises(SimganError, match=re.escape(needle)):
            resolve_config("generic", overrides={section: {key: value}})


def test_every_flag_comes_from_a_declared_setting():
    """simgan train's settings flags are the config fields declared with a flag, with their ranges."""
    from simgan.cli.train import SETTING_OPTIONS, train
    from simgan.config import SECTIONS, config_fields

    declared = {f"{s}__{f.name}" for s in SECTIONS for f in config_fields(s) if f.metadata.get("flag")}
    assert set(SETTING_OPTIONS) == declared and len(declared) >= 25
    names = {opt for p in train.params for opt in p.opts + p.secondary_opts}
    assert {"--kg", "--lambda-reg", "--no-history", "--global-disc", "--refiner-padding", "--set"} <= names
    assert "--tone-curve" not in names and "--grain" not in names


def test_settings_of_an_earlier_simgan_load_when_off_and_are_named_when_on():
    """Options removed from simgan (docs/results/negative.md): a run that had them off still loads,
    one that used them is refused by name."""
    from simgan.config import SimGANConfig

    old = SimGANConfig().to_dict()
    old["refiner"].update(tone_curve=0, grain=False, noise_kind="pixel", code_film=False)
    old["discriminator"].update(global_context=False, histogram_bins=0, colour_stats=False)
    old["train"]["lr_decay"] = 0.0
    assert SimGANConfig.from_dict(old) == SimGANConfig()
    for section, key, value in [("refiner", "tone_curve", 16), ("refiner", "grain", True),
                                ("discriminator", "histogram_bins", 8), ("train", "lr_decay", 0.5),
                                ("refiner", "code_film", True), ("discriminator", "colour_stats", True)]:
        bad = SimGANConfig().to_dict()
        bad[section][key] = value
        with pytest.raises(SimganError, match=f"{section}.{key} was removed"):
            SimGANConfig.from_dict(bad)
