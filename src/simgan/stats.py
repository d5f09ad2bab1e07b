"""The binomial test against chance, shared by the visual Turing test and its automated stand-in.

§3.1 (Table 1) reports the human subjects' accuracy at telling real from refined images with a
binomial test against 50%: 517 of 1000 correct, p = 0.148 (chance), against 162 of 200,
p ≤ 1e-8, for real vs synthetic. :mod:`simgan.turing.report` computes the same for the stored
answers of ``simgan turing serve``; :mod:`simgan.evaluation.realism` for the held-out answers of
the classifier two-sample test. One function, :func:`binomial_test`, serves both (scipy's
``binomtest``). The module needs no torch, so the Turing page stays light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BinomialTest:
    """``correct`` of ``trials`` against chance (p = 0.5)."""

    correct: int
    trials: int
    p_two_sided: float
    p_greater: float  # one-sided, H1: better than chance (the paper's p = 0.148 is this one)
    ci95: tuple[float, float]  # exact (Clopper–Pearson) 95% interval of the accuracy

    @property
    def accuracy(self) -> float:
        return self.correct / self.trials


def binomial_test(correct: int, trials: int) -> BinomialTest:
    """Two-sided and one-sided binomial p-values against 50% and the exact 95% interval (``trials > 0``)."""
    from scipy.stats import binomtest

    test = binomtest(int(correct), int(trials), 0.5)
    ci = test.proportion_ci(confidence_level=0.95, method="exact")
    return BinomialTest(int(correct), int(trials), float(test.pvalue),
                        float(binomtest(int(correct), int(trials), 0.5, alternative="greater").pvalue),
                        (float(ci.low), float(ci.high)))


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> list[float]:
    """95% Wilson score interval of a proportion (NaN without trials)."""
    if trials <= 0:
        return [float("nan"), float("nan")]
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]
