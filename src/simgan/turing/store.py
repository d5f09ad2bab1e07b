"""The visual Turing test's database (§3.1): studies, images, sessions and answers in SQLite.

Everything a subject does is stored the moment it happens, so that stopping the server loses
nothing and a subject who reloads the page continues at the image they were on:

- a **study** is one pair of folders (real, and refined or synthetic) with the numbers of test
  images and examples per kind; the folders are recorded so that a report can name them;
- every image of the two folders gets an **opaque random id** in ``images``; the web page only ever
  asks for images by that id (never by path), and the id says nothing about the image's kind;
- starting a **session** draws, for each kind, ``examples`` images to stay on screen labelled and
  ``n`` other images to be judged, shuffles the ``2n`` test images and stores that order in
  ``trials`` before the first image is shown;
- each **answer** is one ``BEGIN IMMEDIATE … COMMIT`` transaction that checks the session, the
  image and the order, and fills in one ``trials`` row.

The database runs in WAL mode with ``synchronous=FULL``: a committed answer survives the server
being killed. All functions here take a :class:`sqlite3.Connection` from :func:`connect` and know
nothing of HTTP; invalid requests raise a :class:`TuringError` carrying the HTTP status the web
layer should answer with.
"""

from __future__ import annotations

import random
import re
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ..errors import SimganError

