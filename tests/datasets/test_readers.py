"""Readers for UnityEyes, MPIIGaze, HDF5 and NPZ, and ``simgan convert``.

Every input is built by hand in ``tmp_path`` with known geometry, so the expected crops, landmark
coordinates and gaze labels can be written down exactly.
"""

from __future__ import annotations

import json
import math
import pickle
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image, ImageDraw

from simgan.cli import main
from simgan.datasets import (
    LABELS_FILE,
    HDF5Images,
    ImageFolder,
    MPIIGaze,
    NPZImages,
    UnityEyes,
    convert,
    gaze_angles,
    open_dataset,
    write_dataset,
)
from simgan.datasets.common import parse_size, to_gray
from simgan.datasets.formats import detect, open_format, sniff
from simgan.errors import SimganError


def _unity_string(points, height):
    return [f"({x:.4f}, {height - y:.4f}, 9.5000)" for x, y in points]


def make_render(root: Path, stem: str, *, size=(200, 150), centre=(100.0, 80.0), half=30.0,
                iris=(112.5, 74.5), look="(0.3000, 0.2000, -0.9330, 0.0000)", head="(350.0, 190.0, 0.0)",
                drop=(), quality=95) -> dict:
    """Write ``stem.jpg`` + ``stem.json``; returns the metadata (top-down coordinates)."""
    W, H = size
    sx = W / 200  # draw the iris disc at the render's scale
    img = Image.new("RGB", (W, H), (60, 60, 60))
    r = 4 * sx
    ImageDraw.Draw(img).ellipse((iris[0] - r, iris[1] - r, iris[0] + r, iris[1] + r), fill=(250, 250, 250))
    img.save(root / f"{stem}.jpg", quality=quality)
    t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    interior = [(centre[0] - half * math.cos(a), centre[1] + 0.4 * half * math.sin(a)) for a in t]
    inner = (centre[0] - half, centre[1])
    caruncle = [(inner[0] - 2, inner[1] - 1), (inner[0] + 2, inner[1] + 1), inner]
    iris_pts = [(iris[0] + 5 * sx * math.cos(a), iris[1] + 5 * sx * math.sin(a))
                for a in np.linspace(0, 2 * np.pi, 32, endpoint=False)]
    meta = {
        "interior_margin_2d": _unity_string(interior, H),
        "caruncle_2d": _unity_string(caruncle, H),
        "iris_2d": _unity_string(iris_pts, H),
        "eye_details": {"look_vec": look, "pupil_size": "0.1234", "iris_size": "0.9"},
        "head_pose": head,
        "lighting_details": {"skybox_texture": "x"},
    }
    for key in drop:
        if key == "look_vec":
            del meta["eye_details"]["look_vec"]
        else:
            del meta[key]
    (root / f"{stem}.json").write_text(json.dumps(meta))
    return {"interior": np.array(interior), "iris": np.array(iris_pts), "inner": inner}


@pytest.fixture
def unity(tmp_path) -> Path:
    root = tmp_path / "unity"
    root.mkdir()
    make_render(root, "1")
    make_render(root, "2", look="(0.0000, 0.0000, -1.0000, 0.0000)", head="(0.0, 180.0, 0.0)",
                iris=(100.5, 80.5))
    make_render(root, "10", look="(-0.5000, -0.3000, -0.8124, 0.0000)", iris=(90.5, 84.5))
    return root


def _centroid(crop: np.ndarray, background: float = 60.0) -> tuple[float, float]:
    """Intensity centroid of what is brighter than the background, in continuous coordinates."""
    w = np.clip(crop[:, :, 0].astype(np.float64) - background - 10, 0, None)
    yy, xx = np.mgrid[0:crop.shape[0], 0:crop.shape[1]]
    return float((w * (xx + 0.5)).sum() / w.sum()), float((w * (yy + 0.5)).sum() / w.sum())


def make_mat(path: Path, n: int, seed: int = 0, *, names: bool = True) -> dict:
    """An MPIIGaze ``dayNN.mat`` with ``n`` samples per eye; returns the arrays written."""
    rng = np.random.default_rng(seed)
    eyes = {}
    for side in ("left", "right"):
        gaze = rng.normal(scale=0.3, size=(n, 3))
        gaze[:, 2] = -1
        gaze /= np.linalg.norm(gaze, axis=1, keepdims=True)
        eyes[side] = {"image": rng.integers(0, 256, (n, 36, 60), dtype=np.uint8), "gaze": gaze,
                      "pose": rng.normal(scale=0.2, size=(n, 3))}
    content = {"data": eyes}
    if names:
        content["filenames"] = np.array([f"{i + 1:04d}.jpg" for i in range(n)], dtype=object).reshape(-1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, content)
    return eyes


