"""``simgan turing``: the visual Turing test of §3.1 as a local web page, and its Table 1 report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import SimganError

DEFAULT_DB = "turing.sqlite3"


@click.group()
def turing():
    """The visual Turing test (§3.1, Table 1) as a local web page.

    `serve` shows subjects N real and N refined images one at a time (the paper: 50 each, with 20
    labelled examples of each kind on screen) and stores every answer in a SQLite file; `report`
    prints Table 1's confusion matrix, accuracy per subject and overall, and the binomial p-value
    against chance. Point --refined at raw synthetic images to run the paper's synthetic-vs-real
    comparison instead: the page calls the second kind "not real" either way.
    """


@turing.command(short_help="Serve the test page; every answer is saved as it is given.")
@click.option("--real", "real_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of real images (a bare folder of images or an interchange dataset).")
@click.option("--refined", "refined_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of refined images, or of synthetic images for the synthetic-vs-real study.")
@click.option("--n", "n", type=click.IntRange(min=1), default=50, show_default=True,
              help="Images of each kind a subject judges (2N in all).")
@click.option("--examples", type=click.IntRange(min=0), default=20, show_default=True,
              help="Labelled examples of each kind kept on screen (never among the session's test images).")
@click.option("--db", "db_path", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True,
              help="SQLite file that stores sessions and answers (created if missing, reused to resume).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The default is reachable from this machine only.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--seed", type=int, default=None, help="Make the random draws of images repeatable.")
@click.option("--log-requests", is_flag=True, help="Log every HTTP request on stderr.")
def serve(real_dir, refined_dir, n, examples, db_path, host, port, seed, log_requests):
    """Serve the test page until Ctrl-C; every answer is saved as it is given.

    Each folder needs at least N + EXAMPLES images. Restarting with the same folders, --n,
    --examples and --db continues the same study: unfinished sessions resume where they stopped.
    """
    from ..turing.server import serve_study

    serve_study(real_dir, refined_dir, db_path, n=n, examples=examples, host=host, port=port, seed=seed,
                log_requests=log_requests, echo=click.echo)


@turing.command(short_help="Print Table 1, accuracy per subject and overall, and p-values.")
@click.option("--db", "db_path", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True,
              help="The SQLite file written by `simgan turing serve`.")
@click.option("--study", "study_id", type=int, default=None, help="Report one study only (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def report(db_path, study_id, as_json):
    """Print Table 1 (ground truth × selected), accuracy per subject and overall, and p-values.

    The p-value is the two-sided binomial test against chance (scipy.stats.binomtest); the
    one-sided value, the kind the paper quotes (p = 0.148 for 517 of 1000), is shown beside it.
    """
    from ..turing import store
    from ..turing.report import build_report, format_text

    conn = store.connect(db_path, create=False)
    try:
        try:
            reports = build_report(conn, study_id)
        except store.NotFound:
            raise SimganError(f"no study {study_id} in {db_path}") from None
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        click.echo(format_text(reports))
