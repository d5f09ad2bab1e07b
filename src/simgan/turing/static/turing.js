// The visual Turing test page (§3.1): one image at a time, answered by click or by key (R / F).
// Plain JavaScript, no libraries: the page works offline. The server stores each answer before
// replying, and the state (progress, current image) always comes from the server, so reloading
// the page continues exactly where the subject was.
(function () {
  "use strict";
  const body = document.body;
  const api = body.dataset.api;
  const imgBase = body.dataset.img;
  const img = document.getElementById("test-image");
  const buttons = Array.from(document.querySelectorAll("button.answer"));
  const message = document.getElementById("message");
  const progressText = document.getElementById("progress-text");
  const barFill = document.getElementById("bar-fill");
  const stage = document.getElementById("stage");
  const done = document.getElementById("done");
  const preloaded = [];

  let state = null;     // the session state from the server
  let busy = true;      // true while an image loads or an answer is on its way
  let shownAt = 0;      // when the current image appeared (for the response time)

  function setBusy(value) {
    busy = value;
    buttons.forEach((b) => { b.disabled = value; });
  }

  function say(text, isError) {
    message.textContent = text || "";
    message.classList.toggle("error", !!isError);
  }

  function render() {
    const k = state.answered;
    progressText.textContent = state.finished
      ? `${k} of ${state.total} answered`
      : `Image ${k + 1} of ${state.total}`;
    barFill.style.width = `${(100 * k) / state.total}%`;
    document.title = state.finished ? "Finished · Visual Turing test" : `Image ${k + 1} of ${state.total} · Visual Turing test`;
    if (state.finished) {
      stage.hidden = true;
      done.hidden = false;
      if (state.score) {
        const pct = ((100 * state.score.correct) / state.score.trials).toFixed(1);
        document.getElementById("done-score").textContent =
          `You labelled ${state.score.correct} of ${state.score.trials} images correctly (${pct}%; chance is 50%).`;
      }
      setBusy(true);
      return;
    }
    const src = imgBase + encodeURIComponent(state.current.image);
    if (img.dataset.image !== state.current.image) {
      setBusy(true);
      img.classList.add("loading");
      img.dataset.image = state.current.image;
      img.dataset.position = String(state.current.position);
      img.src = src;
    } else if (img.complete && img.naturalWidth > 0) {
      imageShown();
    }
    // Fetch the next images ahead of time so that the next one appears at once.
    preloaded.length = 0;
    (state.upcoming || []).forEach((id) => { const p = new Image(); p.src = imgBase + encodeURIComponent(id); preloaded.push(p); });
  }

  function imageShown() {
    img.classList.remove("loading");
    shownAt = performance.now();
    setBusy(false);
  }

  img.addEventListener("load", imageShown);
  img.addEventListener("error", () => {
    say("This image could not be loaded. Reload the page to try again.", true);
  });

  async function request(url, options) {
    const resp = await fetch(url, Object.assign({ credentials: "same-origin", cache: "no-store" }, options || {}));
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    return { ok: resp.ok, status: resp.status, data: data };
  }

  async function load() {
    try {
      const r = await request(api);
      if (!r.ok) { say((r.data && r.data.error) || `Error ${r.status}`, true); return; }
      state = r.data;
      render();
    } catch (e) {
      say("Cannot reach the server. Is it still running? Reload the page to continue.", true);
    }
  }

  async function answer(value) {
    if (busy || !state || state.finished) return;
    setBusy(true);
    const ms = Math.round(performance.now() - shownAt);
    try {
      const r = await request(api + "/answer", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ image: state.current.image, answer: value, ms: ms }),
      });
      if (r.ok) {
        say("");
        state = r.data;
        render();
      } else if (r.status === 409) {
        // Answered already (another tab, a double submit): take the server's word and go on.
        say((r.data && r.data.error) || "Already answered.", false);
        await load();
      } else {
        say((r.data && r.data.error) || `Error ${r.status}`, true);
        setBusy(false);
      }
    } catch (e) {
      say("The answer could not be sent: is the server still running? Reload the page to continue.", true);
      setBusy(false);
    }
  }

  buttons.forEach((b) => b.addEventListener("click", () => answer(b.dataset.answer)));
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    const key = ev.key.toLowerCase();
    if (key === "r") { ev.preventDefault(); answer("real"); }
    else if (key === "f") { ev.preventDefault(); answer("refined"); }
  });

  setBusy(true);
  load();
})();
