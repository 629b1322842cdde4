# QuickDraw DAG: every command bootstraps its own virtual environment.
#   make run  ARGS='--set data.source=../shared/data/quickdraw/simplified'
#   make test
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp$(if $(filter 1 yes true,$(GPU)),-gpu)
ARGS ?=
# GPU=1: also JAX's CUDA build (the `gpu` extra); train on it with KERAS_BACKEND=jax (docs/SCALING.md "A GPU").
GPU ?=
comma := ,
EXTRAS := dev$(if $(filter 1 yes true,$(GPU)),$(comma)gpu)

# Quiet, offline-friendly defaults for every command run from here.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= true
export MLFLOW_DISABLE_TELEMETRY ?= true
export TF_CPP_MIN_LOG_LEVEL ?= 2
# Our stage loggers show up in Prefect's console output and UI.
export PREFECT_LOGGING_EXTRA_LOGGERS ?= tasks,quickdraw_dag
export PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW ?= ignore

.PHONY: help install run paint test lint format demo compare predict serve-model play bench bench-parse bench-raster bench-paint reliability repro repro-paint exp queue push pull reproduce ui serve prefect-server clean

## Every command with its description (the `##` lines above each target).
help:
	@awk -v model=$(MODEL_PORT) -v play=$(PLAY_PORT) -v ui=$(UI_PORT) -v prefect=$(PREFECT_PORT) \
		'/^## /{text = text (text ? " " : "") substr($$0, 4); next} /^([A-Z_]+ \?=|# )/{next} \
		/^[a-z][a-z-]*:/ && text {split($$0, t, ":"); gsub(/\$$\(MODEL_PORT\)/, model, text); \
			gsub(/\$$\(PLAY_PORT\)/, play, text); gsub(/\$$\(UI_PORT\)/, ui, text); \
			gsub(/\$$\(PREFECT_PORT\)/, prefect, text); printf "  make %-15s %s\n", t[1], text} {text = ""}' \
		$(MAKEFILE_LIST)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the pinned dependencies into $(VENV) (the first time takes a few minutes; later, only what changed)"
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[$(EXTRAS)]"
	$(PY) -m quickdraw_dag.data.compiled
	@touch $(STAMP)

## Create .venv if missing and install the pinned dependencies (every command does it first).
install: $(STAMP)

## Run the pipeline with params.yaml (plus any --set overrides in ARGS).
run: $(STAMP)
	$(PY) -m flows.pipeline $(ARGS)

## The paint flow, a pipeline of its own in paint/: an MLP paints paint.image (paint/params.yaml) from pixel
## coordinates; skipped when unchanged since paint/dvc.lock (--force paints anyway).
paint: $(STAMP)
	$(PY) -m flows.paint $(ARGS)

## The whole pipeline offline on the shipped real sample, in a workspace of its own, .demo/ (logs to ./mlflow.db).
demo: $(STAMP)
	$(PY) -m flows.demo $(ARGS)

## Classify drawings with the registered champion: make predict ARGS='FILE... [--json] [--model URI]'.
predict: $(STAMP)
	$(PY) -m quickdraw_dag.serving.predict $(ARGS)

## Serve the champion with MLflow on 127.0.0.1:$(MODEL_PORT) (POST /invocations); MODEL_URI picks another model.
MODEL_PORT ?= 5001
MODEL_URI ?= models:/quickdraw-cnn@champion
serve-model: $(STAMP)
	$(PY) -m quickdraw_dag.serving.registry $(MODEL_URI)
	MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}" PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
		$(VENV)/bin/mlflow models serve -m $(MODEL_URI) --env-manager local --host 127.0.0.1 --port $(MODEL_PORT)

## The drawing page on http://127.0.0.1:$(PLAY_PORT)/ (ARGS='--save' keeps labelled drawings in data/user/).
PLAY_PORT ?= 5002
play: $(STAMP)
	$(PY) -m quickdraw_dag.serving.server --port $(PLAY_PORT) $(ARGS)

