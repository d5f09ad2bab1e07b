"""The visual Turing test (§3.1, Table 1): store, report, HTTP API, restarts, CLI and a load test.

Servers started here listen on 127.0.0.1 with an ephemeral port and are stopped by the test that
started them. The browser test is in test_turing_browser.py.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from simgan.cli import main as cli_main
from simgan.datasets import write_dataset
from simgan.turing import report, store
from simgan.turing.server import create_app, make_server

ROOT = Path(__file__).resolve().parents[2]


N, EXAMPLES = 3, 2  # small sessions: 2N = 6 test images, 2 + 2 examples


def images(count: int, seed: int, size=(35, 55)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *size, 1), dtype=np.uint8)


@pytest.fixture
def folders(tmp_path):
    real = write_dataset(tmp_path / "real", images(8, 1))
    refined = write_dataset(tmp_path / "refined", images(8, 2))
    return real, refined


@pytest.fixture
def app(folders, tmp_path):
    a = create_app(*folders, tmp_path / "t.db", n=N, examples=EXAMPLES, seed=0)
    yield a
    a.extensions["simgan_turing"]["pool"].close()


@pytest.fixture
def client(app):
    return app.test_client()


def db_rows(db_path, sql, args=()):
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def start(client, subject="Ann") -> dict:
    r = client.post("/api/sessions", json={"subject": subject})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def answer(client, sid, image, value="real"):
    return client.post(f"/api/session/{sid}/answer", json={"image": image, "answer": value, "ms": 321})


def assert_json_error(resp, status):
    assert resp.status_code == status, (resp.status_code, resp.data[:300])
    assert resp.is_json, resp.headers.get("Content-Type")
    assert resp.get_json()["error"]


@contextlib.contextmanager
def serving(app):
    """``app`` on a real threaded server at 127.0.0.1:<ephemeral>; stopped on exit."""
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        app.extensions["simgan_turing"]["pool"].close()


def call(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        data = json.dumps(body).encode() if body is not None else None
        hdrs = dict(headers or {})
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        ctype = resp.getheader("Content-Type", "")
        return resp.status, ctype, (json.loads(payload) if ctype.startswith("application/json") else payload)
    finally:
        conn.close()


def run_cli(args, capsys):
    """``simgan ARGS`` in this process: (exit status, stdout, stderr)."""
    code = 0
    try:
        cli_main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _load_module():
    spec = importlib.util.spec_from_file_location("turing_load", ROOT / "bench" / "turing_load.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the file runs
    spec.loader.exec_module(mod)
    return mod


def _serve_cli(load, real, refined, db, n, examples):
    port = load.free_port()
    # faulthandler: a server that does not stop is sent SIGABRT and prints every thread's stack
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONFAULTHANDLER="1")
    proc = subprocess.Popen([sys.executable, "-m", "simgan", "turing", "serve", "--real", str(real),
                             "--refined", str(refined), "--db", str(db), "--n", str(n), "--examples", str(examples),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        load.wait_up(port, 60, proc)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc, port


def test_session_plan_is_stored_and_examples_are_not_test_images(folders, tmp_path):
    conn = store.connect(tmp_path / "s.db")
    from simgan.datasets import ImageFolder
    files = {k: [r.file for r in ImageFolder.open(f).records] for k, f in zip(store.KINDS, folders)}
    study = store.ensure_study(conn, *folders, N, EXAMPLES, files["real"], files["refined"])
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    sid = store.create_session(conn, study, "Ann", random.Random(1))
    trials = conn.execute("SELECT image_id, truth FROM trials WHERE session_id = ? ORDER BY position", (sid,)).fetchall()
    assert len(trials) == 2 * N
    assert sorted(t["truth"] for t in trials) == ["real"] * N + ["refined"] * N
    ex = store.session_examples(conn, sid)
    assert len(ex["real"]) == len(ex["refined"]) == EXAMPLES
    assert not set(ex["real"] + ex["refined"]) & {t["image_id"] for t in trials}
    # Example kinds are right, and the state never reveals the ground truth before the end.
    kinds = dict(conn.execute("SELECT id, kind FROM images").fetchall())
    assert all(kinds[i] == "real" for i in ex["real"]) and all(kinds[i] == "refined" for i in ex["refined"])
    state = store.session_state(conn, study, sid)
    assert "truth" not in json.dumps(state) and "score" not in state
    assert state["current"] == {"position": 0, "image": trials[0]["image_id"]}
    # Re-opening the same folders finds the same study and keeps the image ids.
    again = store.ensure_study(conn, *folders, N, EXAMPLES, files["real"], files["refined"])
    assert again.id == study.id
    assert dict(conn.execute("SELECT id, kind FROM images").fetchall()) == kinds
    conn.close()


def test_report_reproduces_table_1_and_its_p_value(tmp_path):
    # Table 1: ground truth real 224 / 276, ground truth refined 207 / 293 -> 517 of 1000 correct.
    pairs = ([("real", "real")] * 224 + [("real", "refined")] * 276 + [("refined", "real")] * 207
             + [("refined", "refined")] * 293)
    m = report.confusion_matrix(pairs)
    assert m == {"real": {"real": 224, "refined": 276}, "refined": {"real": 207, "refined": 293}}
    b = report.binomial(m["real"]["real"] + m["refined"]["refined"], len(pairs))
    assert (b.correct, b.trials) == (517, 1000) and b.accuracy == pytest.approx(0.517)
    assert b.p_greater == pytest.approx(0.148, abs=5e-4)       # the paper's p = 0.148 (one-sided)
    assert b.p_two_sided == pytest.approx(0.2967, abs=5e-4)   # two-sided, what we report first
    # Synthetic vs real: 162 of 200 correct, p <= 1e-8.
    assert report.binomial(162, 200).p_two_sided <= 1e-8
    assert report.binomial(0, 0).p_two_sided is None


def test_full_session_over_the_api_is_stored_and_reported(app, client, tmp_path):
    state = start(client, "Ann")
    sid = state["session"]
    assert state["total"] == 2 * N and state["answered"] == 0 and len(state["examples"]["real"]) == EXAMPLES
    given = {}
    while not state["finished"]:
        img = state["current"]["image"]
        r = client.get(f"/img/{img}")
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/png" and r.data[:4] == b"\x89PNG"
        value = random.Random(img).choice(["real", "refined"])
        r = answer(client, sid, img, value)
        assert r.status_code == 200, r.get_json()
        given[img] = value
        state = r.get_json()
    rows = dict(db_rows(tmp_path / "t.db", "SELECT image_id, answer FROM trials WHERE session_id = ?", (sid,)))
    assert rows == given
    truth = dict(db_rows(tmp_path / "t.db", "SELECT image_id, truth FROM trials WHERE session_id = ?", (sid,)))
    correct = sum(given[i] == truth[i] for i in given)
    assert state["score"] == {"correct": correct, "trials": 2 * N}
    assert db_rows(tmp_path / "t.db", "SELECT finished_at IS NOT NULL FROM sessions WHERE id = ?", (sid,)) == [(1,)]
    res = client.get("/api/results").get_json()
    assert res["overall"]["correct"] == correct and res["overall"]["trials"] == 2 * N
    assert sum(res["matrix"]["real"].values()) == N and sum(res["matrix"]["refined"].values()) == N
    assert res["study"]["real_dir"] == str(Path(app.extensions["simgan_turing"]["roots"]["real"]))
    assert sid not in json.dumps(res)  # the results never list a whole session id
    page = client.get("/results").get_data(as_text=True)
    assert "Ground truth real" in page and f"{correct}</b> of <b>{2 * N}" in page and "Ann" in page


def test_start_form_sets_cookie_and_home_page_offers_continue(client):
    r = client.post("/start", data={"subject": "Bo"})
    assert r.status_code == 303
    sid = r.headers["Location"].rsplit("/", 1)[1]
    page = client.get(f"/s/{sid}").get_data(as_text=True)
    assert "image-rendering" not in page  # styling lives in the static CSS, no inline styles
    assert page.count('alt="real example"') == EXAMPLES and page.count('alt="not-real example"') == EXAMPLES
    home = client.get("/").get_data(as_text=True)
    assert f"/s/{sid}" in home and "Continue" in home
    css = client.get("/static/turing.css").get_data(as_text=True)
    assert "image-rendering: pixelated" in css


def test_unknown_session_is_404(client):
    assert_json_error(client.get("/api/session/NoSuchSession123"), 404)
    assert_json_error(client.post("/api/session/NoSuchSession123/answer", json={"image": "abcdefgh12", "answer": "real"}), 404)
    assert_json_error(client.get("/api/session/x"), 404)
    r = client.get("/s/NoSuchSession123", headers={"Accept": "text/html"})
    assert r.status_code == 404 and b"unknown session" in r.data


def test_second_answer_and_out_of_order_answer_are_409(client):
    s = start(client)
    sid, first = s["session"], s["current"]["image"]
    assert answer(client, sid, first).status_code == 200
    r = answer(client, sid, first, "refined")
    assert_json_error(r, 409)
    assert "already answered" in r.get_json()["error"]
    later = client.get(f"/api/session/{sid}").get_json()["upcoming"][1]
    assert_json_error(answer(client, sid, later), 409)
    assert client.get(f"/api/session/{sid}").get_json()["answered"] == 1


def test_answer_for_an_image_outside_the_session_is_400(client):
    a, b = start(client, "A"), start(client, "B")
    # an example image of the same session, an image of another session, an id that exists nowhere
    for image in (a["examples"]["real"][0], b["current"]["image"], "AAAAAAAAAAAAAAAA"):
        r = answer(client, a["session"], image)
        assert_json_error(r, 400)
    assert_json_error(answer(client, a["session"], "../etc/passwd"), 400)


def test_malformed_answers_are_400(client):
    s = start(client)
    sid, img = s["session"], s["current"]["image"]
    assert_json_error(answer(client, sid, img, "maybe"), 400)
    assert_json_error(client.post(f"/api/session/{sid}/answer", data="not json", content_type="application/json"), 400)
    assert_json_error(client.post(f"/api/session/{sid}/answer", json=["real"]), 400)
    assert_json_error(client.post(f"/api/session/{sid}/answer", json={"image": img, "answer": "real", "ms": -5}), 400)
    assert_json_error(client.post("/api/sessions", json={"subject": "x" * 101}), 400)
    assert_json_error(client.get("/api/nothing-here"), 404)
    assert_json_error(client.put(f"/api/session/{sid}/answer", json={}), 405)
    assert client.get(f"/api/session/{sid}").get_json()["answered"] == 0


def test_image_requests_by_path_are_rejected_on_a_real_server(app, folders, tmp_path):
    secret = tmp_path / "secret.png"
    write_dataset(tmp_path / "outside", images(1, 9))
    (tmp_path / "outside" / "img" / "000000.png").rename(secret)
    with serving(app) as port:
        for path in ("/img/../../etc/passwd", "/img/..%2F..%2Fetc%2Fpasswd", "/img/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                     "/img//etc/passwd", "/img/%2Fetc%2Fpasswd", "/img/img/000001.png", f"/img/{secret}",
                     "/img/..", "/img/%2e%2e"):
            status, ctype, body = call(port, "GET", path)
            assert status in (400, 404), (path, status)
            assert ctype.startswith("application/json") and body["error"], path
            assert status == 400 or path == "/img/../../etc/passwd", (path, status)
        status, ctype, body = call(port, "GET", "/img/AAAAAAAAAAAAAAAA")
        assert status == 404 and body["error"]
        # A test image swapped for a symlink to a file outside its folder after indexing: 403.
        sid = call(port, "POST", "/api/sessions", {"subject": "S"})[2]["session"]
        image = call(port, "GET", f"/api/session/{sid}")[2]["current"]["image"]
        kind, rel = db_rows(tmp_path / "t.db", "SELECT kind, file FROM images WHERE id = ?", (image,))[0]
        target = Path(folders[0] if kind == "real" else folders[1]) / rel
        assert call(port, "GET", f"/img/{image}")[0] == 200
        target.unlink()
        target.symlink_to(secret)
        status, ctype, body = call(port, "GET", f"/img/{image}")
        assert status == 403 and "outside" in body["error"]
        target.unlink()
        status, _, body = call(port, "GET", f"/img/{image}")
        assert status == 404 and body["error"]


def test_links_out_of_a_folder_are_not_indexed(tmp_path):
    real = write_dataset(tmp_path / "real", images(8, 1))
    refined = write_dataset(tmp_path / "refined", images(8, 2))
    write_dataset(tmp_path / "elsewhere", images(1, 3))
    (Path(real) / "img" / "zz_link.png").symlink_to(tmp_path / "elsewhere" / "img" / "000000.png")
    a = create_app(real, refined, tmp_path / "t.db", n=N, examples=EXAMPLES)
    files = [r[0] for r in db_rows(tmp_path / "t.db", "SELECT file FROM images WHERE kind = 'real'")]
    assert len(files) == 8 and "img/zz_link.png" not in files
    a.extensions["simgan_turing"]["pool"].close()


def test_only_this_studys_images_are_served(folders, tmp_path):
    other_real = write_dataset(tmp_path / "other_real", images(8, 5))
    db = tmp_path / "t.db"
    other = create_app(other_real, folders[1], db, n=N, examples=EXAMPLES)
    this = create_app(*folders, db, n=N, examples=EXAMPLES)
    other_sid = start(other.test_client())
    foreign = other_sid["current"]["image"]
    c = this.test_client()
    assert other.test_client().get(f"/img/{foreign}").status_code == 200
    assert_json_error(c.get(f"/img/{foreign}"), 404)
    assert_json_error(c.get(f"/api/session/{other_sid['session']}"), 409)
    for a in (this, other):
        a.extensions["simgan_turing"]["pool"].close()


def test_non_png_images_are_served_as_png(tmp_path):
    from PIL import Image
    dirs = []
    for name, ext in (("real", "jpg"), ("refined", "bmp")):
        d = tmp_path / name
        d.mkdir()
        for i, img in enumerate(images(6, 7)):
            Image.fromarray(img[:, :, 0]).save(d / f"{i:03d}.{ext}")
        dirs.append(d)
    a = create_app(*dirs, tmp_path / "t.db", n=2, examples=2)
    c = a.test_client()
    s = start(c)
    for image in [s["current"]["image"]] + s["examples"]["refined"]:
        r = c.get(f"/img/{image}")
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/png" and r.data.startswith(b"\x89PNG")
    a.extensions["simgan_turing"]["pool"].close()


def test_server_restart_mid_session_keeps_answers_and_resumes(folders, tmp_path):
    db = tmp_path / "t.db"
    given = []
    with serving(create_app(*folders, db, n=N, examples=EXAMPLES, seed=3)) as port:
        status, _, state = call(port, "POST", "/api/sessions", {"subject": "Restart"})
        assert status == 201
        sid = state["session"]
        for value in ("real", "refined", "real"):
            image = state["current"]["image"]
            status, _, state = call(port, "POST", f"/api/session/{sid}/answer", {"image": image, "answer": value})
            assert status == 200
            given.append((image, value))
    # The server is gone; the answers are on disk.
    stored = db_rows(db, "SELECT image_id, answer FROM trials WHERE session_id = ? AND answer IS NOT NULL "
                         "ORDER BY position", (sid,))
    assert stored == given
    order = [r[0] for r in db_rows(db, "SELECT image_id FROM trials WHERE session_id = ? ORDER BY position", (sid,))]
    with serving(create_app(*folders, db, n=N, examples=EXAMPLES, seed=99)) as port:
        status, _, state = call(port, "GET", f"/api/session/{sid}")
        assert status == 200 and state["answered"] == 3
        assert state["current"] == {"position": 3, "image": order[3]}
        status, ctype, page = call(port, "GET", f"/s/{sid}", headers={"Accept": "text/html"})
        assert status == 200 and b"3 of 6 answered" in page
        status, _, body = call(port, "POST", f"/api/session/{sid}/answer", {"image": given[0][0], "answer": "real"})
        assert status == 409
        while not state["finished"]:
            status, _, state = call(port, "POST", f"/api/session/{sid}/answer",
                                    {"image": state["current"]["image"], "answer": "refined"})
            assert status == 200
    assert db_rows(db, "SELECT COUNT(answer) FROM trials WHERE session_id = ?", (sid,)) == [(2 * N,)]
    assert len(db_rows(db, "SELECT id FROM studies")) == 1


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, folders, capsys):
    real, refined = map(str, folders)
    empty = tmp_path / "empty"
    empty.mkdir()
    few = write_dataset(tmp_path / "few", images(4, 4))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not an SQLite database" * 40)
    cases = [
        (["turing", "serve", "--real", str(tmp_path / "missing"), "--refined", refined], "not found"),
        (["turing", "serve", "--real", str(empty), "--refined", refined], "holds no images"),
        (["turing", "serve", "--real", real, "--refined", str(few), "--n", "3", "--examples", "2"],
         "has 4 images; --n 3 with 2 examples needs at least 5"),
        (["turing", "serve", "--real", real, "--refined", refined], "needs at least 70"),
        (["turing", "serve", "--real", real, "--refined", refined, "--n", "3", "--examples", "2",
          "--db", str(junk)], "junk.db"),
        (["turing", "serve", "--real", real, "--refined", refined, "--n", "3", "--examples", "2",
          "--db", str(tmp_path / "no" / "such" / "dir.db")], "does not exist"),
        (["turing", "report", "--db", str(junk)], "junk.db"),
        (["turing", "report", "--db", str(tmp_path / "absent.db")], "database not found"),
    ]
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    cases.append((["turing", "serve", "--real", real, "--refined", refined, "--n", "3", "--examples", "2",
                   "--db", str(tmp_path / "ok.db"), "--port", str(busy.getsockname()[1])], "cannot listen on 127.0.0.1"))
    cases.append((["turing", "serve", "--real", real, "--refined", real], "same folder"))
    for args, needle in cases:
        code, out, err = run_cli(args, capsys)
        assert code == 2, (args, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("simgan: error: ") and needle in lines[0], (args, err)
    busy.close()
    assert not (tmp_path / "absent.db").exists()  # the report never creates a database


def test_cli_report_prints_table_1(app, client, tmp_path, capsys):
    s = start(client, "Cleo")
    while not s["finished"]:
        s = answer(client, s["session"], s["current"]["image"], "real").get_json()
    code, out, err = run_cli(["turing", "report", "--db", str(tmp_path / "t.db")], capsys)
    assert code == 0, err
    assert "Selected as real" in out and "Ground truth not real" in out
    assert f"{N} of {2 * N} correct = 50.0%" in out  # everything answered 'real': N right, N wrong
    assert "p = 1.000 (two-sided)" in out and "Cleo" in out and str(Path(tmp_path / "real").resolve()) in out
    code, out, err = run_cli(["turing", "report", "--db", str(tmp_path / "t.db"), "--json"], capsys)
    data = json.loads(out)
    assert data[0]["matrix"] == {"real": {"real": N, "refined": 0}, "refined": {"real": N, "refined": 0}}
    code, out, err = run_cli(["turing", "report", "--db", str(tmp_path / "t.db"), "--study", "7"], capsys)
    assert code == 2 and "no study 7" in err


def test_killed_server_keeps_every_acknowledged_answer(tmp_path):
    """`kill -9` right after an answer was acknowledged: the answer is in the database."""
    load = _load_module()
    real, refined = load.make_folders(tmp_path, 8)
    db = tmp_path / "kill.db"
    proc, port = _serve_cli(load, real, refined, db, 3, 2)
    try:
        state = call(port, "POST", "/api/sessions", {"subject": "K"})[2]
        given = []
        for value in ("refined", "real", "refined", "real"):
            status, _, new = call(port, "POST", f"/api/session/{state['session']}/answer",
                                  {"image": state["current"]["image"], "answer": value})
            assert status == 200
            given.append((state["current"]["image"], value))
            state = new
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert db_rows(db, "SELECT image_id, answer FROM trials WHERE session_id = ? AND answer IS NOT NULL "
                       "ORDER BY position", (state["session"],)) == given


def test_load_20_concurrent_subjects_lose_nothing(tmp_path):
    load = _load_module()
    n, examples = 5, 2
    real, refined = load.make_folders(tmp_path, n + examples + 3)
    db = tmp_path / "load.db"
    proc, port = _serve_cli(load, real, refined, db, n, examples)
    try:
        runs, wall = load.run_load(port, subjects=20, max_seconds=40, fetch_images=True)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler dumps the stacks of the stuck server
            out, err = proc.communicate()
    assert proc.returncode == 0, err.decode()[-6000:]
    assert b"Stopped. All answers are in" in out and f"127.0.0.1:{port}".encode() in out
    lost, stored = load.count_lost(db, runs)
    figures = load.summarize(runs, wall, lost, stored)
    assert figures["errors"] == 0, figures["error_samples"]
    assert figures["finished_sessions"] == 20
    assert figures["answers_acked"] == figures["answers_stored"] == 20 * 2 * n
    assert figures["answers_lost"] == 0