SCHEMA_VERSION = 1
KINDS = ("real", "refined")
ANSWERS = KINDS
MAX_SUBJECT_LENGTH = 100
#: Opaque ids (images and sessions) are URL-safe base64 tokens; anything else is rejected early.
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS studies (
    id          INTEGER PRIMARY KEY,
    real_dir    TEXT NOT NULL,          -- absolute path of the real images
    refined_dir TEXT NOT NULL,          -- absolute path of the refined (or synthetic) images
    n           INTEGER NOT NULL,       -- test images of each kind per session (paper: 50)
    examples    INTEGER NOT NULL,       -- labelled examples of each kind on screen (paper: 20)
    created_at  TEXT NOT NULL,
    UNIQUE (real_dir, refined_dir, n, examples)
);
CREATE TABLE IF NOT EXISTS images (
    id       TEXT PRIMARY KEY,          -- opaque random token, the only name the web page sees
    study_id INTEGER NOT NULL REFERENCES studies(id),
    kind     TEXT NOT NULL CHECK (kind IN ('real', 'refined')),
    file     TEXT NOT NULL,             -- path relative to the study's folder of that kind
    present  INTEGER NOT NULL DEFAULT 1,-- 0 once the file is no longer in the folder
    UNIQUE (study_id, kind, file)
);
CREATE TABLE IF NOT EXISTS sessions (
    id          TEXT PRIMARY KEY,       -- unguessable token, in the page URL and a cookie
    study_id    INTEGER NOT NULL REFERENCES studies(id),
    subject     TEXT NOT NULL DEFAULT '',
    started_at  TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS examples (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    kind       TEXT NOT NULL CHECK (kind IN ('real', 'refined')),
    position   INTEGER NOT NULL,
    image_id   TEXT NOT NULL REFERENCES images(id),
    PRIMARY KEY (session_id, kind, position)
);
CREATE TABLE IF NOT EXISTS trials (
    session_id  TEXT NOT NULL REFERENCES sessions(id),
    position    INTEGER NOT NULL,       -- 0-based place in the session's random order
    image_id    TEXT NOT NULL REFERENCES images(id),
    truth       TEXT NOT NULL CHECK (truth IN ('real', 'refined')),
    answer      TEXT CHECK (answer IN ('real', 'refined')),
    answered_at TEXT,
    response_ms INTEGER,                -- time from the image appearing to the answer, if sent
    PRIMARY KEY (session_id, position),
    UNIQUE (session_id, image_id)
);
CREATE INDEX IF NOT EXISTS sessions_by_study ON sessions (study_id);
"""


# ----------------------------------------------------------------------------------------------
# errors the web layer turns into HTTP statuses


class TuringError(Exception):
    """A request the study cannot accept; ``status`` is the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(TuringError):
    status = 400


class Forbidden(TuringError):
    status = 403


class NotFound(TuringError):
    status = 404


class Conflict(TuringError):
    status = 409


# ----------------------------------------------------------------------------------------------
# connections


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def connect(db_path: str | Path, *, create: bool = True, timeout: float = 30.0) -> sqlite3.Connection:
    """Open the study database (WAL mode, ``synchronous=FULL``, autocommit + explicit transactions).

    With ``create=False`` the file must already exist and be a study database (the report never
    creates one). Anything that is not a usable SQLite file raises a :class:`SimganError`.
    """
    path = Path(db_path)
    if path.is_dir():
        raise SimganError(f"database {path} is a folder, not a file")
    if not create and not path.is_file():
        raise SimganError(f"database not found: {path}")
    if create and not path.parent.is_dir():
        raise SimganError(f"cannot create database {path}: folder {path.parent} does not exist")
    try:
        conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise SimganError(f"cannot open database {path}: {exc}") from None
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        if create:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise SimganError(f"database {path}: cannot switch to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        if create:
            init_db(conn)
        else:
            check_db(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise SimganError(f"cannot use database {path}: {exc}") from None
    except SimganError:
        conn.close()
        raise
    return conn


def init_db(conn: sqlite3.Connection) -> None:
    """Create the tables if missing; refuse a database written by a newer schema."""
    with transaction(conn):
        for stmt in _statements(SCHEMA):
            conn.execute(stmt)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise SimganError(f"database schema version {row[0]} is newer than this simgan understands "
                              f"({SCHEMA_VERSION}); upgrade simgan")


def check_db(conn: sqlite3.Connection, path: Path) -> None:
    """Check that an existing file is a study database (used read-only by the report)."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = {"meta", "studies", "images", "sessions", "trials"} - names
    if missing:
        raise SimganError(f"{path} is not a simgan turing database (no table {sorted(missing)[0]!r})")


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


class transaction:
    """``with transaction(conn):`` — ``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error).

    ``IMMEDIATE`` takes the write lock at the start, so two answers to the same image cannot both
    pass the "not answered yet" check.
    """

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
        return False


# ----------------------------------------------------------------------------------------------
# studies and the image index


@dataclass(frozen=True)
class Study:
    id: int
    real_dir: str
    refined_dir: str
    n: int
    examples: int
    created_at: str


def _study(row: sqlite3.Row) -> Study:
    return Study(row["id"], row["real_dir"], row["refined_dir"], row["n"], row["examples"], row["created_at"])


def ensure_study(conn: sqlite3.Connection, real_dir: str | Path, refined_dir: str | Path, n: int,
                 examples: int, real_files: Sequence[str], refined_files: Sequence[str]) -> Study:
    """Find or create the study for these folders and settings, and index their images.

    Images new to the folders get fresh opaque ids; images that disappeared are marked absent (their
    past answers stay). Folders are recorded as absolute paths.
    """
    real_dir = str(Path(real_dir).resolve())
    refined_dir = str(Path(refined_dir).resolve())
    with transaction(conn):
        row = conn.execute("SELECT * FROM studies WHERE real_dir = ? AND refined_dir = ? AND n = ? AND examples = ?",
                           (real_dir, refined_dir, n, examples)).fetchone()
        if row is None:
            cur = conn.execute("INSERT INTO studies (real_dir, refined_dir, n, examples, created_at) "
                               "VALUES (?, ?, ?, ?, ?)", (real_dir, refined_dir, n, examples, _now()))
            row = conn.execute("SELECT * FROM studies WHERE id = ?", (cur.lastrowid,)).fetchone()
        study = _study(row)
        for kind, files in (("real", real_files), ("refined", refined_files)):
            known = {r["file"]: r["present"] for r in
                     conn.execute("SELECT file, present FROM images WHERE study_id = ? AND kind = ?", (study.id, kind))}
            wanted = set(files)
            for f in files:
                if f not in known:
                    conn.execute("INSERT INTO images (id, study_id, kind, file) VALUES (?, ?, ?, ?)",
                                 (new_token(), study.id, kind, f))
                elif not known[f]:
                    conn.execute("UPDATE images SET present = 1 WHERE study_id = ? AND kind = ? AND file = ?",
                                 (study.id, kind, f))
            for f, present in known.items():
                if present and f not in wanted:
                    conn.execute("UPDATE images SET present = 0 WHERE study_id = ? AND kind = ? AND file = ?",
                                 (study.id, kind, f))
    return study


def get_study(conn: sqlite3.Connection, study_id: int) -> Study:
    row = conn.execute("SELECT * FROM studies WHERE id = ?", (study_id,)).fetchone()
    if row is None:
        raise NotFound(f"unknown study {study_id}")
    return _study(row)


def list_studies(conn: sqlite3.Connection) -> list[Study]:
    return [_study(r) for r in conn.execute("SELECT * FROM studies ORDER BY id")]


def new_token() -> str:
    """A random URL-safe id (96 bits); it carries no information about what it names."""
    return secrets.token_urlsafe(12)


def check_token(value: object, what: str) -> str:
    """``value`` if it is a well-formed opaque id, else a 400 (paths, ``..`` and the like)."""
    if not isinstance(value, str) or not TOKEN_RE.match(value):
        raise BadRequest(f"{what}s are named by their opaque id (8 to 64 letters, digits, '-' or '_'), "
                         "never by a file path")
    return value


def lookup_image(conn: sqlite3.Connection, study: Study, image_id: object) -> tuple[str, str]:
    """``(kind, relative file)`` of an image of ``study`` by its opaque id.

    Anything that is not a well-formed id (a path, ``..``, an absolute path) is a 400; an id that is
    not an image of this study is a 404. The caller still checks the file stays inside the folder.
    """
    check_token(image_id, "image")
    row = conn.execute("SELECT kind, file FROM images WHERE id = ? AND study_id = ?",
                       (image_id, study.id)).fetchone()
    if row is None:
        raise NotFound(f"no image with id {image_id!r} in this study")
    return row["kind"], row["file"]


# ----------------------------------------------------------------------------------------------
# sessions


def clean_subject(name: object) -> str:
    """The subject's name as given, without control characters, at most 100 characters."""
    if name is None:
        return ""
    if not isinstance(name, str):
        raise BadRequest("the subject name must be a string")
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if len(name) > MAX_SUBJECT_LENGTH:
        raise BadRequest(f"the subject name is longer than {MAX_SUBJECT_LENGTH} characters")
    return name


def create_session(conn: sqlite3.Connection, study: Study, subject: str = "",
                   rng: random.Random | None = None) -> str:
    """Start a session of ``study`` and store its whole plan; returns the session id.

    For each kind, ``examples + n`` different images are drawn at random from the images present:
    the first ``examples`` stay on screen as labelled examples, the other ``n`` are test images, so
    no example is ever judged in the same session (§3.1). The ``2n`` test images are shuffled and
    their order stored before anything is shown.
    """
    rng = rng or random.SystemRandom()
    subject = clean_subject(subject)
    sid = new_token()
    with transaction(conn):
        tests: list[tuple[str, str]] = []
        shown: dict[str, list[str]] = {}
        for kind in KINDS:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM images WHERE study_id = ? AND kind = ? AND present = 1 ORDER BY file",
                (study.id, kind))]
            need = study.n + study.examples
            if len(ids) < need:
                raise Conflict(f"the {kind} folder has {len(ids)} images; a session needs {need} "
                               f"({study.n} to judge + {study.examples} examples)")
            drawn = rng.sample(ids, need)
            shown[kind] = drawn[:study.examples]
            tests += [(image_id, kind) for image_id in drawn[study.examples:]]
        rng.shuffle(tests)
        conn.execute("INSERT INTO sessions (id, study_id, subject, started_at) VALUES (?, ?, ?, ?)",
                     (sid, study.id, subject, _now()))
        conn.executemany("INSERT INTO examples (session_id, kind, position, image_id) VALUES (?, ?, ?, ?)",
                         [(sid, kind, i, image_id) for kind in KINDS for i, image_id in enumerate(shown[kind])])
        conn.executemany("INSERT INTO trials (session_id, position, image_id, truth) VALUES (?, ?, ?, ?)",
                         [(sid, i, image_id, kind) for i, (image_id, kind) in enumerate(tests)])
    return sid


