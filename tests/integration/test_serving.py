"""Using the champion: no train/serve skew, the registered pyfunc, predict, `mlflow models serve`, the page's API.

Every test reads the same small registered model (`champion` in conftest: trained on three of the
sample's categories and registered in a temporary SQLite store), so they run on one xdist worker.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import orjson
import pandas as pd
import pytest
import requests
from PIL import Image

from quickdraw_dag.artifacts import Catalog, read_manifest
from quickdraw_dag.config.schema import DataParams, FetchParams, PreprocessParams, SplitParams
from quickdraw_dag.data.formats import iter_drawings
from quickdraw_dag.data.formats.binary import iter_binary
from quickdraw_dag.runtime.fanout import serial_map
from quickdraw_dag.serving.classifier import CARD_FILE
from quickdraw_dag.serving.predict import main as predict_main
from quickdraw_dag.serving.predict import predict_files
from quickdraw_dag.serving.pyfunc import images_of_rows
from quickdraw_dag.serving.registry import DEFAULT_MODEL_URI, ServedModel, load_served_model
from quickdraw_dag.serving.server import Game
from quickdraw_dag.serving.strokes import parse_drawing
from quickdraw_dag.training.model import load_model
from tasks.fetch import fetch
from tasks.preprocess import preprocess
from tasks.split import split
from tests.conftest import Champion
from tests.helpers import serve_page

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("champion")]
CATEGORIES = ("bear", "duck", "frog")
JSON = {"Content-Type": "application/json"}


def sample_records(samples: Path, category: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (samples / "simplified" / f"{category}.ndjson").read_bytes().splitlines()]


def as_screen_strokes(drawing: list, scale: float = 2.5, shift: float = 31.25) -> list:
    """A simplified drawing as a person's raw strokes: screen pixels (floats) and times in ms."""
    return [
        [[x * scale + shift for x in xs], [y * scale + shift for y in ys], [40 * i + 1000 * s for i in range(len(xs))]]
        for s, (xs, ys) in enumerate(drawing)
    ]


def raw_record(word: str, drawing: list, key_id: int = 1) -> dict[str, Any]:
    """A line of Google's raw ndjson."""
    return {
        "word": word,
        "countrycode": "US",
        "timestamp": "2017-03-01 10:00:00.1 UTC",
        "recognized": True,
        "key_id": str(key_id),
        "drawing": drawing,
    }


@pytest.fixture(scope="module")
def served(champion: Champion) -> ServedModel:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", champion.tracking_uri)
        return load_served_model()


# ----- 2. one input path: no skew -----


def test_served_images_equal_the_preprocess_stages_byte_for_byte(
    served: ServedModel, champion_store: Champion, samples: Path, tmp_path: Path
) -> None:
    """Real simplified samples through fetch → split → preprocess, and the same strokes through the pyfunc."""
    catalog = Catalog.under(tmp_path)
    data = DataParams(source=str(samples), categories=CATEGORIES)
    fetch(data, FetchParams(local_format="simplified"), catalog)
    split(data, SplitParams(recognized_only=False), catalog)
    preprocess(data, PreprocessParams(), catalog, serial_map)
    by_key = {int(r["key_id"]): r["drawing"] for c in CATEGORIES for r in sample_records(samples, c)}

    def rows_of_split(part: str) -> list[dict[str, Any]]:
        # preprocess writes a split's rows in data.categories order, each category in its shard's order;
        # the rows are what a client sends: the sample's own JSON strokes
        shards = [catalog.shard(part, c, "strokes") for c in CATEGORIES]
        return [
            {"strokes": by_key[int(key)]} for shard in shards for batch in iter_binary(shard) for key in batch.key_id
        ]

    compared = 0
    for part in ("train", "val", "test"):
        rows = rows_of_split(part)
        expected = np.load(catalog.images(part), allow_pickle=False)
        got = images_of_rows(served.classifier, rows)
        assert got.dtype == np.uint8 and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes(), f"{part}: served images differ from preprocess's"
        compared += len(rows)
    assert compared == 75  # every drawing of the three categories

    # The registered pyfunc's probabilities are the Keras model's on preprocess's own test images.
    rows = rows_of_split("test")
    answers = mlflow.pyfunc.load_model(DEFAULT_MODEL_URI).predict(pd.DataFrame(rows))
    keras_model = load_model(str(champion_store.catalog.model))
    test_images = np.load(catalog.images("test"), allow_pickle=False)
    expected = keras_model.predict(test_images, batch_size=len(test_images), verbose=0)
    assert len(answers) == len(rows) == expected.shape[0]
    for answer, probabilities in zip(answers, expected):
        got = {entry["label"]: entry["probability"] for entry in answer["top_k"]}
        assert got == {c: float(p) for c, p in zip(CATEGORIES, probabilities)}  # 3 classes: top-3 is all of them
        assert answer["label"] == CATEGORIES[int(np.argmax(probabilities))]


