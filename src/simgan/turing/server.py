"""The visual Turing test's web app (§3.1): a Flask app over :mod:`simgan.turing.store`.

Pages:

- ``GET /`` — what the study is, a name field and a *Start* button (and *Continue* when the
  browser's cookie names an unfinished session);
- ``POST /start`` — starts a session and redirects to ``/s/<session>`` (also sets a cookie);
- ``GET /s/<session>`` — the test: one large image at a time, upscaled without smoothing, with
  *Real* (key R) and *Not real* (key F), progress ``k of 2N``, and the session's 20 + 20 labelled
  examples beside it, as in the paper;
- ``GET /results`` — Table 1, accuracy per subject and overall, binomial p-values.

JSON API (every error, here and on the image route, is JSON ``{"error": message}``):

- ``POST /api/sessions`` ``{"subject": name}`` → 201 with the new session's state;
- ``GET /api/session/<session>`` → progress, the current image id, the next ids to preload;
- ``POST /api/session/<session>/answer`` ``{"image": id, "answer": "real"|"refined", "ms": t}``
  → the new state; 404 unknown session, 400 image not of the session or malformed body, 409 second
  answer or answer out of order;
- ``GET /api/results`` → the report as JSON;
- ``GET /img/<id>`` → the PNG of one image of the two folders, by its opaque id only: anything that
  looks like a path is 400, an unknown id 404, and a file that resolves outside its folder (a
  symlink) 403. Images in other formats are converted to PNG on the fly.
"""

from __future__ import annotations

import io
import logging
import random
import signal
import socket
import sqlite3
import sys
import threading
from functools import lru_cache
from pathlib import Path

from flask import Flask, g, jsonify, make_response, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from ..errors import SimganError
from . import report as report_mod
from . import store
from .store import TuringError

log = logging.getLogger("simgan.turing")

COOKIE = "simgan_turing_session"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _list_images(folder: str | Path, what: str) -> list[str]:
    """The images of a folder (relative paths), leaving out symlinks that lead outside it: only
    files inside the two given folders are ever served."""
    from ..datasets import ImageFolder
    root = Path(folder).resolve()
    files, outside = [], []
    for rec in ImageFolder.open(folder, what=what).records:
        (files if (root / rec.file).resolve().is_relative_to(root) else outside).append(rec.file)
    if outside:
        log.warning("%s folder %s: %d image(s) are links to files outside it and are left out (e.g. %s)",
                    what, folder, len(outside), outside[0])
    return files


def create_app(real_dir: str | Path, refined_dir: str | Path, db_path: str | Path, n: int = 50,
               examples: int = 20, seed: int | None = None) -> Flask:
    """The app for one study: ``n`` real + ``n`` refined (or synthetic) images per subject, with
    ``examples`` labelled images of each kind on screen (the paper: 50 and 20, §3.1).

    Checks the folders (each needs ``n + examples`` images) and the database up front and raises a
    :class:`SimganError` naming the problem. ``seed`` makes the random draws repeatable (tests);
    session ids are always random.
    """
    study, roots = _open_study(real_dir, refined_dir, db_path, n, examples)
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=16 * 1024)
    app.json.sort_keys = False
    # '/img//etc/passwd' must reach the image check (400), not be redirected to a merged path.
    app.url_map.merge_slashes = False
    ctx = _StudyContext(study, str(db_path), roots, seed)
    # For the CLI and tests: the study, and the pool to close when the server stops.
    app.extensions["simgan_turing"] = {"study": study, "db": str(db_path), "roots": roots, "pool": ctx.pool}

    @app.teardown_appcontext
    def _release_db(exc):
        conn = g.pop("turing_db", None)
        if conn is not None:
            ctx.pool.put(conn)

    _add_error_handlers(app, study)
    _add_pages(app, ctx)
    _add_api(app, ctx)
    _add_images(app, ctx)
    return app


