"""`simgan evaluate task`: the downstream test for any label (class, vector, points) on tiny sets,
the kind inferred and said, the gap closed by hand, the digits demo's classifier, and bad labels."""

import json

import numpy as np
import pytest

from simgan.datasets import write_dataset
from simgan.errors import SimganError
from simgan.evaluation.task import TaskSettings, _gaps, evaluate_task, infer_kind, targets


def discs(n, seed, real=False, size=16):
    """Bright discs on dark; labels: the centre (vector), two points, the half it is in (class)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, labels = [], []
    for _ in range(n):
        cx, cy = rng.uniform(4, size - 4, 2)
        img = np.where((xx - cx) ** 2 + (yy - cy) ** 2 < 6, 230.0, 20.0)
        if real:
            img = img * 0.7 + 40 + rng.normal(0, 15, img.shape)
        images.append(np.clip(img, 0, 255).astype(np.uint8)[:, :, None])
        labels.append({"centre": [float(cx), float(cy)], "pts": [[float(cx), float(cy)], [float(cx) + 1, float(cy)]],
                       "half": "left" if cx < size / 2 else "right", "x": float(cx)})
    return np.stack(images), labels


@pytest.fixture
def sets(tmp_path):
    for name, seed, real in (("syn", 1, False), ("real", 2, True), ("test", 3, True)):
        write_dataset(tmp_path / name, *discs(48, seed, real))
    return tmp_path


@pytest.mark.parametrize("label,kind,key", [("half", "class", "accuracy"), ("centre", "vector", "mean_error"),
                                            ("x", "vector", "mean_error"), ("pts", "points", "mean_error_px")])
def test_each_kind_on_tiny_sets(sets, label, kind, key):
    m = evaluate_task({"syn": sets / "syn", "real": sets / "real"}, sets / "test", label, out=sets / f"o_{label}",
                      seeds=2, settings=TaskSettings(steps=20, batch_size=16), device="cpu")
    assert m["kind"] == kind and m["kind_given"] is None and m["headline"] == key
    assert len(m["results"]["syn"]["seeds"]) == 2 and key in m["results"]["real"]["mean"]
    assert json.loads((sets / f"o_{label}" / "metrics.json").read_text())["label"] == label
    if kind == "points":
        assert 0 <= m["results"]["syn"]["mean"]["pck5"] <= 1


def test_gap_closed_by_hand_for_higher_and_lower_is_better():
    acc = {n: {"mean": {"accuracy": v}} for n, v in (("syn", 0.3), ("ref", 0.6), ("real", 0.9))}
    assert _gaps(acc, "class")["ref"] == {"gain": pytest.approx(0.3), "gap_closed": pytest.approx(0.5)}
    err = {n: {"mean": {"mean_error": v}} for n, v in (("syn", 4.0), ("ref", 3.0), ("real", 2.0))}
    assert _gaps(err, "vector")["ref"]["gap_closed"] == pytest.approx(0.5)
    assert _gaps({k: acc[k] for k in ("syn", "ref")}, "class")["ref"]["gap_closed"] is None  # no upper bound


def test_kinds_are_inferred_and_bad_labels_are_one_line_errors():
    assert infer_kind([1, 2]) == "class" and infer_kind(["a"]) == "class" and infer_kind([0.5, 1]) == "vector"
    assert infer_kind([[1.0, 2.0, 3.0]]) == "vector" and infer_kind([[[1, 2], [3, 4]]]) == "points"
    with pytest.raises(SimganError, match="one shape"):
        targets([[1.0, 2.0], [1.0]], "vector", "set")
    with pytest.raises(SimganError, match="numbers"):
        targets(["a", "b"], "vector", "set")
    with pytest.raises(SimganError, match="finite numbers"):
        targets([float("nan")], "vector", "set")
    with pytest.raises(SimganError, match="integer or a string"):
        targets([[1, 2]], "class", "set", classes=[1])


def test_the_digits_demo_classifier_is_the_class_head():
    """TaskNet with 10 outputs is the digits demo's classifier, trained the same way: the same
    accuracy from the same seed (the demo calls this function)."""
    from simgan.evaluation.task import train_and_test
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (40, 12, 12, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 40)
    a = train_and_test(x, y, x, y, "class", outputs=10, settings=TaskSettings(steps=5, batch_size=8), seed=3)
    b = train_and_test(x, y, x, y, "class", outputs=10, settings=TaskSettings(steps=5, batch_size=8), seed=3)
    assert a == b and 0 <= a["accuracy"] <= 1