@pytest.fixture
def mpii(tmp_path):
    root = tmp_path / "MPIIGaze"
    normalized = root / "Data" / "Normalized"
    arrays = {
        ("p00", "day01"): make_mat(normalized / "p00" / "day01.mat", 3, 1),
        ("p00", "day02"): make_mat(normalized / "p00" / "day02.mat", 1, 2),  # one sample: squeezed by scipy
        ("p01", "day01"): make_mat(normalized / "p01" / "day01.mat", 2, 3, names=False),
    }
    # Calibration files and original images must not be mistaken for data.
    original = root / "Data" / "Original" / "p00"
    (original / "Calibration").mkdir(parents=True)
    scipy.io.savemat(original / "Calibration" / "Camera.mat", {"cameraMatrix": np.eye(3)})
    (original / "day01").mkdir()
    Image.new("RGB", (8, 8)).save(original / "day01" / "0001.jpg")
    return root, arrays


def run_cli(*args) -> int:
    try:
        main(["convert", *map(str, args)])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _assert_same_as_reader(reader, out: Path, n: int):
    folder = ImageFolder.open(out, need_labels=True)
    assert len(folder) == n
    for i in range(n):
        np.testing.assert_array_equal(folder.read(i), reader.read(i))
        assert folder.labels(i) == json.loads(json.dumps(reader.labels(i)))
    assert folder.records[0].file == "img/000000.png"


def test_unityeyes_is_detected_and_sorted_numerically(unity):
    assert sniff(unity) == "unityeyes"
    ds = open_dataset(unity, need_labels=True)
    assert isinstance(ds, UnityEyes) and ds.labelled
    assert len(ds) == 3
    assert [ds.labels(i)["source"] for i in range(3)] == ["1.jpg", "2.jpg", "10.jpg"]
    assert ds.describe(2).endswith("10.jpg")


def test_unityeyes_crop_box_and_landmarks_in_crop_pixels(unity):
    ds = UnityEyes(unity)
    # Inner corner (70, 80), outer (130, 80): eye width 60, crop 1.5 x 60 = 90 wide and
    # 90 * 35 / 55 high, centred on the eyelid bounding box centre (100, 80).
    h = 90 * 35 / 55
    assert ds.crop_box(0) == pytest.approx((55, 80 - h / 2, 145, 80 + h / 2))
    labels = ds.labels(0)
    scale = 55 / 90
    interior = np.array(labels["interior_margin"])
    assert interior.shape == (16, 2)
    assert interior[0] == pytest.approx([(70 - 55) * scale, 35 / 2], abs=0.01)  # inner corner
    assert interior[8] == pytest.approx([(130 - 55) * scale, 35 / 2], abs=0.01)  # outer corner
    assert np.array(labels["caruncle"]).mean(axis=0) == pytest.approx([15 * scale, 17.5], abs=0.01)
    iris = np.array(labels["iris"])
    assert iris.shape == (32, 2)
    assert iris.mean(axis=0) == pytest.approx([(112.5 - 55) * scale, 17.5 + (74.5 - 80) * scale], abs=0.01)


def test_unityeyes_image_matches_landmarks(unity):
    """The bright iris disc lands where the transformed iris landmarks say it is."""
    ds = UnityEyes(unity)
    for i in range(len(ds)):
        crop = ds.read(i)
        assert crop.shape == (35, 55, 1) and crop.dtype == np.uint8
        iris = np.array(ds.labels(i)["iris"]).mean(axis=0)
        assert _centroid(crop) == pytest.approx(tuple(iris), abs=0.3)


def test_unityeyes_big_render_uses_reduced_decoding_without_moving_the_eye(tmp_path):
    root = tmp_path / "big"
    root.mkdir()
    # Same eye at 4x the resolution: the crop shrinks 6.5x, so the JPEG is decoded at 1/2 scale.
    make_render(root, "0", size=(800, 600), centre=(400.0, 320.0), half=120.0, iris=(450.5, 298.5))
    ds = UnityEyes(root)
    crop = ds.read(0)
    iris = np.array(ds.labels(0)["iris"]).mean(axis=0)
    assert _centroid(crop) == pytest.approx(tuple(iris), abs=0.3)
    # And it matches a full-resolution decode of the same box.
    with Image.open(root / "0.jpg") as im:
        full = np.asarray(im.convert("L").resize((55, 35), Image.Resampling.BICUBIC, box=ds.crop_box(0)))
    assert np.abs(full.astype(int) - crop[:, :, 0].astype(int)).mean() < 2.0