def _open_study(real_dir, refined_dir, db_path, n: int, examples: int):
    """Check the settings and both folders, and create (or reopen) the study in the database."""
    if n < 1:
        raise SimganError(f"--n must be at least 1, got {n}")
    if examples < 0:
        raise SimganError(f"--examples must be at least 0, got {examples}")
    real_root = Path(real_dir)
    refined_root = Path(refined_dir)
    if real_root.exists() and real_root.resolve() == refined_root.resolve():
        raise SimganError(f"--real and --refined are the same folder ({real_root}); they must differ")
    real_files = _list_images(real_root, "real")
    refined_files = _list_images(refined_root, "refined")
    need = n + examples
    for what, root, files in (("real", real_root, real_files), ("refined", refined_root, refined_files)):
        if len(files) < need:
            raise SimganError(f"the {what} folder {root} has {len(files)} images; --n {n} with {examples} "
                              f"examples needs at least {need} ({n} to judge + {examples} examples)")
    conn = store.connect(db_path)
    try:
        study = store.ensure_study(conn, real_root, refined_root, n, examples, real_files, refined_files)
    finally:
        conn.close()
    return study, {"real": real_root.resolve(), "refined": refined_root.resolve()}


class _StudyContext:
    """What the request handlers of one app share: the study, its database connections, the
    random source of sessions and the writers' lock."""

    def __init__(self, study, db_path: str, roots: dict, seed: int | None):
        self.study = study
        self.roots = roots
        self.pool = _ConnectionPool(db_path)
        self.rng = random.Random(seed) if seed is not None else random.SystemRandom()
        self.rng_lock = threading.Lock()
        # One writer at a time inside this process: SQLite serialises writers anyway, but queueing on a
        # lock is fairer and quicker than SQLite's sleep-and-retry busy handler under many subjects.
        self.write_lock = threading.Lock()

    def db(self) -> sqlite3.Connection:
        """This request's connection (returned to the pool when the request ends)."""
        if "turing_db" not in g:
            g.turing_db = self.pool.get()
        return g.turing_db

    def new_session(self, subject: object) -> str:
        with self.rng_lock:
            session_rng = random.Random(self.rng.getrandbits(64))
        with self.write_lock:
            return store.create_session(self.db(), self.study, store.clean_subject(subject), session_rng)


def _with_cookie(resp, sid: str):
    resp.set_cookie(COOKIE, sid, max_age=30 * 24 * 3600, httponly=True, samesite="Lax")
    return resp