# ----- 3. the registered version is a pyfunc taking strokes and images -----


def test_each_registered_version_carries_the_strokes_pyfunc(champion_store: Champion) -> None:
    info = mlflow.models.get_model_info(DEFAULT_MODEL_URI)
    assert "python_function" in info.flavors
    assert [c.name for c in info.signature.inputs.inputs] == ["strokes", "format", "image"]
    assert [c.name for c in info.signature.outputs.inputs] == ["label", "probability", "top_k"]
    assert [(p.name, p.default) for p in info.signature.params.params] == [("top_k", 3)]

    local = Path(mlflow.artifacts.download_artifacts(DEFAULT_MODEL_URI))
    card = json.loads((local / "artifacts" / CARD_FILE).read_text())
    version = mlflow.MlflowClient().get_model_version_by_alias("quickdraw-cnn", "champion")
    assert card == {
        "categories": list(CATEGORIES),
        "image_size": 28,
        "line_width": 16.0,
        "test_accuracy": pytest.approx(float(version.tags["test_accuracy"]), abs=1e-6),
    }
    assert (local / "code" / "quickdraw_dag" / "data" / "raster.py").is_file()  # the code it was logged with

    example = mlflow.models.Model.load(local).load_input_example(local)
    strokes_row, image_row = example.to_dict(orient="records")
    assert strokes_row["format"] == "raw" and len(strokes_row["strokes"][0]) == 3  # [xs, ys, ts]
    assert np.asarray(image_row["image"]).shape == (28, 28)
    answers = mlflow.pyfunc.load_model(DEFAULT_MODEL_URI).predict(example)
    for answer in answers:
        probabilities = [entry["probability"] for entry in answer["top_k"]]
        assert [e["label"] for e in answer["top_k"]] != [] and probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        assert (answer["label"], answer["probability"]) == (answer["top_k"][0]["label"], probabilities[0])
    one = mlflow.pyfunc.load_model(DEFAULT_MODEL_URI).predict(example, params={"top_k": 1})
    assert [len(a["top_k"]) for a in one] == [1, 1] and [a["label"] for a in one] == [a["label"] for a in answers]


# ----- 1. predict -----


