"""The NYU hand pose reader (§3.2) on tiny files written in NYU's exact format."""

import json

import numpy as np
from PIL import Image
from scipy.io import savemat

from simgan.datasets import decode_image
from simgan.datasets.nyu import NYU_EVAL_JOINTS, NYUHands, decode_nyu_depth

H, W = 60, 80


def _write_nyu(root, frames=2, cams=3, synth=True, seed=0):
    """joint_data.mat (cameras x frames x 36 x 3) and depth_K_NNNNNNN.png (depth = G*256 + B)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    uvd = np.zeros((cams, frames, 36, 3))
    uvd[..., 0] = rng.uniform(25, 55, (cams, frames, 36))
    uvd[..., 1] = rng.uniform(18, 42, (cams, frames, 36))
    uvd[..., 2] = rng.uniform(600, 900, (cams, frames, 36))
    xyz = uvd * [0.5, -0.5, 1.0]
    savemat(root / "joint_data.mat", {"joint_uvd": uvd, "joint_xyz": xyz,
                                      "joint_names": np.array(["j"] * 36, dtype=object)})
    depths = {}
    for c in range(1, cams + 1):
        for f in range(1, frames + 1):
            depth = np.full((H, W), 700, np.int64)
            depth[:5] = 0  # no reading
            # a distinct depth in a 3x3 block around each evaluation joint
            for k, j in enumerate(NYU_EVAL_JOINTS):
                u, v = np.rint(uvd[c - 1, f - 1, j, :2]).astype(int)
                depth[v - 1:v + 2, u - 1:u + 2] = 1000 + 37 * k + 300 * c
            depth[0, 0] = 1234 + 256 * 3  # a value using both bytes
            rgb = np.zeros((H, W, 3), np.uint8)
            rgb[..., 1] = depth // 256
            rgb[..., 2] = depth % 256
            Image.fromarray(rgb, "RGB").save(root / f"depth_{c}_{f:07d}.png")
            if synth:
                Image.fromarray(rgb, "RGB").save(root / f"synthdepth_{c}_{f:07d}.png")
            depths[(c, f)] = depth
    return uvd, depths


def test_decode_green_blue(tmp_path):
    _, depths = _write_nyu(tmp_path / "nyu")
    d = decode_nyu_depth(tmp_path / "nyu" / "depth_2_0000001.png")
    assert d.dtype == np.uint16 and np.array_equal(d, depths[(2, 1)])
    assert d[0, 0] == 1234 + 768


def test_crop_keeps_joints_on_their_pixels(tmp_path):
    uvd, _ = _write_nyu(tmp_path / "nyu")
    ds = NYUHands(tmp_path / "nyu", size=48, margin=1.3)
    assert len(ds) == 6  # 2 frames x 3 cameras
    img = ds.read(0)
    assert img.shape == (48, 48, 1) and img.dtype == np.uint16
    for i in range(len(ds)):
        lab = ds.labels(i)
        img = ds.read(i)[:, :, 0]
        assert len(lab["uv"]) == 14 and len(lab["xyz"]) == 14
        c = lab["camera"]
        hits = 0
        for k, (u, v) in enumerate(lab["uv"]):
            val = img[int(round(v)), int(round(u))]
            hits += val == 1000 + 37 * k + 300 * c
        # markers can overlap (random joints); most keep their value at the transformed position
        assert hits >= 10
        j = list(NYU_EVAL_JOINTS)
        np.testing.assert_allclose(lab["depth"], uvd[c - 1, lab["frame"] - 1, j, 2], atol=0.01)


def test_convert_nyu_cli(cli, tmp_path):
    _write_nyu(tmp_path / "nyu", frames=2)
    code, out, err = cli("convert", tmp_path / "nyu", "--out", tmp_path / "real", "--camera", "1")
    assert code == 0, err
    files = sorted((tmp_path / "real" / "img").iterdir())
    assert len(files) == 2
    im = decode_image(files[0])
    assert im.shape == (224, 224, 1) and im.dtype == np.uint16
    lab = json.loads((tmp_path / "real" / "labels.jsonl").read_text().splitlines()[0])
    assert lab["kind"] == "real" and lab["camera"] == 1 and np.array(lab["uv"]).shape == (14, 2)
    code, _, err = cli("convert", tmp_path / "nyu", "--out", tmp_path / "syn", "--nyu-kind", "synthetic",
                       "--size", "64x64")
    assert code == 0, err
    assert len(list((tmp_path / "syn" / "img").iterdir())) == 6
    assert decode_image(next((tmp_path / "syn" / "img").iterdir())).shape == (64, 64, 1)


def test_convert_nyu_bad_input(cli, tmp_path):
    _write_nyu(tmp_path / "nyu", synth=False)
    code, _, err = cli("convert", tmp_path / "nyu", "--out", tmp_path / "o", "--nyu-kind", "synthetic")
    assert code == 2 and "synthdepth" in err and err.count("\n") == 1
    code, _, err = cli("convert", tmp_path / "nyu", "--out", tmp_path / "o", "--size", "64x32")
    assert code == 2 and "square" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "joint_data.mat").write_bytes(b"not a mat file")
    code, _, err = cli("convert", bad, "--out", tmp_path / "o")
    assert code == 2 and "joint_data.mat" in err and err.count("\n") == 1
    savemat(bad / "joint_data.mat", {"joint_uvd": np.zeros((1, 2, 5, 3)), "joint_xyz": np.zeros((1, 2, 5, 3))})
    code, _, err = cli("convert", bad, "--out", tmp_path / "o")
    assert code == 2 and "36 joints" in err
    # a depth PNG that is not RGB
    _write_nyu(tmp_path / "n2", frames=1, cams=1)
    Image.fromarray(np.zeros((H, W), np.uint8), "L").save(tmp_path / "n2" / "depth_1_0000001.png")
    code, _, err = cli("convert", tmp_path / "n2", "--out", tmp_path / "o")
    assert code == 2 and "RGB" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()

