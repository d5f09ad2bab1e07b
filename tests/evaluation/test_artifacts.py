"""Artifact measures: a stride-periodic grid and a frame along the border must fire, a clean residual must not."""





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

