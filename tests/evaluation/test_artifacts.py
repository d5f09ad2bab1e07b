"""Artifact measures: a stride-periodic grid and a frame along the border must fire, a clean residual must not;
the frame and looks measures against real images fire on frames and a few looks, not on real sets."""

import numpy as np


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



def _photo_like(n, seed, size=24):
    """Images of one random colour each with texture: a set of varied looks, like the real digits'."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 255, (n, 1, 1, 3)) + rng.normal(0, 20, (n, size, size, 3))).clip(0, 255).astype(np.uint8)


def test_look_measures_fire_on_a_frame_and_on_a_few_looks_and_not_on_real_sets():
    from simgan.evaluation.artifacts import look_measures

    real, other = _photo_like(300, 0), _photo_like(300, 1)
    same = look_measures(other, real)
    assert not same["frame"] and not same["collapsed"]
    assert 0.8 < same["frame_ratio"] < 1.25 and 0.8 < same["neighbour_ratio"] < 1.25
    # a frame of another colour, also when the whole background changed (the residual would miss it)
    framed = other.copy()
    framed[:, :2], framed[:, -2:], framed[:, :, :2], framed[:, :, -2:] = 0, 0, 0, 0
    m = look_measures(framed, real)
    assert m["frame"] and m["frame_ratio"] > 10 and not m["collapsed"]
    # three looks, repeated with a little noise: the spread stays up, the nearest neighbours collapse
    rng = np.random.default_rng(2)
    few = (other[:3][rng.integers(0, 3, 300)].astype(float) + rng.normal(0, 3, other.shape)).clip(0, 255)
    m = look_measures(few.astype(np.uint8), real)
    assert m["collapsed"] and m["neighbour_ratio"] < 0.1 and m["spread_ratio"] > 0.4 and not m["frame"]


def test_realism_findings_name_a_candidate_more_separable_than_synthetic():
    from simgan.evaluation.realism import findings

    res = {"synthetic": {"c2st": {"accuracy": 0.934}, "looks": {"frame": False, "collapsed": False}},
           "refined": {"c2st": {"accuracy": 0.962}, "looks": {"frame": True, "frame_ratio": 3.0, "collapsed": True,
                                                              "neighbour_ratio": 0.2}}}
    res["synthetic"]["kid"], res["refined"]["kid"] = {"kid": 0.10}, {"kid": 0.02}
    out = findings(res)
    assert out[0] == ("a classifier tells refined images from real ones at 96.2% (synthetic: 93.4%): refined images "
                      "are no harder to tell from real ones than synthetic; the kernel distance to the real images "
                      "fell 5.0x (refined moved towards the real set)")
    assert out[1] == "refined images are told from real ones more often than synthetic images (96.2% against 93.4%)"
    assert "frame" in out[2] and "3.0x" in out[2] and "few looks" in out[3]
    res["refined"]["c2st"]["accuracy"] = 0.80
    res["refined"]["looks"] = {}
    assert findings(res) == ["a classifier tells refined images from real ones at 80.0% (synthetic: 93.4%): refined "
                             "images are harder to tell from real ones; the kernel distance to the real images fell "
                             "5.0x (refined moved towards the real set)"]
    res["synthetic"]["kid"], res["refined"]["kid"] = {"kid": 2.821, "kid_se": 0.017}, {"kid": 2.820, "kid_se": 0.017}
    assert findings(res)[0].endswith("the kernel distance to the real images did not change beyond its noise "
                                     "(refined did not move towards the real set)")


def test_verdict_says_a_run_collapsed_or_left_a_frame():
    from simgan.config import resolve_config
    from simgan.training.health import verdict

    rows = [{"phase": "adversarial", "mean_abs_diff": 0.3, "d_acc_real": 0.6, "d_acc_refined": 0.4}] * 8
    cfg = resolve_config("generic", overrides={"refiner": {"padding": "zeros"}})
    looks = {"frame": True, "frame_ratio": 4.2, "collapsed": True, "neighbour_ratio": 0.1,
             "synthetic": {"neighbour_ratio": 0.6}}
    v = verdict(rows, cfg, looks=looks)["verdict"]
    assert "have a frame" in v and "4.2x" in v and "refiner.padding: reflect" in v
    assert "0.1x as far as in real images, 0.6x for the synthetic ones: R collapsed them (mode collapse)." in v
    reflecting = verdict(rows, resolve_config("generic"), looks=looks)["verdict"]  # the preset pads by reflection
    assert "have a frame" in reflecting and "refiner.padding: reflect" not in reflecting
    assert verdict(rows, cfg)["verdict"].endswith("look at the sample grids for artifacts.")