def _session_row(conn: sqlite3.Connection, study: Study, sid: object) -> sqlite3.Row:
    if not isinstance(sid, str) or not TOKEN_RE.match(sid):
        raise NotFound("unknown session: session ids are the token in the link you were given")
    row = conn.execute("SELECT * FROM sessions WHERE id = ?", (sid,)).fetchone()
    if row is None:
        raise NotFound(f"unknown session {sid!r}; start a new one from the home page")
    if row["study_id"] != study.id:
        other = get_study(conn, row["study_id"])
        raise Conflict(f"session {sid!r} belongs to another study (real: {other.real_dir}, not real: "
                       f"{other.refined_dir}, n={other.n}); this server runs study {study.id}")
    return row


def session_state(conn: sqlite3.Connection, study: Study, sid: object, *, examples: bool = False,
                  lookahead: int = 2) -> dict:
    """What the page needs to show a session: progress, the current image, the next few ids
    (to preload), and — once finished — the subject's own score. Ground truth is never included
    while images remain to be judged.
    """
    row = _session_row(conn, study, sid)
    trials = conn.execute("SELECT position, image_id, truth, answer FROM trials WHERE session_id = ? "
                          "ORDER BY position", (sid,)).fetchall()
    pending = [t for t in trials if t["answer"] is None]
    answered = len(trials) - len(pending)
    state = {
        "session": sid,
        "subject": row["subject"],
        "total": len(trials),
        "answered": answered,
        "finished": not pending,
        "current": ({"position": pending[0]["position"], "image": pending[0]["image_id"]}
                    if pending else None),
        "upcoming": [t["image_id"] for t in pending[1:1 + lookahead]],
    }
    if not pending:
        correct = sum(t["answer"] == t["truth"] for t in trials)
        state["score"] = {"correct": correct, "trials": len(trials)}
    if examples:
        state["examples"] = session_examples(conn, sid)
    return state


