"""The visual Turing test (§3.1) in a real browser: headless Chromium driven by Selenium.

A subject opens the home page, types a name, starts a session, answers every image by clicking the
buttons (and some by the R / F keys), reloads the page half way (the session must continue at the
same image), and finishes; the test then checks the answers stored in the database and the results
page (Table 1).

Needs Debian's ``chromium`` and ``chromium-driver`` packages and the ``selenium`` Python package.
Without them the test is skipped, unless ``SIMGAN_REQUIRE_BROWSER=1`` (set in CI), where it fails.
The server listens on 127.0.0.1 only; Chromium runs with its background networking turned off.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from simgan.datasets import write_dataset
from simgan.turing.server import create_app, make_server

CHROMIUM = os.environ.get("SIMGAN_CHROMIUM", "/usr/bin/chromium")


CHROMEDRIVER = os.environ.get("SIMGAN_CHROMEDRIVER", "/usr/bin/chromedriver")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,900"]


N, EXAMPLES = 4, 3


def _browser_or_skip():
    """Import selenium, or skip (fail when SIMGAN_REQUIRE_BROWSER=1) naming what is missing."""
    missing = [f"{p} (apt-get install chromium chromium-driver)" for p in (CHROMIUM, CHROMEDRIVER)
               if not (Path(p).is_file() and os.access(p, os.X_OK))]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the Python package selenium (pip install selenium)")
    if missing:
        reason = "browser test needs " + ", ".join(missing)
        if os.environ.get("SIMGAN_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " — and SIMGAN_REQUIRE_BROWSER=1 is set", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
def browser(tmp_path, monkeypatch):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never go looking for drivers
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def server(tmp_path):
    rng = np.random.default_rng(0)
    real = write_dataset(tmp_path / "real", rng.integers(0, 256, (N + EXAMPLES + 2, 35, 55, 1), dtype=np.uint8))
    refined = write_dataset(tmp_path / "refined", rng.integers(0, 256, (N + EXAMPLES + 2, 35, 55, 1), dtype=np.uint8))
    db = tmp_path / "turing.sqlite3"
    app = create_app(real, refined, db, n=N, examples=EXAMPLES, seed=1)
    srv = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.port}", db
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)
        app.extensions["simgan_turing"]["pool"].close()


def _wait(driver, cond, what, timeout=15):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(cond, message=f"timed out waiting for {what}")


def _ready_for(driver, k, total):
    """The page shows image k (1-based), loaded, with the answer buttons enabled."""
    def cond(d):
        return d.execute_script(
            "const img = document.getElementById('test-image');"
            "const b = document.getElementById('answer-real');"
            "return document.getElementById('progress-text').textContent === arguments[0]"
            " && img.complete && img.naturalWidth > 0 && !img.classList.contains('loading') && !b.disabled"
            " ? img.dataset.image : null;", f"Image {k} of {total}")
    return _wait(driver, cond, f"image {k} of {total}")


def test_a_subject_answers_every_image_in_chromium(browser, server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    base, db = server
    total = 2 * N
    browser.get(base + "/")
    browser.find_element(By.ID, "subject").send_keys("Selenium Subject")
    browser.find_element(By.ID, "start").click()
    _wait(browser, lambda d: "/s/" in d.current_url, "the session page")
    sid = browser.current_url.rsplit("/s/", 1)[1]

    # The labelled examples are on screen, loaded, and upscaled without smoothing.
    for side, label in (("ex-real", "Real"), ("ex-fake", "Not real")):
        assert browser.find_element(By.CSS_SELECTOR, f".{side} h2").text == label
        assert len(browser.find_elements(By.CSS_SELECTOR, f".{side} .grid img")) == EXAMPLES
    _wait(browser, lambda d: d.execute_script(
        "return Array.from(document.querySelectorAll('.examples img')).every(i => i.complete && i.naturalWidth > 0)"),
        "the example images")
    assert browser.execute_script(
        "return getComputedStyle(document.getElementById('test-image')).imageRendering") == "pixelated"

    given = []
    for k in range(1, total + 1):
        image = _ready_for(browser, k, total)
        if k == N + 1:
            # Reload half way: the page must come back at the same image, nothing answered twice.
            browser.refresh()
            assert _ready_for(browser, k, total) == image
        value = "real" if k % 3 else "refined"
        if k % 4 == 0:  # some answers by key: R = real, F = not real
            ActionChains(browser).send_keys("r" if value == "real" else "f").perform()
        else:
            browser.find_element(By.ID, "answer-real" if value == "real" else "answer-refined").click()
        given.append((image, value))

    _wait(browser, lambda d: d.find_element(By.ID, "done").is_displayed(), "the finished page")
    assert browser.find_element(By.ID, "progress-text").text == f"{total} of {total} answered"
    score_text = browser.find_element(By.ID, "done-score").text

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT image_id, answer, truth, response_ms FROM trials WHERE session_id = ? "
                            "ORDER BY position", (sid,)).fetchall()
        subject = conn.execute("SELECT subject, finished_at FROM sessions WHERE id = ?", (sid,)).fetchone()
    finally:
        conn.close()
    assert [(r[0], r[1]) for r in rows] == given
    assert all(r[3] is not None and r[3] >= 0 for r in rows)
    assert subject[0] == "Selenium Subject" and subject[1] is not None
    correct = sum(r[1] == r[2] for r in rows)
    assert f"You labelled {correct} of {total} images correctly" in score_text

    browser.get(base + "/results")
    cells = {f"{t}-{s}": int(browser.find_element(By.ID, f"m-{t}-{s}").text)
             for t in ("real", "refined") for s in ("real", "refined")}
    for t in ("real", "refined"):
        for s in ("real", "refined"):
            assert cells[f"{t}-{s}"] == sum(r[2] == t and r[1] == s for r in rows)
    assert browser.find_element(By.ID, "overall-accuracy").text == f"{100 * correct / total:.1f}%"
    assert "Selenium Subject" in browser.find_element(By.ID, "subjects").text

