"""Load test of the visual Turing test server (§3.1): many subjects answering at full speed.

Each simulated subject starts a session, then for each of its 2N images fetches the image (unless
``--no-images``) and posts an answer as soon as the previous one is acknowledged. When all are done
(or the time limit is reached) the database is read back and every acknowledged answer is looked up:
an answer the server said it stored but that is not in the database is *lost*.

Loopback only: the server listens on 127.0.0.1 and every request goes there. Bounded: ``--subjects``
× 2N answers at most, and ``--max-seconds`` of wall time.

    PYTHONPATH=src python bench/turing_load.py                  # 20 subjects × 100 answers
    PYTHONPATH=src python bench/turing_load.py --in-process      # server in a thread of this process

By default the server runs as ``simgan turing serve`` in its own process (Werkzeug's threaded
server), so that the load generator does not share its interpreter lock.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


@dataclass
class SubjectRun:
    subject: str
    session: str | None = None
    acked: dict = field(default_factory=dict)      # image id -> answer the server acknowledged
    latencies: list = field(default_factory=list)  # seconds per answer POST
    image_latencies: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    finished: bool = False


def _request(port: int, method: str, path: str, body: dict | None = None, timeout: float = 30.0):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, resp.getheader("Content-Type", ""), payload
    finally:
        conn.close()


def run_subject(port: int, name: str, deadline: float, fetch_images: bool, start: threading.Barrier,
                rng: random.Random) -> SubjectRun:
    """One subject answering every image of a new session as fast as the server allows."""
    run = SubjectRun(name)
    try:
        start.wait(timeout=max(1.0, deadline - time.monotonic()))
        status, _, payload = _request(port, "POST", "/api/sessions", {"subject": name})
        if status != 201:
            run.errors.append(f"start: HTTP {status} {payload[:200]!r}")
            return run
        state = json.loads(payload)
        run.session = state["session"]
        while not state["finished"] and time.monotonic() < deadline:
            image = state["current"]["image"]
            if fetch_images:
                t0 = time.perf_counter()
                status, ctype, payload = _request(port, "GET", f"/img/{image}")
                run.image_latencies.append(time.perf_counter() - t0)
                if status != 200 or ctype != "image/png" or not payload.startswith(b"\x89PNG"):
                    run.errors.append(f"image: HTTP {status} {ctype}")
                    return run
            answer = rng.choice(("real", "refined"))
            t0 = time.perf_counter()
            status, _, payload = _request(port, "POST", f"/api/session/{run.session}/answer",
                                          {"image": image, "answer": answer, "ms": 1})
            run.latencies.append(time.perf_counter() - t0)
            if status != 200:
                run.errors.append(f"answer: HTTP {status} {payload[:200]!r}")
                return run
            run.acked[image] = answer
            state = json.loads(payload)
        run.finished = state["finished"]
    except Exception as exc:  # noqa: BLE001 - every failure is counted, none may pass silently
        run.errors.append(f"{type(exc).__name__}: {exc}")
    return run


def run_load(port: int, subjects: int = 20, max_seconds: float = 60.0, fetch_images: bool = True,
             seed: int = 0) -> tuple[list[SubjectRun], float]:
    """All subjects at once, one thread each; returns their runs and the wall time in seconds."""
    deadline = time.monotonic() + max_seconds
    barrier = threading.Barrier(subjects + 1)
    runs: list[SubjectRun | None] = [None] * subjects

    def work(i: int) -> None:
        runs[i] = run_subject(port, f"load-{i:02d}", deadline, fetch_images, barrier, random.Random(seed + i))

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(subjects)]
    for t in threads:
        t.start()
    barrier.wait(timeout=30)
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()) + 35)
    wall = time.perf_counter() - t0
    return [r if r is not None else SubjectRun(f"load-{i:02d}", errors=["thread did not finish"])
            for i, r in enumerate(runs)], wall


def count_lost(db_path: str | Path, runs: list[SubjectRun]) -> tuple[int, int]:
    """(answers acknowledged but missing or different in the database, answers stored in all)."""
    conn = sqlite3.connect(f"file:{Path(db_path)}?mode=ro", uri=True)
    try:
        lost = 0
        stored = 0
        for run in runs:
            if run.session is None:
                continue
            rows = dict(conn.execute("SELECT image_id, answer FROM trials WHERE session_id = ? AND answer IS NOT NULL",
                                     (run.session,)).fetchall())
            stored += len(rows)
            lost += sum(rows.get(image) != answer for image, answer in run.acked.items())
        return lost, stored
    finally:
        conn.close()


def summarize(runs: list[SubjectRun], wall: float, lost: int, stored: int) -> dict:
    lat = sorted(x for r in runs for x in r.latencies)
    img = sorted(x for r in runs for x in r.image_latencies)
    acked = sum(len(r.acked) for r in runs)

    def pct(xs, q):
        return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")

    return {
        "subjects": len(runs),
        "finished_sessions": sum(r.finished for r in runs),
        "answers_acked": acked,
        "answers_stored": stored,
        "answers_lost": lost,
        "errors": sum(len(r.errors) for r in runs),
        "error_samples": [e for r in runs for e in r.errors][:5],
        "wall_s": wall,
        "answers_per_s": acked / wall if wall > 0 else float("nan"),
        "answer_latency_ms": {"p50": 1e3 * pct(lat, 0.5), "p95": 1e3 * pct(lat, 0.95),
                              "max": 1e3 * (lat[-1] if lat else float("nan")),
                              "mean": 1e3 * (statistics.fmean(lat) if lat else float("nan"))},
        "image_latency_ms": ({"p50": 1e3 * pct(img, 0.5), "p95": 1e3 * pct(img, 0.95), "max": 1e3 * img[-1]}
                             if img else None),
    }


def make_folders(root: Path, count: int, size=(35, 55)) -> tuple[Path, Path]:
    """Two folders of ``count`` random gray images (the gaze images' 55×35) to serve."""
    import numpy as np

    from simgan.datasets import write_dataset
    rng = np.random.default_rng(0)
    real = write_dataset(root / "real", rng.integers(0, 256, (count, *size, 1), dtype=np.uint8))
    refined = write_dataset(root / "refined", rng.integers(0, 256, (count, *size, 1), dtype=np.uint8))
    return real, refined


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_up(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        try:
            if _request(port, "GET", "/healthz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer on {HOST}:{port} within {timeout:.0f} s")


def print_figures(s: dict) -> None:
    lat = s["answer_latency_ms"]
    print(f"subjects: {s['subjects']} ({s['finished_sessions']} finished their session)")
    print(f"answers:  {s['answers_acked']} acknowledged, {s['answers_stored']} in the database, "
          f"{s['answers_lost']} lost; errors: {s['errors']}")
    for e in s["error_samples"]:
        print(f"  error: {e}")
    print(f"rate:     {s['answers_per_s']:.0f} answers/s over {s['wall_s']:.2f} s")
    print(f"answer latency: p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, max {lat['max']:.1f} ms")
    if s["image_latency_ms"]:
        il = s["image_latency_ms"]
        print(f"image latency:  p50 {il['p50']:.1f} ms, p95 {il['p95']:.1f} ms, max {il['max']:.1f} ms")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", type=int, default=20)
    ap.add_argument("--n", type=int, default=50, help="images of each kind per session (2N answers each)")
    ap.add_argument("--examples", type=int, default=20)
    ap.add_argument("--max-seconds", type=float, default=90.0, help="stop answering after this long")
    ap.add_argument("--no-images", action="store_true", help="post answers only, do not fetch the images")
    ap.add_argument("--in-process", action="store_true", help="run the server in a thread of this process")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="turing-load-") as tmp:
        tmp = Path(tmp)
        real, refined = make_folders(tmp, args.n + args.examples + 10)
        db = tmp / "turing.sqlite3"
        proc = server = thread = None
        try:
            if args.in_process:
                from simgan.turing.server import create_app, make_server
                server = make_server(create_app(real, refined, db, n=args.n, examples=args.examples), HOST, 0)
                port = server.port
                thread = threading.Thread(target=server.serve_forever, daemon=True)
                thread.start()
                wait_up(port, 10)
            else:
                port = free_port()
                env = dict(os.environ)
                src = str(Path(__file__).resolve().parents[1] / "src")
                env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
                proc = subprocess.Popen([sys.executable, "-m", "simgan", "turing", "serve", "--real", str(real),
                                         "--refined", str(refined), "--db", str(db), "--n", str(args.n),
                                         "--examples", str(args.examples), "--host", HOST, "--port", str(port)],
                                        env=env, stdout=subprocess.DEVNULL)
                wait_up(port, 60, proc)
            runs, wall = run_load(port, args.subjects, args.max_seconds, not args.no_images)
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
                thread.join(timeout=10)
            if proc is not None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        lost, stored = count_lost(db, runs)
        figures = summarize(runs, wall, lost, stored)
    print(f"server: {'thread in this process' if args.in_process else 'simgan turing serve (own process)'}, "
          f"{args.subjects} subjects x {2 * args.n} answers, images {'not ' if args.no_images else ''}fetched")
    print_figures(figures)
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0 if figures["errors"] == 0 and figures["answers_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
