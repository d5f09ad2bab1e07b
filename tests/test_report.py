"""The one table formatter (simgan.report) and the two shared conventions' homes."""

import numpy as np
import pytest

from simgan.gaze_convention import gaze_angles, gaze_from_pitch_yaw, pitch_yaw_from_gaze
from simgan.report import format_table
from simgan.stats import binomial_test


def test_text_table_aligns_names_left_and_numbers_right():
    assert format_table(["name", "n"], [["a", 1], ["bbb", 22]]).split("\n") == [
        "name   n", "----  --", "a      1", "bbb   22"]
    assert format_table(["x", "yy"], [["abc", "d"]], align="l").split("\n") == ["x    yy", "---  --", "abc  d "]
    assert format_table(["x"], []) == "x\n-"


def test_markdown_and_html_tables():
    assert format_table(["a", "b"], [[1, "x"]], style="markdown") == "| a | b |\n|---|---|\n| 1 | x |"
    assert format_table(["<a>"], [["&"]], style="html") == (
        "<table><thead><tr><th>&lt;a&gt;</th></tr></thead><tbody><tr><td>&amp;</td></tr></tbody></table>")
    with pytest.raises(ValueError):
        format_table(["a"], [], style="latex")


def test_gaze_convention_round_trip_and_binomial_test():
    g = gaze_from_pitch_yaw(np.array([0.3, -0.1]), np.array([-0.2, 0.4]))
    p, y = pitch_yaw_from_gaze(5 * g)
    np.testing.assert_allclose(p, [0.3, -0.1], atol=1e-12)
    np.testing.assert_allclose(y, [-0.2, 0.4], atol=1e-12)
    assert gaze_angles(g[0]) == pytest.approx((0.3, -0.2))
    t = binomial_test(517, 1000)  # the paper's visual Turing test, §3.1
    assert t.p_greater == pytest.approx(0.148, abs=1e-3) and t.ci95[0] < 0.517 < t.ci95[1]
    assert t.p_two_sided == pytest.approx(2 * t.p_greater, rel=0.02)

