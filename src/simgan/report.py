"""Tables and self-contained HTML pages: how every result simgan measures is shown.

:func:`format_table` is the one table formatter (the ``simgan evaluate`` tables, the demos'
console tables, ``simgan ablate``'s markdown, the reports' HTML tables). The rest builds the demos'
``report.html`` pages: one stylesheet, images inlined as data URIs so a page is one file, and the
rows of the measures several pages show (realism, label preservation, artifacts).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Iterable, Sequence

from .files import atomic_write_bytes

STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
         "th{background:#f3f3f3}td:first-child{text-align:left}h2{margin-top:2em}.note{color:#555}")


def format_table(headers: Sequence, rows: Sequence[Sequence], *, style: str = "text", align: str | None = None) -> str:
    """``headers`` and ``rows`` (cells of any type, shown with ``str``) as a table: ``"text"``
    (columns two spaces apart, a rule of dashes under the header; ``align`` gives one ``"l"`` or
    ``"r"`` per column, default the first left and the others right; one letter for all columns),
    ``"markdown"`` (a GitHub pipe table) or ``"html"`` (a ``<table>`` with escaped cells)."""
    if style == "markdown":
        return "\n".join(["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
                         + ["| " + " | ".join(map(str, r)) + " |" for r in rows])
    if style == "html":
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if style != "text":
        raise ValueError(f"unknown table style {style!r}")
    align = align or "l" + "r" * (len(headers) - 1)
    if len(align) == 1:
        align = align * len(headers)
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align))

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]])


def text_table(headers: Sequence, rows: Sequence[Sequence]) -> str:
    """A console table with every column left-aligned (the demos' summaries)."""
    return format_table(headers, rows, align="l")


def table(headers: Sequence, rows: Sequence[Sequence]) -> str:
    """An HTML table."""
    return format_table(headers, rows, style="html")


def img(path: Path, alt: str, width: str = "100%", mime: str = "image/png") -> str:
    """An image (a PNG unless ``mime`` says otherwise) inlined as a data URI (the page stays one file)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{data}" style="max-width:{width}">'


def note(text: str) -> str:
    """A grey explanatory paragraph; ``text`` is HTML."""
    return f"<p class='note'>{text}</p>"


def section(title: str, *parts: str) -> str:
    return "\n".join([f"<h2>{html.escape(title)}</h2>", *parts])


def write_page(path: Path, title: str, heading: str, parts: Iterable[str]) -> Path:
    """``path`` as one HTML page: ``heading`` then ``parts`` (HTML strings, empty ones skipped)."""
    body = [f"<h1>{html.escape(heading)}</h1>", *[p for p in parts if p]]
    page = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
            f"<style>{STYLE}</style></head><body>", *body, "</body></html>"]
    atomic_write_bytes(Path(path), "\n".join(page).encode())
    return Path(path)


def training_section(run: Path, *, grids: int = 4) -> str:
    """The run's loss curves and a few of its sample grids (rows: synthetic, refined, real)."""
    loss_png = Path(run) / "samples" / "loss_curves.png"
    parts = [img(loss_png, "loss curves")] if loss_png.exists() else []
    shots = sorted((Path(run) / "samples").glob("step_*.png"))
    if shots and grids:
        parts.append(note("Samples during training (rows: synthetic, refined, real):"))
        parts += [f"<p>{html.escape(g.stem)}<br>{img(g, g.stem)}</p>" for g in shots[::max(1, len(shots) // grids)]]
    return section("SimGAN training", *parts)


# ----------------------------------------------------------------------------------------------
# rows of the measures several reports show


REALISM_HEADERS = ["images", "two-sample test accuracy", "95% interval", "p (vs 50%)", "kernel distance x1000",
                   "frame (x real)", "looks' spacing (x real)"]
LOOKS_NOTE = ("Frame: how far each image's border band differs from the band inside it, over the real images' "
              "(about 1: no frame). Looks' spacing: the distance from an image's look (mean colour, contrast) to the "
              "nearest other image's, over the real images' (well below 1: a few looks, mode collapse).")
REALISM_NOTE = ("A fresh CNN is trained to tell each set from real images; 50% accuracy means it cannot (the "
                "automated counterpart of the visual Turing test, Table 1). The kernel distance is an unbiased "
                "KID-style estimate on frozen CNN features; 0 means the same distribution. " + LOOKS_NOTE)


def realism_rows(realism: dict) -> list[list]:
    """One row per candidate set of :func:`simgan.evaluation.evaluate_realism`'s result."""
    rows = []
    for name, r in realism.get("results", {}).items():
        c, k = r.get("c2st") or {}, r.get("kid") or {}
        ci = c.get("ci95")
        looks = r.get("looks") or {}
        rows.append([name, f"{100 * c['accuracy']:.1f}%" if c else "",
                     f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%" if ci else "",
                     f"{c['p_value']:.2g}" if c.get("p_value") is not None else "",
                     f"{1000 * k['kid']:.2f} +- {1000 * k['kid_se']:.2f}" if k else "",
                     f"{looks['frame_ratio']:.2f}" if looks else "", f"{looks['neighbour_ratio']:.2f}" if looks else ""])
    return rows


ARTIFACT_NOTE = ("On the residual refined - synthetic. Periodic ratio: power at D's stride frequencies over the mean "
                 "power (about 1: no grid). Border ratio: mean |residual| in the 2-px border over the inside "
                 "(about 1: no frame).")


def artifact_rows(a: dict) -> list[list]:
    """The rows of :func:`simgan.evaluation.artifacts.artifact_measures`'s result."""
    if not a:
        return []
    return [["periodic ratio at D's stride frequencies", f"{a['periodic_ratio']:.2f} (stride {a['stride']} px)"],
            ["border ratio (2-px band / inside)", f"{a['border_ratio']:.2f}"],
            ["mean |refined - synthetic| in [-1, 1]", f"{a['mean_abs_residual']:.4f}"],
            ["image pairs", a["n"]]]