## Lint and format checks, then the whole test suite.
test: $(STAMP) lint
	$(PY) -m pytest

## ruff: lint and formatting (configured in pyproject.toml); `make format` rewrites the files.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## Rewrite the files as ruff formats and fixes them.
format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## Every performance figure, measured side by side, as one markdown table (about 15 minutes).
bench: $(STAMP)
	$(PY) -m bench.all $(ARGS)

## Binary parsing: ours against the quickdraw package, side by side.
bench-parse: $(STAMP)
	$(PY) -m bench.parse $(ARGS)

## Rasterizing: ours vs the quickdraw package's image path, same drawings, same run.
bench-raster: $(STAMP)
	$(PY) -m bench.raster $(ARGS)

## Paint quality and time: plain MLP against Fourier features on matplotlib's samples.
bench-paint: $(STAMP)
	$(PY) -m bench.paint $(ARGS)

## Fault, fuzz, kill, concurrency and security tests, tabulated into docs/RELIABILITY.md.
reliability: $(STAMP)
	$(PY) -m bench.reliability $(ARGS)

# DVC with the venv first on PATH: the stage commands it runs (`python -m tasks.<stage>`), and the queue
# workers it starts (`dvc` itself), find the project's environment.
DVC := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc

## Reproduce the doodle pipeline with DVC (the venv's python runs each stage).
repro: $(STAMP)
	$(DVC) repro $(ARGS)

## A DVC experiment: make exp ARGS='-S train.seed=1' (add --queue to queue it; `make queue` runs the queue).
exp: $(STAMP)
	$(DVC) exp run $(ARGS)

## Run the queued experiments (dvc queue start), each in a temporary copy, then list them (dvc exp show).
queue: $(STAMP)
	$(DVC) queue start $(ARGS)
	@while $(DVC) queue status | grep -qE 'Queued|Running'; do sleep 5; done
	$(DVC) queue status
	$(DVC) exp show --only-changed

## Send data and models to the default DVC remote (dvc push).
push: $(STAMP)
	$(DVC) push $(ARGS)

## Get data and models from the default DVC remote (dvc pull).
pull: $(STAMP)
	$(DVC) pull $(ARGS)

## Check out a past MLflow run's code, params, data and model, evaluate it again, compare: make reproduce RUN=<run id>.
reproduce: $(STAMP)
	@test -n "$(RUN)" || { echo "usage: make reproduce RUN=<MLflow run id> [ARGS='--keep']" >&2; exit 2; }
	$(PY) -m quickdraw_dag.orchestration.reproduce $(RUN) $(ARGS)

## Reproduce the paint pipeline with DVC (its own project in paint/).
repro-paint: $(STAMP)
	$(DVC) --cd paint repro $(ARGS)

## The last pipeline runs side by side from MLflow (ARGS='-n 5 --plot curves.png').
compare: $(STAMP)
	$(PY) -m quickdraw_dag.tracking.compare $(ARGS)

## The MLflow UI on the default local store, on 127.0.0.1 only.
UI_PORT ?= 5000
# The link is printed once the port answers (the UI takes tens of seconds to start), not before.
ui: $(STAMP)
	@$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port $(UI_PORT) & server=$$!; \
	trap 'kill $$server 2>/dev/null; wait $$server' INT TERM; \
	$(PY) -m quickdraw_dag.tracking.store ui-url --port $(UI_PORT) --when-up $$server 2>/dev/null; \
	wait $$server

## Serve the scheduled deployment (cron from params.yaml); set PREFECT_API_URL to use a server.
serve: $(STAMP)
	$(PY) -m flows.deploy serve

## A local Prefect server with its UI on http://127.0.0.1:$(PREFECT_PORT), on 127.0.0.1 only; its UI calls the API on
## that same port (PREFECT_SERVER_UI_API_URL). Point flows at it: export PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api
PREFECT_PORT ?= 4200
prefect-server: $(STAMP)
	PREFECT_SERVER_UI_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(VENV)/bin/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

## Remove .venv and the test caches.
clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