def _add_error_handlers(app: Flask, study) -> None:
    """Every error is JSON ``{"error": message}``, or an HTML page for a person's navigation; and
    the security headers on every response."""

    def _error(status: int, message: str):
        if _wants_html():
            return render_template("error.html", status=status, message=message, study=study), status
        return jsonify(error=message, status=status), status

    def _wants_html() -> bool:
        # Pages a person navigates to get an HTML error; the API and images always get JSON.
        if request.path.startswith(("/api/", "/img/", "/static/")):
            return False
        best = request.accept_mimetypes.best_match(["application/json", "text/html"])
        return best == "text/html"

    @app.errorhandler(TuringError)
    def _turing_error(exc: TuringError):
        return _error(exc.status, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(SimganError)
    def _simgan_error(exc: SimganError):  # e.g. the database file was removed under the server
        return _error(500, str(exc))

    @app.errorhandler(Exception)
    def _internal_error(exc: Exception):
        app.logger.exception("unhandled error")
        return _error(500, f"internal error: {type(exc).__name__}")

    @app.after_request
    def _headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'")
        if request.path.startswith("/api/"):
            resp.headers["Cache-Control"] = "no-store"
        return resp


def _add_pages(app: Flask, ctx: _StudyContext) -> None:
    """The pages a subject sees: the start page, the test, the results (Table 1)."""
    study = ctx.study

    @app.get("/")
    def index():
        open_session = store.find_open_session(ctx.db(), study, request.cookies.get(COOKIE))
        return render_template("index.html", study=study, open_session=open_session)

    @app.post("/start")
    def start():
        sid = ctx.new_session(request.form.get("subject", ""))
        return _with_cookie(redirect(url_for("session_page", sid=sid), code=303), sid)

    @app.get("/s/<sid>")
    def session_page(sid: str):
        state = store.session_state(ctx.db(), study, sid, examples=True)
        resp = make_response(render_template("session.html", study=study, state=state))
        resp.headers["Cache-Control"] = "no-store"
        return _with_cookie(resp, sid)

    @app.get("/results")
    def results_page():
        rep = report_mod.study_report(ctx.db(), study)
        return render_template("results.html", study=study, r=rep, labels=report_mod.KIND_LABEL,
                               kinds=store.KINDS, fmt_p=report_mod.fmt_p, fmt_pct=report_mod.fmt_pct)


def _add_api(app: Flask, ctx: _StudyContext) -> None:
    """The JSON API the test page calls (see the module docstring)."""
    study = ctx.study

    @app.post("/api/sessions")
    def api_new_session():
        body = request.get_json(silent=True) if request.data else {}
        if not isinstance(body, dict):
            raise store.BadRequest("the request body must be a JSON object, e.g. {\"subject\": \"Ann\"}")
        sid = ctx.new_session(body.get("subject", ""))
        state = store.session_state(ctx.db(), study, sid, examples=True)
        state["url"] = url_for("session_page", sid=sid)
        return _with_cookie(make_response(jsonify(state), 201), sid)

    @app.get("/api/session/<sid>")
    def api_session(sid: str):
        return jsonify(store.session_state(ctx.db(), study, sid, examples=True))

    @app.post("/api/session/<sid>/answer")
    def api_answer(sid: str):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise store.BadRequest("the request body must be a JSON object")
        with ctx.write_lock:
            store.store_answer(ctx.db(), study, sid, body.get("image"), body.get("answer"), body.get("ms"))
        return jsonify(store.session_state(ctx.db(), study, sid))

    @app.get("/api/results")
    def api_results():
        return jsonify(report_mod.study_report(ctx.db(), study).to_dict(redact_sessions=True))

    @app.get("/healthz")
    def healthz():
        return jsonify(ok=True, study=study.id)


def _add_images(app: Flask, ctx: _StudyContext) -> None:
    """``/img/<id>``: an image of the two folders by its opaque id only."""

    @app.before_request
    def _image_ids_only():
        # Checked before routing so that every path-like request ('../x', '//etc/passwd',
        # '%2e%2e%2f…', decoded by now) gets the same clear 400, not a routing 404 or redirect.
        if request.path.startswith("/img/"):
            store.check_token(request.path[len("/img/"):], "image")

    @app.get("/img/<image_id>")
    def image(image_id: str):
        kind, rel = store.lookup_image(ctx.db(), ctx.study, image_id)
        root = ctx.roots[kind]
        try:
            path = (root / rel).resolve(strict=True)
        except (FileNotFoundError, RuntimeError):
            raise store.NotFound(f"image {image_id!r} is no longer in the {kind} folder") from None
        if not path.is_relative_to(root) or not path.is_file():
            raise store.Forbidden(f"image {image_id!r} resolves outside the {kind} folder; it is not served")
        st = path.stat()
        data = _png_bytes(str(path), st.st_mtime_ns, st.st_size)
        resp = make_response(data)
        resp.headers["Content-Type"] = "image/png"
        resp.headers["Cache-Control"] = "private, max-age=600"
        return resp


class _ConnectionPool:
    """Open SQLite connections reused across requests (each request holds one at a time).

    Opening a connection per request would be correct but slow: besides the open itself, whenever
    the last connection to a WAL database closes, SQLite checkpoints and deletes the WAL file, so
    under load the database would be checkpointed over and over.
    """

    def __init__(self, db_path: str, keep: int = 32):
        self.db_path = db_path
        self.keep = keep
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return store.connect(self.db_path, create=False)

    def put(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:  # an error mid-transaction: do not hand a half-done one on
            conn.rollback()
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


@lru_cache(maxsize=512)
def _png_bytes(path: str, mtime_ns: int, size: int) -> bytes:
    """The file's bytes if it is a PNG, else the image converted to PNG (cached by path, mtime, size)."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data.startswith(PNG_MAGIC):
        return data
    from PIL import Image

    from ..datasets import decode_image
    try:
        arr = decode_image(path)
    except SimganError as exc:
        raise store.NotFound(str(exc)) from None
    if arr.shape[2] == 1:
        im = Image.fromarray(arr[:, :, 0].astype("<u2"), mode="I;16") if arr.dtype.itemsize == 2 \
            else Image.fromarray(arr[:, :, 0], mode="L")
    else:
        im = Image.fromarray(arr, mode="RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def make_server(app: Flask, host: str = "127.0.0.1", port: int = 0):
    """A threaded WSGI server (Werkzeug's, one thread per request) for ``app``.

    ``port=0`` picks a free port; the server's ``port`` attribute says which. Call
    ``serve_forever()`` (in a thread if need be) and ``shutdown()`` to stop it.
    """
    from werkzeug.serving import make_server as _make_server, select_address_family

    # Bind here rather than in Werkzeug, which prints its own message and exits on failure.
    family = select_address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise SimganError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        return _make_server(host, port, app, threaded=True, fd=sock.fileno())
    finally:
        sock.close()  # the server holds its own duplicate of the socket


def serve_study(real_dir: str | Path, refined_dir: str | Path, db_path: str | Path, *, n: int = 50,
                examples: int = 20, host: str = "127.0.0.1", port: int = 8765, seed: int | None = None,
                log_requests: bool = False, echo=print) -> None:
    """``simgan turing serve``: serve the study's page until Ctrl-C or SIGTERM.

    A database this call created for a server that never started is removed again; the folders
    and an existing database are never touched beyond the study's own rows."""
    from ..paths import check_no_overlap

    db_path = Path(db_path)
    check_no_overlap({"--real": real_dir, "--refined": refined_dir}, {"--db": db_path}, partial=False)
    new_db = not db_path.exists()
    try:
        app = create_app(real_dir, refined_dir, db_path, n=n, examples=examples, seed=seed)
        study = app.extensions["simgan_turing"]["study"]
        logging.getLogger("werkzeug").setLevel(logging.INFO if log_requests else logging.WARNING)
        try:
            server = make_server(app, host, port)
        except BaseException:
            app.extensions["simgan_turing"]["pool"].close()
            raise
    except BaseException:
        if new_db:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(db_path) + suffix).unlink(missing_ok=True)
        raise
    shown_host = f"[{host}]" if ":" in host else host
    echo(f"Visual Turing test, study {study.id}: {n} real + {n} not-real images per subject, "
         f"{examples} + {examples} examples on screen.")
    echo(f"  real:     {study.real_dir}\n  not real: {study.refined_dir}\n  answers:  {db_path.resolve()}")
    echo(f"Open http://{shown_host}:{server.port}/  (results: /results; stop with Ctrl-C)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"Note: listening on {host}: other machines that can reach it can open the page.", file=sys.stderr)
    try:
        _serve_until_signal(server)
    finally:
        app.extensions["simgan_turing"]["pool"].close()
    echo(f"Stopped. All answers are in {db_path}; see them with `simgan turing report --db {db_path}`.")


def _serve_until_signal(server) -> None:
    """Serve until SIGINT/SIGTERM. The handlers only set a flag; the serving loop checks it between
    polls (at most 0.5 s) and stops there. Raising KeyboardInterrupt from the handler instead can
    land while the loop holds one of its own locks, and the server then hangs in its own shutdown."""
    stop = []

    def _stop(signum, frame):
        stop.append(signum)

    def _check_stop():
        if stop:
            raise KeyboardInterrupt  # raised at a known point of the loop; Werkzeug's loop ends on it

    server.service_actions = _check_stop  # socketserver calls it once per poll
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        for s, handler in previous.items():
            signal.signal(s, handler)
