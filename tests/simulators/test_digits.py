"""The digits domains (scikit-learn digits x scikit-image photographs) and `simgan demo digits`."""


import numpy as np

from simgan.simulators.digits import WORKING_SIZE, blend, make_digits_domains


def test_domains_split_label_and_determinism():
    a = make_digits_domains(3, limit=90)
    b = make_digits_domains(3, limit=90)
    c = make_digits_domains(4, limit=90)
    assert np.array_equal(a.real, b.real) and np.array_equal(a.test_ids, b.test_ids)
    assert not np.array_equal(a.real_ids, c.real_ids)
    # test digits are never in the real (or synthetic) training set
    assert not set(a.test_ids) & set(a.real_ids) and not set(a.test_ids) & set(a.synthetic_ids)
    assert not set(a.real_ids) & set(a.synthetic_ids)
    assert a.synthetic.shape[1:] == a.real.shape[1:] == a.test.shape[1:] == (WORKING_SIZE, WORKING_SIZE, 3)
    assert a.synthetic.dtype == np.uint8 and len(a.real) == 2 * len(np.unique(a.real_ids))
    # labels kept through blending: each blended image's label is its digit's
    from sklearn.datasets import load_digits
    target = load_digits().target
    assert np.array_equal(a.real_labels, target[a.real_ids]) and np.array_equal(a.test_labels, target[a.test_ids])
    assert np.array_equal(a.synthetic_labels, target[a.synthetic_ids])
    # synthetic: white on black, grey; real: coloured
    assert (a.synthetic[..., 0] == a.synthetic[..., 2]).all() and a.synthetic.min() == 0
    assert np.abs(a.real[..., 0].astype(int) - a.real[..., 2]).mean() > 5


def test_blend_is_abs_difference():
    digit = np.array([[[0.0, 1.0]]], np.float32)
    patch = np.array([[[[0.2, 0.5, 0.9], [0.2, 0.5, 0.9]]]], np.float32)
    assert np.allclose(blend(digit, patch), [[[[0.2, 0.5, 0.9], [0.8, 0.5, 0.1]]]])