def test_unityeyes_crop_outside_the_render_repeats_the_edge(tmp_path):
    root = tmp_path / "edge"
    root.mkdir()
    make_render(root, "0", centre=(40.0, 20.0), half=30.0, iris=(45.5, 20.5))
    ds = UnityEyes(root)
    left, top, _, _ = ds.crop_box(0)
    assert left < 0 and top < 0
    crop = ds.read(0)
    assert crop.shape == (35, 55, 1)
    assert _centroid(crop) == pytest.approx(tuple(np.array(ds.labels(0)["iris"]).mean(axis=0)), abs=0.3)


def test_unityeyes_gaze_convention(unity):
    """look_vec is Unity camera space (x right, y up, z away): gaze = normalise(x, -y, z)."""
    ds = UnityEyes(unity)
    # Looking into the camera.
    straight = ds.labels(1)
    assert straight["gaze"] == pytest.approx([0, 0, -1])
    assert straight["pitch"] == pytest.approx(0) and straight["yaw"] == pytest.approx(0)
    # look_vec (0.3, 0.2, -0.933): right in the image and up.
    g = np.array([0.3, -0.2, -0.933]) / np.linalg.norm([0.3, -0.2, -0.933])
    lab = ds.labels(0)
    assert lab["gaze"] == pytest.approx(g.tolist(), abs=1e-6)
    assert np.linalg.norm(lab["gaze"]) == pytest.approx(1, abs=1e-5)
    assert lab["pitch"] == pytest.approx(math.asin(-g[1]), abs=1e-6) and lab["pitch"] > 0  # up
    assert lab["yaw"] == pytest.approx(math.atan2(-g[0], -g[2]), abs=1e-6) and lab["yaw"] < 0  # image right
    # The convention agrees with the picture: the iris sits off the eye centre along (gaze_x, gaze_y)
    # (UnityEyes draws its iris at eyeball centre + r * (look_x, -look_y) in top-down pixels).
    def signs(values, tolerance):
        return [0 if abs(v) < tolerance else int(np.sign(v)) for v in values]

    for i, expected in enumerate([[1, -1], [0, 0], [-1, 1]]):
        lab = ds.labels(i)
        offset = np.array(lab["iris"]).mean(axis=0) - (27.5, 17.5)  # from the eye's centre
        assert signs(offset, 0.5) == expected
        assert signs(lab["gaze"][:2], 0.01) == expected


def test_unityeyes_head_pose(unity):
    ds = UnityEyes(unity)
    frontal = ds.labels(1)  # (0, 180, 0): the face looks into the camera
    assert frontal["head_pitch"] == pytest.approx(0) and frontal["head_yaw"] == pytest.approx(0)
    assert frontal["head_pose_raw"] == [0.0, 180.0, 0.0]
    turned = ds.labels(0)  # (350, 190, 0): Unity pitch -10 (up), yaw +10 (towards the image's left)
    assert turned["head_pitch"] == pytest.approx(math.radians(10), abs=1e-5)
    assert turned["head_yaw"] == pytest.approx(math.radians(10), abs=1e-5)
    assert turned["pupil_size"] == pytest.approx(0.1234) and turned["iris_size"] == pytest.approx(0.9)


def test_unityeyes_options(unity):
    ds = open_format(unity, "unityeyes", size=(60, 36), gray=False, landmarks=False)
    img = ds.read(0)
    assert img.shape == (36, 60, 3)
    assert "iris" not in ds.labels(0) and "gaze" in ds.labels(0)
    wide = UnityEyes(unity, crop_scale=2.0)
    assert wide.crop_box(0)[2] - wide.crop_box(0)[0] == pytest.approx(120)
    with pytest.raises(SimganError, match="always cropped"):
        open_format(unity, "unityeyes", size=None)


