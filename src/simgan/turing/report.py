"""Table 1 of the paper from the stored answers, and the binomial test against chance.

Table 1 is a confusion matrix — ground truth real / refined × selected as real / refined — summed
over all subjects; §3.1 reports it with the overall accuracy (517 of 1000 correct, 51.7%, chance
50%) and a binomial p-value. Here the "refined" kind is called *not real*, because the same study
runs with raw synthetic images in its place (the paper's comparison: 162 of 200 correct).

The p-value is ``scipy.stats.binomtest(correct, trials, 0.5)``, two-sided. The one-sided value
(subjects better than chance) is reported beside it, because that is the one the paper quotes:
for 517 of 1000 the two-sided p is 0.297 and the one-sided p is 0.148, the paper's figure.

Used by both the results page and ``simgan turing report``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Iterable

from ..stats import binomial_test
from . import store
from .store import KINDS, Study

#: How each kind is named in tables and on the page.
KIND_LABEL = {"real": "real", "refined": "not real"}


@dataclass
class Binomial:
    """``correct`` of ``trials`` against chance (p = 0.5); the p-values are ``None`` with no trials."""

    correct: int
    trials: int
    p_two_sided: float | None
    p_greater: float | None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.trials if self.trials else None


def binomial(correct: int, trials: int) -> Binomial:
    """Two-sided and one-sided ('better than chance') tests of :func:`simgan.stats.binomial_test`."""
    if trials == 0:
        return Binomial(0, 0, None, None)
    t = binomial_test(correct, trials)
    return Binomial(correct, trials, t.p_two_sided, t.p_greater)


def confusion_matrix(pairs: Iterable[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """``matrix[truth][selected]`` counts from ``(truth, selected)`` pairs (Table 1's layout)."""
    matrix = {t: {a: 0 for a in KINDS} for t in KINDS}
    for truth, answer in pairs:
        matrix[truth][answer] += 1
    return matrix


@dataclass
class SubjectResult:
    session: str
    subject: str
    started_at: str
    finished_at: str | None
    total: int
    answered: int
    test: Binomial


@dataclass
class StudyReport:
    study: Study
    matrix: dict[str, dict[str, int]]
    overall: Binomial
    subjects: list[SubjectResult] = field(default_factory=list)

    @property
    def finished_sessions(self) -> int:
        return sum(s.finished_at is not None for s in self.subjects)

    def to_dict(self, *, redact_sessions: bool = False) -> dict:
        """JSON-ready report. ``redact_sessions`` keeps only the first 6 characters of each session
        id (the id is what lets a browser answer in a session, so the web page never lists it whole).
        """
        d = {
            "study": asdict(self.study),
            "labels": KIND_LABEL,
            "matrix": self.matrix,
            "overall": {**asdict(self.overall), "accuracy": self.overall.accuracy},
            "sessions": len(self.subjects),
            "finished_sessions": self.finished_sessions,
            "subjects": [],
        }
        for s in self.subjects:
            row = asdict(s)
            row["test"]["accuracy"] = s.test.accuracy
            if redact_sessions:
                row["session"] = s.session[:6] + "…"
            d["subjects"].append(row)
        return d


def study_report(conn: sqlite3.Connection, study: Study) -> StudyReport:
    """Table 1, overall accuracy and per-subject accuracy of one study.

    Every stored answer counts, including those of sessions not finished yet (each answer is a
    valid trial); the per-subject rows say how far each session got.
    """
    trials = store.study_trials(conn, study.id)
    matrix = confusion_matrix((t["truth"], t["answer"]) for t in trials)
    correct = sum(matrix[k][k] for k in KINDS)
    subjects = [SubjectResult(r["session"], r["subject"], r["started_at"], r["finished_at"], r["total"],
                              r["answered"], binomial(int(r["correct"] or 0), r["answered"]))
                for r in store.study_sessions(conn, study.id)]
    return StudyReport(study, matrix, binomial(correct, len(trials)), subjects)


def build_report(conn: sqlite3.Connection, study_id: int | None = None) -> list[StudyReport]:
    """Reports of every study in the database (or of one)."""
    studies = [store.get_study(conn, study_id)] if study_id is not None else store.list_studies(conn)
    return [study_report(conn, s) for s in studies]


# ----------------------------------------------------------------------------------------------
# text


def fmt_p(p: float | None) -> str:
    if p is None:
        return "-"
    if p == 0.0:
        return "< 1e-300"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.2e}"


def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def format_study(r: StudyReport) -> str:
    """One study as text: folders, Table 1, overall accuracy with p-values, then one row per subject."""
    s, m, o = r.study, r.matrix, r.overall
    lines = [
        f"Visual Turing test (§3.1, Table 1) — study {s.id}, started {s.created_at}",
        f"  real images:      {s.real_dir}",
        f"  not-real images:  {s.refined_dir}  (refined or synthetic)",
        f"  per session:      {s.n} real + {s.n} not real to judge, "
        f"{s.examples} + {s.examples} labelled examples on screen",
        f"  sessions:         {len(r.subjects)} ({r.finished_sessions} finished)",
        "",
        f"  {'':<24}{'Selected as real':>18}{'Selected as not real':>24}",
    ]
    for truth in KINDS:
        lines.append(f"  {'Ground truth ' + KIND_LABEL[truth]:<24}{m[truth]['real']:>18}{m[truth]['refined']:>24}")
    lines.append("")
    if o.trials:
        lines.append(f"  Overall: {o.correct} of {o.trials} correct = {fmt_pct(o.accuracy)} (chance = 50%)")
        lines.append(f"  Binomial test against chance: p = {fmt_p(o.p_two_sided)} (two-sided); "
                     f"p = {fmt_p(o.p_greater)} (one-sided, better than chance, as the paper's p = 0.148)")
    else:
        lines.append("  No answers yet.")
    if r.subjects:
        lines += ["", f"  {'subject':<20} {'session':<17} {'answered':>9} {'correct':>8} {'accuracy':>9} "
                      f"{'p (two-sided)':>14}"]
        for sub in r.subjects:
            name = (sub.subject or "(anonymous)")[:20]
            answered = f"{sub.answered}/{sub.total}"
            lines.append(f"  {name:<20} {sub.session:<17} {answered:>9} {sub.test.correct:>8} "
                         f"{fmt_pct(sub.test.accuracy):>9} {fmt_p(sub.test.p_two_sided):>14}")
    return "\n".join(lines)


def format_text(reports: list[StudyReport]) -> str:
    if not reports:
        return "No study in this database yet (start one with `simgan turing serve`)."
    return "\n\n".join(format_study(r) for r in reports)
