"""The built-in eye simulator (``simgan simulate eyes``): determinism, labels, CLI, domains."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from simgan.errors import SimganError
from simgan.simulators import pupil_masks, render_eyes
from simgan.simulators.eye_scene import direction, pitch_yaw


@pytest.fixture(scope="module")
def synthetic():
    return render_eyes(300, seed=11)


@pytest.fixture(scope="module")
def target():
    return render_eyes(300, seed=11, domain="target")


def _high_freq(images: np.ndarray) -> float:
    x = images[..., 0].astype(np.float64)
    lap = 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
    return float(np.abs(lap).mean())


@pytest.mark.parametrize("domain", ["synthetic", "target"])
def test_same_seed_same_bytes_different_seed_different_images(domain):
    a, la = render_eyes(40, seed=3, domain=domain)
    b, lb = render_eyes(40, seed=3, domain=domain)
    c, _ = render_eyes(40, seed=4, domain=domain)
    assert a.dtype == np.uint8 and a.shape == (40, 35, 55, 1)
    assert a.tobytes() == b.tobytes()
    assert la == lb
    assert all(not np.array_equal(a[i], c[i]) for i in range(40))


@pytest.mark.parametrize("domain", ["synthetic", "target"])
def test_image_i_does_not_depend_on_batch_size_threads_or_n(domain, synthetic, target):
    full, labels = synthetic if domain == "synthetic" else target  # 300 images: two random blocks
    small, small_labels = render_eyes(300, seed=11, domain=domain, batch_size=7, workers=1)
    assert small.tobytes() == full.tobytes()
    assert small_labels == labels
    head, head_labels = render_eyes(5, seed=11, domain=domain, batch_size=3, workers=2)
    assert head.tobytes() == full[:5].tobytes()
    assert head_labels == labels[:5]


def test_domains_draw_different_scenes_from_the_same_seed(synthetic, target):
    assert synthetic[1][0]["gaze"] != target[1][0]["gaze"]


def test_labels_are_consistent_json(synthetic):
    images, labels = synthetic
    for lab in labels:
        json.dumps(lab)
        g = np.array(lab["gaze"])
        assert abs(np.linalg.norm(g) - 1.0) < 1e-5
        assert g[2] < 0  # the eye faces the camera
        assert lab["pitch"] == pytest.approx(math.asin(-g[1]), abs=1e-4)
        assert lab["yaw"] == pytest.approx(math.atan2(-g[0], -g[2]), abs=1e-4)
        assert len(lab["head_pose"]) == 2 and all(abs(v) < math.radians(25) for v in lab["head_pose"])
        assert lab["iris"]["center"] == lab["pupil"]
        r1, r2 = lab["iris"]["radii"]
        assert r1 >= r2 > 0
        up, low = lab["eyelids"]["upper"], lab["eyelids"]["lower"]
        assert len(up) == len(low) == 9
        assert up[0] == low[0] and up[-1] == low[-1]  # both lids meet at the canthi
        assert lab["domain"] == "synthetic" and lab["seed"] == 11
        assert 0 <= lab["pupil"][0] <= 54 and 0 <= lab["pupil"][1] <= 34


def test_gaze_convention_matches_the_image(synthetic):
    # looking towards image right (gaze x > 0) puts the pupil right of the eye's centre
    _, labels = synthetic
    gx = np.array([lab["gaze"][0] for lab in labels])
    gy = np.array([lab["gaze"][1] for lab in labels])
    mid = np.array([np.mean([lab["eyelids"]["upper"][0], lab["eyelids"]["upper"][-1]], axis=0) for lab in labels])
    pupil = np.array([lab["pupil"] for lab in labels])
    assert np.corrcoef(gx, pupil[:, 0] - mid[:, 0])[0, 1] > 0.8
    assert np.corrcoef(gy, pupil[:, 1] - mid[:, 1])[0, 1] > 0.6
    assert np.allclose(direction(np.zeros(1), np.zeros(1)), [[0, 0, -1]])
    p, y = pitch_yaw(direction(np.array([0.3]), np.array([-0.2])))
    assert (p[0], y[0]) == pytest.approx((0.3, -0.2))


def test_pupil_label_is_the_rendered_pupils_centroid(synthetic):
    images, labels = synthetic
    masks = pupil_masks(300, seed=11)  # the pupil's coverage through the lid opening
    ys, xs = np.mgrid[0:35, 0:55]
    checked = 0
    for img, mask, lab in zip(images[..., 0], masks, labels):
        area = mask.sum()
        if area < 0.98 * math.pi * lab["pupil_radii"][0] * lab["pupil_radii"][1]:
            continue  # partly behind a lid
        cx, cy = (mask * xs).sum() / area, (mask * ys).sum() / area
        assert math.hypot(cx - lab["pupil"][0], cy - lab["pupil"][1]) < 1.0
        # the image is dark where the mask says the pupil is
        assert img[mask > 0.9].mean() < img[mask < 0.01].mean() - 40
        checked += 1
    assert checked >= 60


def test_target_differs_in_appearance_not_in_labels(synthetic, target):
    syn, syn_labels = synthetic
    tar, tar_labels = target
    # webcam noise, texture and lashes: much more high-frequency energy
    assert _high_freq(tar) > 1.5 * _high_freq(syn)
    # histogram-equalised like MPIIGaze crops: the full range, a flat histogram
    assert abs(tar.mean() - 127.5) < 12 and tar.std() > 65 > syn.std()
    # the same distribution of labels
    for key in ("pitch", "yaw"):
        a = np.array([lab[key] for lab in syn_labels])
        b = np.array([lab[key] for lab in tar_labels])
        assert abs(a.mean() - b.mean()) < math.radians(4)
        assert 0.8 < a.std() / b.std() < 1.25


def test_other_sizes():
    images, labels = render_eyes(8, seed=1, height=80, width=120, domain="target")
    assert images.shape == (8, 80, 120, 1)
    assert all(0 <= lab["pupil"][0] <= 119 for lab in labels)


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": 5, "domain": "real"}, {"n": 5, "seed": -1},
                                    {"n": 5, "height": 4}, {"n": 5, "batch_size": 0}])
def test_bad_arguments_raise_one_line_errors(kwargs):
    n = kwargs.pop("n")
    with pytest.raises(SimganError) as err:
        render_eyes(n, **kwargs)
    assert "\n" not in str(err.value)


def test_cli_writes_a_labelled_dataset(tmp_path, capsys):
    from simgan.cli import main
    from simgan.datasets import ImageFolder

    out = tmp_path / "eyes"
    main(["simulate", "eyes", "--n", "20", "--out", str(out), "--seed", "2", "--domain", "target", "--quiet"])
    line = capsys.readouterr().out.strip()
    assert "20" in line and "images/s" in line and str(out) in line and "\n" not in line
    ds = ImageFolder.open(out, need_labels=True)
    assert len(ds) == 20 and ds.spec.height == 35 and ds.spec.width == 55 and ds.spec.channels == 1
    images, labels = render_eyes(20, seed=2, domain="target")
    assert np.array_equal(ds.read_many(list(range(20))), images)
    assert ds.labels(7) == labels[7]
    assert not (tmp_path / "eyes.partial").exists()


def test_cli_other_size(tmp_path, capsys):
    from simgan.cli import main
    from simgan.datasets import ImageFolder

    out = tmp_path / "big"
    main(["simulate", "eyes", "--n", "3", "--out", str(out), "--height", "40", "--width", "64", "--quiet"])
    ds = ImageFolder.open(out, need_labels=True)
    assert (ds.spec.height, ds.spec.width) == (40, 64)


def test_cli_refuses_an_existing_output(tmp_path, capsys):
    from simgan.cli import main

    out = tmp_path / "exists"
    out.mkdir()
    with pytest.raises(SystemExit) as done:
        main(["simulate", "eyes", "--n", "5", "--out", str(out), "--quiet"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("simgan: error:") and "\n" not in err
    assert list(out.iterdir()) == []


def test_blocks_in_order_yields_every_span_in_order():
    """The threaded block loop of the simulators: every span, in order, whatever the thread count
    (more spans than the look-ahead of 2 x workers)."""
    import threading
    import time as _time

    from simgan.simulators.blocks import in_order

    def render(b, n):
        _time.sleep(0.001 * ((7 * b) % 5))  # blocks finish out of order
        return b * 10 + n, threading.get_ident()

    spans = [(b, b % 3) for b in range(11)]
    for workers in (1, 2, 3, 8):
        got = list(in_order(render, spans, workers))
        assert [s for s, _ in got] == spans
        assert [r[0] for _, r in got] == [b * 10 + n for b, n in spans]


def test_simulated_set_has_every_image_with_several_threads(tmp_path):
    from simgan.datasets import ImageFolder
    from simgan.simulators.eyes import BLOCK, simulate_eyes
    n = 5 * BLOCK + 7  # more blocks than the look-ahead of 2 x 2 threads
    ds = ImageFolder.open(simulate_eyes(tmp_path / "s", n, seed=3, height=16, width=24, progress=False, workers=2))
    assert len(ds) == n