def test_unityeyes_bad_inputs(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    make_render(root, "1", drop=("look_vec",))
    ds = UnityEyes(root)
    with pytest.raises(SimganError, match=r"1\.json.*look_vec"):
        ds.labels(0)
    (root / "1.json").write_text("{not json")
    with pytest.raises(SimganError, match=r"1\.json: not valid JSON"):
        UnityEyes(root).read(0)
    make_render(root, "1", drop=("interior_margin_2d",))
    with pytest.raises(SimganError, match=r"1\.json: no interior_margin_2d"):
        UnityEyes(root).read(0)
    make_render(root, "1")
    (root / "1.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(SimganError, match=r"1\.jpg"):
        UnityEyes(root).read(0)
    make_render(root, "1")
    (root / "2.jpg").write_bytes((root / "1.jpg").read_bytes())
    with pytest.raises(SimganError, match=r"2\.jpg has no labels 2\.json"):
        open_dataset(root)


def test_mpiigaze_is_detected_and_indexed(mpii):
    root, arrays = mpii
    assert sniff(root) == "mpiigaze"
    assert sniff(root / "Data" / "Normalized" / "p00" / "day01.mat") == "mpiigaze"
    ds = open_dataset(root, need_labels=True)
    assert isinstance(ds, MPIIGaze)
    assert len(ds) == 2 * (3 + 1 + 2)
    # Order: files (participant, day), then samples, left eye before right eye.
    got = [(ds.labels(i)["participant"], ds.labels(i)["day"], ds.labels(i)["index"], ds.labels(i)["side"])
           for i in range(len(ds))]
    assert got[:4] == [("p00", "day01", 0, "left"), ("p00", "day01", 0, "right"),
                       ("p00", "day01", 1, "left"), ("p00", "day01", 1, "right")]
    assert got[6:8] == [("p00", "day02", 0, "left"), ("p00", "day02", 0, "right")]
    assert got[-1] == ("p01", "day01", 1, "right")
    assert ds.labels(6)["source"] == "0001.jpg"
    assert "source" not in ds.labels(8)  # that file has no filenames
    assert ds.read(0).shape == (35, 55, 1)


def test_mpiigaze_labels_and_flip(mpii):
    root, arrays = mpii
    ds = MPIIGaze(MPIIGaze.find(root), size=None)  # default: mirror right eyes
    left, right = arrays[("p00", "day01")]["left"], arrays[("p00", "day01")]["right"]
    # Left eye 1: untouched. MPIIGaze gaze is already camera space (x right, y down, z away).
    lab = ds.labels(2)
    g = left["gaze"][1]
    assert lab["side"] == "left" and lab["flipped"] is False
    assert lab["gaze"] == pytest.approx(g.tolist(), abs=1e-6)
    assert lab["pitch"] == pytest.approx(math.asin(-g[1]), abs=1e-6)
    assert lab["yaw"] == pytest.approx(math.atan2(-g[0], -g[2]), abs=1e-6)
    assert lab["head_pose_raw"] == pytest.approx(left["pose"][1].tolist(), abs=1e-6)
    np.testing.assert_array_equal(ds.read(2)[:, :, 0], left["image"][1])
    # Right eye 1: mirrored image, gaze x and head yaw negated, pitch kept.
    lab_r = ds.labels(3)
    g = right["gaze"][1]
    assert lab_r["side"] == "right" and lab_r["flipped"] is True
    assert lab_r["gaze"] == pytest.approx([-g[0], g[1], g[2]], abs=1e-6)
    assert lab_r["yaw"] == pytest.approx(-math.atan2(-g[0], -g[2]), abs=1e-6)
    assert lab_r["pitch"] == pytest.approx(math.asin(-g[1]), abs=1e-6)
    np.testing.assert_array_equal(ds.read(3)[:, :, 0], right["image"][1][:, ::-1])
    unflipped = MPIIGaze(MPIIGaze.find(root), flip="none", size=None).labels(3)
    assert lab_r["head_pitch"] == pytest.approx(unflipped["head_pitch"], abs=1e-6)
    assert lab_r["head_yaw"] == pytest.approx(-unflipped["head_yaw"], abs=1e-6)
    r = right["pose"][1]
    assert lab_r["head_pose_raw"] == pytest.approx([r[0], -r[1], -r[2]], abs=1e-6)


def test_mpiigaze_head_pose_convention(tmp_path):
    """pose is a rotation vector; the face points along minus the head frame's z axis."""
    path = tmp_path / "p05" / "day03.mat"
    eyes = make_mat(path, 2)
    theta = 0.3
    eyes["left"]["pose"][0] = [0, 0, 0]  # frontal
    eyes["left"]["pose"][1] = [0, theta, 0]  # turned about the camera's y axis
    scipy.io.savemat(path, {"data": eyes})
    ds = MPIIGaze([path], eyes="left")
    assert ds.labels(0)["head_pitch"] == pytest.approx(0) and ds.labels(0)["head_yaw"] == pytest.approx(0)
    # Ry(theta) takes the head's z axis to (sin t, 0, cos t): face (-sin t, 0, -cos t), yaw = +t.
    assert ds.labels(1)["head_yaw"] == pytest.approx(theta, abs=1e-6)
    assert ds.labels(1)["head_pitch"] == pytest.approx(0, abs=1e-6)


def test_mpiigaze_eye_selection_and_resize(mpii):
    root, arrays = mpii
    files = MPIIGaze.find(root)
    assert [f.name for f in files] == ["day01.mat", "day02.mat", "day01.mat"]
    rights = MPIIGaze(files, eyes="right", flip="left")
    assert len(rights) == 6 and {rights.labels(i)["side"] for i in range(6)} == {"right"}
    assert rights.labels(0)["flipped"] is False
    assert rights.read(0).shape == (35, 55, 1)
    lefts = MPIIGaze(files, eyes="left", flip="left", size=None)
    assert lefts.labels(0)["flipped"] is True
    np.testing.assert_array_equal(lefts.read(0)[:, :, 0], arrays[("p00", "day01")]["left"]["image"][0][:, ::-1])
    stack = MPIIGaze(files).load(threads=2)
    assert stack.shape == (12, 35, 55, 1)


def test_mpiigaze_bad_inputs(tmp_path):
    bad = tmp_path / "p00" / "day01.mat"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"MATLAB 5.0 MAT-file, this is not really one" + bytes(200))
    with pytest.raises(SimganError, match=r"day01\.mat"):
        open_dataset(tmp_path)
    scipy.io.savemat(bad, {"other": np.eye(2)})
    with pytest.raises(SimganError, match=r"day01\.mat: no 'data' struct"):
        open_dataset(tmp_path)
    eyes = make_mat(bad, 3)
    eyes["right"]["gaze"] = eyes["right"]["gaze"][:2]
    scipy.io.savemat(bad, {"data": eyes})
    with pytest.raises(SimganError, match=r"day01\.mat: data\.right has 3 images but gaze is not 3 x 3"):
        open_dataset(tmp_path).read(0)
    with pytest.raises(SimganError, match="eyes must be"):
        MPIIGaze([bad], eyes="middle")


def test_hdf5_layouts_labels_and_batches(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 3, 10, 14), dtype=np.uint8)  # N x C x H x W
    gaze = rng.normal(size=(6, 3)).astype(np.float32)
    path = tmp_path / "set.h5"
    with h5py.File(path, "w") as f:
        f["images"] = images
        f["gaze"] = gaze
        f["meta/subject"] = np.arange(6, dtype=np.int16)
        f.create_dataset("name", data=[f"img{i}" for i in range(6)], dtype=h5py.string_dtype())
        f["version"] = 2  # a scalar: ignored
    assert sniff(path) == "hdf5"
    ds = open_dataset(path, need_labels=True)
    assert isinstance(ds, HDF5Images) and ds.layout == "NCHW" and len(ds) == 6
    hwc = images.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(ds.read(4), hwc[4])
    np.testing.assert_array_equal(ds.read_many([5, 0, 0, 2]), hwc[[5, 0, 0, 2]])
    np.testing.assert_array_equal(ds.load(), hwc)
    lab = ds.labels(3)
    assert set(lab) == {"gaze", "meta/subject", "name"}
    assert lab["gaze"] == pytest.approx(gaze[3].tolist())
    assert lab["meta/subject"] == 3 and lab["name"] == "img3"
    json.dumps(lab)  # plain JSON values
    again = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(again.read(1), hwc[1])