def session_examples(conn: sqlite3.Connection, sid: str) -> dict[str, list[str]]:
    """The labelled example image ids of a session, by kind."""
    out: dict[str, list[str]] = {k: [] for k in KINDS}
    for r in conn.execute("SELECT kind, image_id FROM examples WHERE session_id = ? ORDER BY kind, position", (sid,)):
        out[r["kind"]].append(r["image_id"])
    return out


def find_open_session(conn: sqlite3.Connection, study: Study, sid: object) -> dict | None:
    """The state of session ``sid`` if it is an unfinished session of ``study``, else ``None``
    (used to offer "continue" on the home page from a cookie)."""
    try:
        state = session_state(conn, study, sid)
    except TuringError:
        return None
    return None if state["finished"] else state


def record_answer(conn: sqlite3.Connection, study: Study, sid: object, image_id: object, answer: object,
                  response_ms: object = None) -> dict:
    """Store one answer (:func:`store_answer`) and return the session's new state."""
    store_answer(conn, study, sid, image_id, answer, response_ms)
    return session_state(conn, study, sid)


def store_answer(conn: sqlite3.Connection, study: Study, sid: object, image_id: object, answer: object,
                 response_ms: object = None) -> None:
    """Store one answer in its own transaction; when this returns, the answer is committed.

    Rejects (with the fitting status) an unknown session (404), an image that is not a test image
    of this session (400), a second answer to an image (409), and an answer to an image other than
    the current one (409: the stored order is the order of the study).
    """
    if answer not in ANSWERS:
        raise BadRequest(f"answer must be one of {list(ANSWERS)} ('refined' stands for not real), got {answer!r}")
    if response_ms is not None:
        if isinstance(response_ms, bool) or not isinstance(response_ms, (int, float)) \
                or not 0 <= response_ms <= 86_400_000:
            raise BadRequest("ms (the response time) must be a number of milliseconds between 0 and 86400000")
        response_ms = int(round(response_ms))
    check_token(image_id, "image")
    with transaction(conn):
        _session_row(conn, study, sid)
        trial = conn.execute("SELECT position, answer FROM trials WHERE session_id = ? AND image_id = ?",
                             (sid, image_id)).fetchone()
        if trial is None:
            raise BadRequest(f"image {image_id!r} is not one of the images of session {sid!r}")
        if trial["answer"] is not None:
            raise Conflict(f"image {image_id!r} was already answered ({trial['answer']}) in this session; "
                           "answers cannot be changed")
        current = conn.execute("SELECT MIN(position) FROM trials WHERE session_id = ? AND answer IS NULL",
                               (sid,)).fetchone()[0]
        if trial["position"] != current:
            raise Conflict(f"image {image_id!r} is number {trial['position'] + 1} of the session but "
                           f"number {current + 1} is still to be answered; answer the images in order")
        now = _now()
        conn.execute("UPDATE trials SET answer = ?, answered_at = ?, response_ms = ? "
                     "WHERE session_id = ? AND position = ?", (answer, now, response_ms, sid, current))
        left = conn.execute("SELECT COUNT(*) FROM trials WHERE session_id = ? AND answer IS NULL", (sid,)).fetchone()[0]
        if left == 0:
            conn.execute("UPDATE sessions SET finished_at = ? WHERE id = ?", (now, sid))


# ----------------------------------------------------------------------------------------------
# reading answers back (for the report)


def study_trials(conn: sqlite3.Connection, study_id: int) -> list[sqlite3.Row]:
    """Every answered trial of a study with its session and subject, in time order."""
    return conn.execute(
        "SELECT s.id AS session, s.subject, s.started_at, s.finished_at, t.position, t.truth, t.answer, "
        "t.answered_at, t.response_ms FROM trials t JOIN sessions s ON s.id = t.session_id "
        "WHERE s.study_id = ? AND t.answer IS NOT NULL ORDER BY s.started_at, s.id, t.position",
        (study_id,)).fetchall()


def study_sessions(conn: sqlite3.Connection, study_id: int) -> list[sqlite3.Row]:
    """Every session of a study with its numbers of trials and answers, in start order."""
    return conn.execute(
        "SELECT s.id AS session, s.subject, s.started_at, s.finished_at, COUNT(t.position) AS total, "
        "COUNT(t.answer) AS answered, SUM(t.answer = t.truth) AS correct "
        "FROM sessions s LEFT JOIN trials t ON t.session_id = s.id WHERE s.study_id = ? "
        "GROUP BY s.id ORDER BY s.started_at, s.id", (study_id,)).fetchall()
