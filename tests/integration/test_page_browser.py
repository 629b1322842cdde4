"""The drawing page in headless Chromium: a real sample replayed as pointer events guesses as `predict` does.

The page runs as `make play` runs it (`python -m quickdraw_dag.serving.server`, a subprocess on
127.0.0.1). Chromium draws a real drawing from `samples/quickdraw/simplified/` on the canvas with a
mouse, then with a pen and a finger; the guesses the page shows (labels, probabilities, the
percentages a person reads) must equal `predict --json` on the strokes the page sent. A screenshot
of the page is saved (`QUICKDRAW_SCREENSHOTS=<dir>` keeps a copy).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from tests.browser import Browser
from tests.conftest import Champion

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("champion")]

SHOWN = """return [...document.querySelectorAll('#guesses li')].map(li =>
    [li.dataset.label, Number(li.dataset.probability), li.querySelector('.pct').textContent])"""
SETTLED = """const q = window.quickdraw, list = document.getElementById('guesses');
    return q.answered() === q.version() && list.dataset.state !== 'stale'
        && list.dataset.version === String(q.version())"""
RESOURCES = "return performance.getEntriesByType('resource').map(r => r.name)"
BOXES = """const box = (id) => document.getElementById(id).getBoundingClientRect().toJSON();
    return {canvas: box('canvas'), guesses: box('guesses')}"""
MODEL_LINE = "const m = document.getElementById('model'); return m.dataset.version && m.textContent"


@pytest.fixture()
def play(champion: Champion, tmp_path: Path) -> Iterator[str]:
    """`python -m quickdraw_dag.serving.server --port 0` (what `make play` runs); yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "quickdraw_dag.serving.server", "--port", "0"],
        cwd=tmp_path,
        env=champion.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        seen = []
        while True:
            line = lines.get(timeout=240)
            seen.append(line)
            if line.startswith("play: "):
                yield line.split()[1]
                break
            assert process.poll() is None, "".join(seen)
    finally:
        process.terminate()
        process.wait(timeout=30)


def predict_json(champion: Champion, path: Path) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "quickdraw_dag.serving.predict", str(path), "--json"],
        env=champion.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def replay(browser: Browser, drawing: list, pointer: str) -> list:
    """Draw a simplified drawing (0-255) on the canvas with `pointer`; returns the strokes the page holds."""
    browser.click("#clear")
    browser.wait_for(SETTLED)
    box = browser.execute("return document.getElementById('canvas').getBoundingClientRect().toJSON()")
    margin, scale = 24, (box["width"] - 48) / 255
    strokes = [
        ([box["left"] + margin + x * scale for x in xs], [box["top"] + margin + y * scale for y in ys])
        for xs, ys in drawing
    ]
    browser.pointer_strokes(strokes, pointer)
    browser.wait_for(SETTLED)
    return browser.execute("return window.quickdraw.drawing()")


def test_the_page_guesses_a_replayed_drawing_as_predict_does(
    browser: Browser, play: str, champion: Champion, samples: Path, tmp_path: Path
) -> None:
    record = orjson.loads((samples / "simplified" / "frog.ndjson").read_bytes().splitlines()[0])
    browser.get(play)
    model_line = browser.wait_for(MODEL_LINE)
    assert model_line.startswith("Guessing: quickdraw-cnn version 1 (champion) · test accuracy ")
    assert browser.execute("return getComputedStyle(document.getElementById('save')).display") == "none"  # off

    shown_by = {}
    for pointer in ("mouse", "pen", "touch"):
        sent = replay(browser, record["drawing"], pointer)
        assert len(sent) == len(record["drawing"])  # one stroke per pointer down/up
        # a point per move (a dot, which Google stores as two equal points, is one pointer position)
        assert [len(xs) for xs, _, _ in sent] == [
            len({*zip(xs, ys)}) if len(xs) == 2 else len(xs) for xs, ys in record["drawing"]
        ]
        shown_by[pointer] = (sent, browser.execute(SHOWN))
        if pointer == "mouse":
            browser.screenshot(tmp_path / "play.png")
            boxes = browser.execute(BOXES)

    sent, shown = shown_by["mouse"]
    raw = tmp_path / "frog-from-page.ndjson"
    page_record = {**record, "key_id": "1", "drawing": sent}  # Google's raw format: what the page sent
    raw.write_text(json.dumps(page_record) + "\n")
    (predicted,) = predict_json(champion, raw)
    assert [label for label, _, _ in shown] == [e["label"] for e in predicted["top_k"]]
    assert [p for _, p, _ in shown] == [e["probability"] for e in predicted["top_k"]]  # exactly: one input path
    assert [text for _, _, text in shown] == [f"{e['probability'] * 100:.1f}%" for e in predicted["top_k"]]
    headline = browser.execute("return document.getElementById('headline').textContent")
    assert headline == f"I see {shown[0][0]}, or {shown[1][0]}, or {shown[2][0]}."
    # pen and touch draw the same strokes, so the same guesses
    for pointer in ("pen", "touch"):
        assert [s[:2] for s in shown_by[pointer][0]] == [s[:2] for s in sent]
        assert shown_by[pointer][1] == shown

    # undo takes the last stroke away and the guesses follow; clear empties both
    browser.click("#undo")
    browser.wait_for(SETTLED)
    assert len(browser.execute("return window.quickdraw.drawing()")) == len(sent) - 1
    raw.write_text(json.dumps({**page_record, "drawing": sent[:-1]}) + "\n")
    (after_undo,) = predict_json(champion, raw)
    assert [p for _, p, _ in browser.execute(SHOWN)] == [e["probability"] for e in after_undo["top_k"]]
    browser.click("#clear")
    browser.wait_for(SETTLED)
    assert browser.execute(SHOWN) == [] and browser.execute("return window.quickdraw.drawing()") == []

    assert browser.console_errors() == []  # no script error, nothing refused by the page's CSP
    resources = browser.execute(RESOURCES)
    assert resources and all(name.startswith(play) for name in resources)  # scripts, style, calls: all local

    # the screenshot shows the drawing on the canvas and the guesses beside it
    shot = np.asarray(Image.open(tmp_path / "play.png").convert("L"))
    box = boxes["canvas"]
    canvas_area = shot[int(box["top"]) + 8 : int(box["bottom"]) - 8, int(box["left"]) + 8 : int(box["right"]) - 8]
    assert (canvas_area > 240).mean() > 0.8 and (canvas_area < 80).mean() > 0.01  # dark strokes on white
    box = boxes["guesses"]
    assert box["height"] > 60 and box["bottom"] < shot.shape[0] and box["right"] < shot.shape[1]  # in the picture
    guess_area = shot[int(box["top"]) : int(box["bottom"]), int(box["left"]) : int(box["right"])]
    assert (guess_area < 128).mean() > 0.02  # labels and bars drawn there
    if os.environ.get("QUICKDRAW_SCREENSHOTS"):
        target = Path(os.environ["QUICKDRAW_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tmp_path / "play.png", target / "play.png")
