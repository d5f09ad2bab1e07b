"""The one table formatter: every table simgan prints or writes (results of ``simgan evaluate``,
the demo and ablation reports) goes through :func:`format_table`.

Three renderings of the same ``headers`` + ``rows``:

- ``"text"``: columns two spaces apart, padded to their widest cell, a rule of dashes under the
  header; ``align`` gives one ``"l"`` or ``"r"`` per column (default: the first column left, the
  others right, as for names followed by numbers; one letter for all columns);
- ``"markdown"``: a GitHub pipe table (``OUT/table.md`` of ``simgan ablate``);
- ``"html"``: a ``<table>`` with escaped cells (the demo reports).
"""

from __future__ import annotations

import html
from typing import Sequence


def format_table(headers: Sequence, rows: Sequence[Sequence], *, style: str = "text", align: str | None = None) -> str:
    """``headers`` and ``rows`` (cells of any type, shown with ``str``) as a text, markdown or HTML table."""
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