def test_hdf5_gray_and_resize(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 12, 16, 3), dtype=np.uint8)
    path = tmp_path / "rgb.hdf5"
    with h5py.File(path, "w") as f:
        f["frames"] = images  # not called "images": the only image-like array
    ds = HDF5Images(path, gray=True)
    assert not ds.labelled and ds.images_key == "frames"
    expected = np.asarray(Image.fromarray(images[1]).convert("L"))
    np.testing.assert_array_equal(ds.read(1)[:, :, 0], expected)
    small = HDF5Images(path, size=(8, 6))
    assert small.read(0).shape == (6, 8, 3)
    with pytest.raises(SimganError, match="no label arrays"):
        open_dataset(path, need_labels=True)


def test_to_gray_matches_pillow_and_handles_16_bit():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_gray(rgb)[:, :, 0], np.asarray(Image.fromarray(rgb).convert("L")))
    deep = np.full((2, 2, 3), 65535, dtype=np.uint16)
    assert to_gray(deep).dtype == np.uint16 and int(to_gray(deep).max()) == 65535


def test_npz_reading(tmp_path):
    rng = np.random.default_rng(3)
    depth = rng.integers(0, 65536, (4, 9, 7)).astype(">u2")  # big-endian 16-bit, N x H x W
    path = tmp_path / "depth.npz"
    np.savez_compressed(path, depth=depth, joints=rng.normal(size=(4, 14, 2)), ok=np.array([True, False] * 2),
                        label=np.array(["a", "b", "c", "d"]))
    assert sniff(path) == "npz"
    ds = open_dataset(path)
    assert isinstance(ds, NPZImages) and ds.images_key == "depth"
    img = ds.read(2)
    assert img.dtype == np.uint16 and img.shape == (9, 7, 1)
    np.testing.assert_array_equal(img[:, :, 0], depth[2])
    assert ds.spec.bit_depth == 16
    lab = ds.labels(1)
    assert np.array(lab["joints"]).shape == (14, 2) and lab["ok"] is False and lab["label"] == "b"
    np.testing.assert_array_equal(ds.read_many([3, 1]), depth[[3, 1]][..., None])
    resized = NPZImages(path, size=(14, 18)).read(0)
    assert resized.shape == (18, 14, 1) and resized.dtype == np.uint16


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((4, 8, 8), np.uint8), "gaze": np.zeros((3, 3))},
     r"array 'gaze' has 3 entries but 'images' has 4"),
    ({"gaze": np.zeros((3, 3))}, "no images array"),
    ({"images": np.zeros((4, 8, 8), np.float32)}, "unsupported pixel type float32"),
    ({"a": np.zeros((4, 8, 8), np.uint8), "b": np.zeros((4, 8, 8), np.uint8)}, "several arrays could be the images"),
    ({"images": np.zeros((4, 8, 8, 5), np.uint8)}, "no channel axis of size 1 or 3"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "file": np.zeros(4)}, "clashes"),
])
def test_array_bad_inputs(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w") as zf:  # np.savez cannot name an array "file"
        for key, value in arrays.items():
            with zf.open(f"{key}.npy", "w") as fh:
                np.lib.format.write_array(fh, value)
    with pytest.raises(SimganError, match=message):
        open_dataset(path)
    h5 = tmp_path / "bad.h5"
    with h5py.File(h5, "w") as f:
        for key, value in arrays.items():
            f[key] = value
    with pytest.raises(SimganError, match=message):
        open_dataset(h5)


def test_corrupt_array_files(tmp_path):
    for name in ("broken.npz", "broken.h5"):
        path = tmp_path / name
        path.write_bytes(b"definitely not " + name.encode() + bytes(64))
        with pytest.raises(SimganError, match=f"cannot read .*{name}: corrupt"):
            open_dataset(path)
    pickled = tmp_path / "objects.npz"
    np.savez(pickled, images=np.zeros((2, 4, 4), np.uint8), meta=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(SimganError, match="Python objects"):
        open_dataset(pickled)


def test_detect_leaves_interchange_and_plain_folders_alone(tmp_path, unity):
    out = write_dataset(tmp_path / "folder", np.zeros((2, 4, 4, 1), np.uint8), [{"a": 1}, {"a": 2}])
    assert detect(out) is None and isinstance(open_dataset(out), ImageFolder)
    # labels.jsonl wins even next to UnityEyes-like files
    (unity / LABELS_FILE).write_text("")
    assert sniff(unity) is None
    plain = tmp_path / "plain"
    plain.mkdir()
    Image.new("L", (4, 4)).save(plain / "a.png")
    assert sniff(plain) is None
    assert sniff(tmp_path / "plain" / "a.png") is None


def test_parse_size():
    assert parse_size("55x35") == (55, 35) and parse_size(" 60X36 ") == (60, 36)
    assert parse_size("native") is None and parse_size(None) is None
    with pytest.raises(SimganError, match="WIDTHxHEIGHT"):
        parse_size("55")


def test_gaze_angles_examples():
    assert gaze_angles([0, 0, -1]) == pytest.approx((0, 0))
    pitch, yaw = gaze_angles([0, -1, -1])  # up and into the camera
    assert pitch == pytest.approx(math.pi / 4) and yaw == pytest.approx(0)
    pitch, yaw = gaze_angles([-1, 0, -1])  # towards the image's left
    assert pitch == pytest.approx(0) and yaw == pytest.approx(math.pi / 4)


def test_convert_cli_unityeyes(unity, tmp_path, capsys):
    out = tmp_path / "ue_out"
    assert run_cli(unity, "--out", out) == 0
    assert "wrote 3 images (55x35 8-bit gray) with labels" in capsys.readouterr().out
    _assert_same_as_reader(UnityEyes(unity), out, 3)
    assert not (tmp_path / "ue_out.partial").exists()
    out2 = tmp_path / "ue_rgb"
    assert run_cli(unity, "--out", out2, "--format", "unityeyes", "--size", "60x36", "--keep-channels",
                   "--limit", "2", "--no-landmarks") == 0
    folder = ImageFolder.open(out2, need_labels=True)
    assert len(folder) == 2 and folder.spec.describe() == "60x36 8-bit RGB"
    assert "iris" not in folder.labels(0)


def test_convert_cli_mpiigaze(mpii, tmp_path):
    root, _ = mpii
    out = tmp_path / "mpii_out"
    assert run_cli(root, "-o", out, "--eyes", "right", "--flip", "none") == 0
    _assert_same_as_reader(MPIIGaze(MPIIGaze.find(root), eyes="right", flip="none"), out, 6)
    out2 = tmp_path / "mpii_native"
    assert run_cli(root, "-o", out2, "--size", "native", "--limit", "3") == 0
    assert ImageFolder.open(out2).spec.describe() == "60x36 8-bit gray"


def test_convert_api_arrays(tmp_path):
    rng = np.random.default_rng(4)
    h5 = tmp_path / "a.h5"
    with h5py.File(h5, "w") as f:
        f["images"] = rng.integers(0, 256, (5, 6, 7, 1), dtype=np.uint8)
        f["gaze"] = rng.normal(size=(5, 3))
    out = convert(h5, tmp_path / "h5_out", threads=2)
    _assert_same_as_reader(HDF5Images(h5), out, 5)
    npz = tmp_path / "b.npz"
    np.savez(npz, images=rng.integers(0, 65536, (3, 4, 5)).astype(np.uint16))
    out = convert(npz, tmp_path / "npz_out", threads=1)
    folder = ImageFolder.open(out)
    assert not folder.labelled and not (out / LABELS_FILE).exists()
    np.testing.assert_array_equal(folder.load(), NPZImages(npz).load())
    rgb16 = tmp_path / "c.npz"
    np.savez(rgb16, images=np.zeros((2, 4, 4, 3), np.uint16))
    with pytest.raises(SimganError, match="add --gray"):
        convert(rgb16, tmp_path / "rgb16_out")
    assert convert(rgb16, tmp_path / "gray16_out", gray=True).exists()


@pytest.mark.parametrize("case", ["exists", "corrupt", "look_vec", "lengths", "unknown", "bad_size"])
def test_convert_cli_errors(case, tmp_path, capsys, unity):
    out = tmp_path / "out"
    extra = []
    if case == "exists":
        src, expected = unity, "already exists"
        out.mkdir()
    elif case == "corrupt":
        src, expected = tmp_path / "x.h5", "x.h5: corrupt"
        src.write_bytes(b"garbage" * 20)
    elif case == "look_vec":
        make_render(unity, "3", drop=("look_vec",))
        src, expected = unity, "3.json: no eye_details.look_vec"
    elif case == "lengths":
        src, expected = tmp_path / "x.npz", "array 'gaze' has 2 entries but 'images' has 3"
        np.savez(src, images=np.zeros((3, 4, 4), np.uint8), gaze=np.zeros((2, 3)))
    elif case == "unknown":
        src, expected = tmp_path / "notes.txt", "cannot tell the format"
        src.write_text("hello")
    else:
        src, expected = unity, "WIDTHxHEIGHT"
        extra = ["--size", "big"]
    assert run_cli(src, "--out", out, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err, err
    assert not (tmp_path / "out.partial").exists()
    if case != "exists":
        assert not out.exists()