def test_predict_reads_every_format_and_prints_the_same_fields(
    served: ServedModel, champion: Champion, samples: Path, tmp_path: Path
) -> None:
    frog = sample_records(samples, "frog")
    raw = tmp_path / "frog-raw.ndjson"
    raw.write_text(
        "".join(
            json.dumps(raw_record("frog", as_screen_strokes(r["drawing"]), i)) + "\n" for i, r in enumerate(frog[:4])
        )
    )
    strokes = tmp_path / "mine.json"
    strokes.write_text(json.dumps([as_screen_strokes(frog[0]["drawing"]), frog[1]["drawing"]]))
    bitmaps = np.load(samples / "numpy_bitmap" / "duck.npy", allow_pickle=False)
    Image.fromarray(255 - bitmaps[0].reshape(28, 28)).resize((280, 280)).save(tmp_path / "duck.png")  # dark on light
    files = [
        samples / "simplified" / "frog.ndjson",
        raw,
        strokes,
        samples / "numpy_bitmap" / "duck.npy",
        tmp_path / "duck.png",
    ]

    done = subprocess.run(
        [sys.executable, "-m", "quickdraw_dag.serving.predict", *map(str, files), "--json"],
        cwd=tmp_path,
        env=champion.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [sum(1 for p in printed if p["file"] == str(f)) for f in files] == [25, 4, 2, 1000, 1]
    assert printed[0]["drawing"] == "line 1" and printed[29]["drawing"] == "drawing 0"
    assert printed[31]["drawing"] == "row 0" and printed[-1]["drawing"] == "image"
    for result in printed:
        assert set(result) == {"file", "drawing", "label", "probability", "top_k"}
        assert [set(e) for e in result["top_k"]] == [{"label", "probability"}] * 3
    # the command prints what the functions compute in this process (same model, same batches)
    assert printed == json.loads(json.dumps(list(predict_files(served.classifier, files))))
    # the raw copy of a drawing and its simplified twin are one drawing: Google's simplification joins them
    twin_raw, twin = printed[25], printed[0]
    assert twin_raw["label"] == twin["label"] and twin_raw["probability"] == pytest.approx(
        twin["probability"], abs=0.02
    )
    assert printed[29] == {**printed[25], "file": str(strokes), "drawing": "drawing 0"}  # the same raw strokes
    # most of the duck bitmaps are read as ducks (this tiny model's test accuracy is about 0.8)
    ducks = [p["label"] for p in printed if p["file"].endswith("duck.npy")]
    assert ducks.count("duck") > 500
    assert "1032 drawing(s) from 5 file(s)" in done.stderr


def test_predict_prints_a_table(champion_store: Champion, samples: Path, capsys: pytest.CaptureFixture) -> None:
    assert predict_main([str(samples / "simplified" / "duck.ndjson"), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["file", "drawing", "1st", "2nd"] and len(lines) == 26
    assert lines[1].split()[:3] == [str(samples / "simplified" / "duck.ndjson"), "line", "1"]
    assert lines[1].split()[3] in CATEGORIES and lines[1].split()[4].endswith("%")


def test_predict_errors_exit_2_and_say_where(
    champion_store: Champion, samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    bad = tmp_path / "bear.ndjson"
    lines = (samples / "simplified" / "bear.ndjson").read_bytes().splitlines()
    bad.write_bytes(lines[0] + b"\n" + re.sub(rb'("drawing":\[\[\[)\d+', rb'\1"x"', lines[1], count=1) + b"\n")
    assert predict_main([str(bad)]) == 2
    assert f"error: {bad}, line 2, byte offset {len(lines[0]) + 1}: stroke 0: coordinate 'x'" in capsys.readouterr().err

    (tmp_path / "notes.txt").write_text("a cat")
    assert predict_main([str(samples / "simplified" / "bear.ndjson"), str(tmp_path / "notes.txt")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "notes.txt: cannot tell what this holds" in captured.err  # before any output

    assert predict_main([str(bad), "--model", "models:/quickdraw-cnn@nosuch"]) == 2
    err = capsys.readouterr().err
    assert "no model 'quickdraw-cnn' with alias 'nosuch'" in err and "make demo" in err

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{empty / 'mlflow.db'}")
    assert predict_main([str(samples / "simplified" / "bear.ndjson")]) == 2
    err = capsys.readouterr().err
    assert "no MLflow store at" in err and "run `make demo`" in err
    assert list(empty.iterdir()) == []  # no empty store created on the way


def test_the_page_without_a_champion_says_how_to_get_one(tmp_path: Path, monkeypatch, capsys) -> None:
    from quickdraw_dag.serving.server import main as play_main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert play_main(["--port", "0"]) == 2
    assert "run `make demo`" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


# ----- 3. mlflow models serve -----


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def mlflow_serving(champion: Champion, cwd: Path) -> Iterator[str]:
    """`mlflow models serve` of the champion, as `make serve-model` runs it; yields its URL."""
    port = free_port()
    command = ["mlflow", "models", "serve", "-m", DEFAULT_MODEL_URI, "--env-manager", "local"]
    log = (cwd / "serve.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / command[0]), *command[1:], "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd,
        env=champion.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its uvicorn child goes down with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None, (cwd / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow models serve did not answer /ping"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_mlflow_models_serve_answers_strokes_like_predict(
    served: ServedModel, champion: Champion, samples: Path, tmp_path: Path
) -> None:
    frog = sample_records(samples, "frog")
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps(as_screen_strokes(frog[3]["drawing"])))
    expected_file = list(predict_files(served.classifier, [samples / "simplified" / "frog.ndjson"]))
    (expected_raw,) = predict_files(served.classifier, [mine])
    with mlflow_serving(champion, tmp_path) as url:
        # the whole file in one request: the same batch predict classifies
        records = {"dataframe_records": [{"strokes": r["drawing"]} for r in frog]}
        answer = requests.post(f"{url}/invocations", json=records, timeout=120)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [
            {k: e[k] for k in ("label", "probability", "top_k")} for e in expected_file
        ]
        # a person's raw strokes, as curl would send them
        raw = {"dataframe_records": [{"strokes": as_screen_strokes(frog[3]["drawing"]), "format": "raw"}]}
        answer = requests.post(f"{url}/invocations", json=raw, timeout=60)
        assert answer.json()["predictions"] == [{k: expected_raw[k] for k in ("label", "probability", "top_k")}]
        # an image and the top_k param
        image = np.load(samples / "numpy_bitmap" / "frog.npy", allow_pickle=False)[0].reshape(28, 28).tolist()
        answer = requests.post(
            f"{url}/invocations", json={"dataframe_records": [{"image": image}], "params": {"top_k": 2}}, timeout=60
        )
        assert len(answer.json()["predictions"][0]["top_k"]) == 2
        # bad strokes: a 400 that says which row and why
        bad = requests.post(
            f"{url}/invocations", json={"dataframe_records": [{"strokes": [[[1, 2], [3]]]}]}, timeout=60
        )
        assert bad.status_code == 400 and "row 0: stroke 0: x and y differ in length" in bad.json()["message"]


# ----- 4. the page's API -----


def test_the_page_is_local_and_guesses_like_predict(served: ServedModel, samples: Path, tmp_path: Path) -> None:
    drawing = as_screen_strokes(sample_records(samples, "bear")[0]["drawing"])
    (tmp_path / "bear.json").write_text(json.dumps(drawing))
    (expected,) = predict_files(served.classifier, [tmp_path / "bear.json"])
    with serve_page(Game(served)) as url:
        html = requests.get(f"{url}/", timeout=10)
        assert html.status_code == 200 and '<canvas id="canvas"' in html.text
        assert html.headers["Content-Security-Policy"].startswith("default-src 'self'")
        for name in ("/static/app.js", "/static/style.css", "/favicon.svg"):
            assert requests.get(f"{url}{name}", timeout=10).status_code == 200
        for text in (html.text, requests.get(f"{url}/static/app.js", timeout=10).text):
            assert "http://" not in text and "https://" not in text  # nothing from elsewhere: works offline
        model = requests.get(f"{url}/api/model", timeout=10).json()
        assert (model["name"], model["version"], model["alias"]) == ("quickdraw-cnn", "1", "champion")
        assert model["categories"] == list(CATEGORIES) and model["save"] is False
        assert model["test_accuracy"] == served.test_accuracy > 0.5
        guess = requests.post(f"{url}/api/guess", json={"strokes": drawing, "format": "raw"}, timeout=30).json()
        assert guess == {k: expected[k] for k in ("label", "probability", "top_k")}
        bad = requests.post(f"{url}/api/guess", data=b"{not json", headers=JSON, timeout=10)
        assert bad.status_code == 400 and "error" in bad.json()
        empty = requests.post(f"{url}/api/guess", json={"strokes": []}, timeout=10)
        assert empty.status_code == 400 and "row 0: a drawing must be a non-empty list" in empty.json()["error"]
        assert (
            requests.post(f"{url}/api/save", json={"label": "bear", "strokes": drawing}, timeout=10).status_code == 403
        )
        assert requests.get(f"{url}/api/model", headers={"Host": "attacker.example"}, timeout=10).status_code == 403
        assert requests.get(f"{url}/../params.yaml", timeout=10).status_code == 404
        huge = requests.post(f"{url}/api/guess", data=b" " * (5 << 20), headers=JSON, timeout=30)
        assert huge.status_code == 413


def test_saved_drawings_are_googles_raw_format_and_data_source_reads_them(
    served: ServedModel, samples: Path, tmp_path: Path
) -> None:
    user = tmp_path / "data" / "user"
    sent = {
        "bear": [r["drawing"] for r in sample_records(samples, "bear")[:2]],
        "frog": [sample_records(samples, "frog")[0]["drawing"]],
    }
    with serve_page(Game(served, user)) as url:
        token = {"X-Save-Token": requests.get(f"{url}/api/model", timeout=10).json()["save_token"]}
        for label, drawings in sent.items():
            for number, drawing in enumerate(drawings, start=1):
                answer = requests.post(
                    f"{url}/api/save",
                    json={"label": label, "strokes": as_screen_strokes(drawing)},
                    headers=token,
                    timeout=30,
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["saved"] == str(user / f"{label}.ndjson") and answer.json()["drawings"] == number
        refused = requests.post(
            f"{url}/api/save",
            json={"label": "../../etc/passwd", "strokes": as_screen_strokes(sent["frog"][0])},
            headers=token,
            timeout=10,
        )
        assert refused.status_code == 400 and "not one of Quick, Draw!'s category names" in refused.json()["error"]
        simplified = requests.post(
            f"{url}/api/save", json={"label": "frog", "strokes": sent["frog"][0]}, headers=token, timeout=10
        )
        assert simplified.status_code == 400  # the raw format carries times: [xs, ys, ts]
    assert sorted(p.name for p in user.iterdir()) == ["bear.ndjson", "frog.ndjson"]  # no temporaries left

    # data.source reads the folder back like any of Google's: raw ndjson, simplified on the way in
    catalog = Catalog.under(tmp_path / "workspace")
    manifest = fetch(DataParams(source=str(user), categories=("bear", "frog")), FetchParams(), catalog)
    assert {c: (e["format"], e["drawings"]) for c, e in manifest["categories"].items()} == {
        "bear": ("raw", 2),
        "frog": ("raw", 1),
    }
    assert read_manifest(catalog)["drawings"] == 3
    (batch,) = iter_drawings(user / "bear.ndjson", "raw", category="bear")
    for index, drawing in enumerate(sent["bear"]):
        expected = parse_drawing(as_screen_strokes(drawing), "raw")
        assert [(x.tolist(), y.tolist()) for x, y in batch.strokes(index)] == [
            (x.tolist(), y.tolist()) for x, y in expected
        ]
