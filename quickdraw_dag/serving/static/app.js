// The drawing page: pointer events (mouse, pen, touch) → strokes in Google's raw format → /api/guess.
// Guesses are live but throttled: at most one request in flight and one every THROTTLE_MS while
// drawing; the drawing's final state is always answered (after each stroke, undo and clear).
"use strict";

(() => {
  const THROTTLE_MS = 120;
  const LINE_WIDTH = 6; // CSS px on screen; the model sees the strokes, not these pixels

  const canvas = document.getElementById("canvas");
  const context = canvas.getContext("2d");
  const guessList = document.getElementById("guesses");
  const headline = document.getElementById("headline");
  const status = document.getElementById("status");

  // Google's raw format: per stroke [xs, ys, ts], screen coordinates and ms since the first point.
  const strokes = [];
  let current = null;
  let startedAt = null;
  let version = 0; // bumped on every change of the drawing
  let answered = 0; // the version the shown guesses belong to
  let inFlight = false;
  let lastSent = 0;
  let timer = null;

  function resize() {
    const ratio = window.devicePixelRatio || 1;
    const box = canvas.getBoundingClientRect();
    canvas.width = Math.round(box.width * ratio);
    canvas.height = Math.round(box.height * ratio);
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    redraw();
  }

  function redraw() {
    const box = canvas.getBoundingClientRect();
    context.clearRect(0, 0, box.width, box.height);
    context.lineCap = "round";
    context.lineJoin = "round";
    context.lineWidth = LINE_WIDTH;
    context.strokeStyle = "#1d1d1f";
    for (const [xs, ys] of strokes) {
      context.beginPath();
      context.moveTo(xs[0], ys[0]);
      for (let i = 1; i < xs.length; i += 1) context.lineTo(xs[i], ys[i]);
      if (xs.length === 1) context.lineTo(xs[0] + 0.01, ys[0]);
      context.stroke();
    }
  }

  function point(event) {
    const box = canvas.getBoundingClientRect();
    if (startedAt === null) startedAt = event.timeStamp;
    return [event.clientX - box.left, event.clientY - box.top, Math.round(event.timeStamp - startedAt)];
  }

  function addPoint(event) {
    const [x, y, t] = point(event);
    const [xs, ys, ts] = current;
    if (xs.length && xs[xs.length - 1] === x && ys[ys.length - 1] === y) return;
    xs.push(x);
    ys.push(y);
    ts.push(t);
    version += 1;
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (!event.isPrimary || event.button > 0) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    current = [[], [], []];
    strokes.push(current);
    addPoint(event);
    redraw();
    schedule();
  });

  canvas.addEventListener("pointermove", (event) => {
    if (current === null || !event.isPrimary) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const each of events.length ? events : [event]) addPoint(each);
    redraw();
    schedule();
  });

  function endStroke(event) {
    if (current === null || !event.isPrimary) return;
    current = null;
    version += 1;
    schedule();
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  function undo() {
    if (!strokes.length) return;
    strokes.pop();
    current = null;
    if (!strokes.length) startedAt = null;
    version += 1;
    redraw();
    schedule();
  }

  function clear() {
    strokes.length = 0;
    current = null;
    startedAt = null;
    version += 1;
    redraw();
    schedule();
  }

  document.getElementById("undo").addEventListener("click", undo);
  document.getElementById("clear").addEventListener("click", clear);
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "z") { event.preventDefault(); undo(); }
    if (event.key === "Escape") clear();
  });

  // Ask for a guess now, or as soon as the throttle and the request in flight allow.
  function schedule() {
    if (inFlight || timer !== null) return;
    const wait = THROTTLE_MS - (performance.now() - lastSent);
    if (wait > 0) {
      timer = setTimeout(() => { timer = null; schedule(); }, wait);
      return;
    }
    send();
  }

  async function send() {
    const asked = version;
    if (!strokes.length) { show(asked, null); return; }
    inFlight = true;
    lastSent = performance.now();
    try {
      const response = await fetch("/api/guess", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ strokes: drawing(), format: "raw" }),
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || response.statusText);
      show(asked, answer);
      status.textContent = "";
    } catch (error) {
      status.textContent = `No guess: ${error.message}`;
    } finally {
      inFlight = false;
      if (answered !== version) schedule();
    }
  }

  function drawing() {
    return strokes.filter(([xs]) => xs.length).map(([xs, ys, ts]) => [xs.slice(), ys.slice(), ts.slice()]);
  }

  function show(asked, answer) {
    answered = asked;
    guessList.replaceChildren();
    guessList.dataset.version = String(asked);
    guessList.dataset.state = answer === null ? "empty" : asked === version ? "current" : "stale";
    if (answer === null) {
      headline.textContent = "Draw, and I will guess.";
      return;
    }
    const [first, ...others] = answer.top_k;
    headline.textContent = others.length
      ? `I see ${first.label}, or ${others.map((g) => g.label).join(", or ")}.`
      : `I see ${first.label}.`;
    for (const guess of answer.top_k) {
      const item = document.createElement("li");
      item.dataset.label = guess.label;
      item.dataset.probability = String(guess.probability);
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = guess.label;
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.style.width = `${(guess.probability * 100).toFixed(1)}%`;
      bar.append(fill);
      const percent = document.createElement("span");
      percent.className = "pct";
      percent.textContent = `${(guess.probability * 100).toFixed(1)}%`;
      item.append(label, bar, percent);
      guessList.append(item);
    }
  }

  async function describeModel() {
    const info = await (await fetch("/api/model")).json();
    const name = info.name ? `${info.name}${info.version ? ` version ${info.version}` : ""}` : info.uri;
    const alias = info.alias ? ` (${info.alias})` : "";
    const accuracy = info.test_accuracy === null ? "test accuracy unknown"
      : `test accuracy ${(info.test_accuracy * 100).toFixed(1)}%`;
    const modelLine = document.getElementById("model");
    modelLine.textContent = `Guessing: ${name}${alias} · ${accuracy}`;
    modelLine.dataset.version = info.version || "";
    modelLine.dataset.testAccuracy = String(info.test_accuracy);
    document.getElementById("knows").textContent = `It knows ${info.categories.length} things: ${info.categories.join(", ")}.`;
    if (info.save) setUpSaving(info.categories, info.save_token);
  }

  // The token comes from /api/model, which only this page can read: another site cannot save.
  function setUpSaving(categories, token) {
    const form = document.getElementById("save");
    const select = document.getElementById("label");
    for (const category of categories) select.append(new Option(category, category));
    form.hidden = false;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const saved = document.getElementById("saved");
      if (!strokes.length) { saved.textContent = "Draw something first."; return; }
      const response = await fetch("/api/save", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Save-Token": token },
        body: JSON.stringify({ label: select.value, strokes: drawing() }),
      });
      const answer = await response.json();
      saved.textContent = response.ok ? `Saved to ${answer.saved} (${answer.drawings} drawings).` : answer.error;
    });
  }

  // For tests and the curious: the strokes exactly as sent, and which drawing the guesses answer.
  window.quickdraw = { drawing, version: () => version, answered: () => answered };

  window.addEventListener("resize", resize);
  resize();
  describeModel().catch((error) => { status.textContent = `Cannot reach the model: ${error.message}`; });
})();
