# LockN: `make run` starts the platform, `make test` runs every test. Both set themselves up on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
BUN_VERSION := 1.4.5
BUN := .tools/node_modules/.bin/bun
# Nothing phones out: no telemetry, no version checks.
export REFLEX_TELEMETRY_ENABLED := false
export REFLEX_CHECK_LATEST_VERSION := false

.PHONY: run dev test setup setup-test migrate worker clean help

help:
	@echo "make run    start LockN on http://localhost:$${LOCKN_PORT:-3000} (Ctrl-C stops everything)"
	@echo "make test   run the whole test suite (unit, integration, browser)"
	@echo "make setup  install everything run needs (idempotent)"
	@echo "make setup-gpu  add the GPU engines (CUDA torch for this driver, or CPU; Fish Speech, Qwen3-TTS)"
	@echo "make dev    hot-reloading development server (two ports: frontend 3000, backend 8000)"
	@echo "make prod-local  rehearse production here: proxy, 2 web replicas, 2 workers, PostgreSQL, Redis"
	@echo "make qa LOCKN_BASE_URL=http://host:port   release smoke suite against a deployment, recorded"
	@echo "make promote FROM=<base url> TO=<target>   tag a release if FROM's last QA run passed"

run: setup
	$(PY) -m backend.ops.cli run

test: setup-test
	$(PY) -m pytest

setup: $(VENV)/.installed $(BUN)

setup-test: setup $(VENV)/.installed-dev qa-browser

migrate: setup
	$(PY) -m backend.ops.cli migrate

worker: setup
	$(PY) -m backend.ops.cli worker

dev: setup
	$(PY) -m backend.ops.cli migrate
	PATH="$(CURDIR)/.tools/node_modules/.bin:$$PATH" REFLEX_USE_SYSTEM_BUN=1 REFLEX_DIR="$(CURDIR)/.tools/reflex" \
	  $(VENV)/bin/reflex run --env dev --backend-host 127.0.0.1

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt constraints.txt | $(VENV)/bin/python
	$(PIP) install -r requirements.txt -c constraints.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PIP) install -r requirements-dev.txt -c constraints.txt
	touch $@

# bun from the npm registry (Reflex would otherwise download it from elsewhere, which fails offline).
$(BUN):
	npm install --prefix .tools --no-audit --no-fund --loglevel=error bun@$(BUN_VERSION)

# A Chromium for the browser tests: Debian's when we are root, otherwise Playwright's own.
.PHONY: qa-browser
qa-browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)); \
	else $(PY) -m playwright install chromium; fi

clean:
	rm -rf .web .states qa/artifacts

# Production topology rehearsed on this machine: a proxy on LOCKN_PORT (3000) in front of two web replicas
# (3001, 3002), two workers, the machine's PostgreSQL and Redis; LOCKN_ENV=rehearsal (loopback only).
REHEARSAL_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/lockn_rehearsal
REHEARSAL_REDIS_URL ?= redis://127.0.0.1:6379/1
.PHONY: prod-local
prod-local: setup
	LOCKN_ENV=rehearsal LOCKN_DATABASE_URL=$(REHEARSAL_DATABASE_URL) LOCKN_REDIS_URL=$(REHEARSAL_REDIS_URL) \
	  LOCKN_DATA_DIR=$${LOCKN_DATA_DIR:-data/rehearsal} $(PY) -m backend.ops.cli prod-local

# Fish Speech (GPU engine) on top of the app's environment. --no-deps: its declared pins would
# downgrade pydantic and numpy under Reflex; requirements-fish.txt lists what inference really imports.
.PHONY: setup-fish
setup-fish: setup $(VENV)/.installed-fish

$(VENV)/.installed-fish: requirements-fish.txt $(VENV)/.installed
	$(PIP) install --no-deps -r requirements-fish.txt
	touch $@

# Qwen3-TTS on top of the Fish Speech layer (they share torch and transformers 4.57.3): requirements-qwen.txt.
.PHONY: setup-qwen
setup-qwen: setup-fish $(VENV)/.installed-qwen

$(VENV)/.installed-qwen: requirements-qwen.txt $(VENV)/.installed-fish
	$(PIP) install --no-deps -r requirements-qwen.txt
	touch $@

# The GPU layer on top of `make setup`: torch built for this machine's NVIDIA driver (the CPU build where there is
# none: backend/ops/torch_wheels.py chooses; TORCH_INDEX=<url> forces an index), then the Fish Speech and Qwen3-TTS
# layers. Then `models pull NAME` fetches weights and `LOCKN_ENGINES=qwen3 make worker` speaks (README, "Add a GPU
# worker").
TORCH_INDEX ?=
.PHONY: setup-gpu
setup-gpu: setup $(VENV)/.installed-gpu

$(VENV)/.installed-gpu: requirements-fish.txt requirements-qwen.txt $(VENV)/.installed
	$(PIP) install $$($(PY) -m backend.ops.torch_wheels $(TORCH_INDEX))
	$(PIP) install --no-deps -r requirements-fish.txt
	$(PIP) install --no-deps -r requirements-qwen.txt
	touch $(VENV)/.installed-fish $(VENV)/.installed-qwen $@

# Measuring on a lent GPU machine with no network (README, "GPU serving"): the wheels its image lacks, found from what
# `bench.gpu` imports, into .gpu/whl; carry .gpu there and run `bash bench/gpu_lease.sh`.
.PHONY: gpu-bundle
gpu-bundle: setup-qwen
	$(PY) -m bench.gpu_bundle --out .gpu/whl

# The peer package the README compares LockN with (faster-qwen3-tts, on its own transformers 5), into .gpu/peer:
# what LockN's bundle does not already carry; the lease measures it after LockN's bench (bench.peer_qwen).
.PHONY: gpu-bundle-peer
gpu-bundle-peer: setup
	$(PY) -m bench.gpu_bundle --peer --out .gpu/peer --shared .gpu/whl

# Release QA (README, "Release QA"): the smoke subset of qa/ against any running deployment, recorded in the
# database; JUnit XML, HTML report and screenshots in qa/artifacts/. LOCKN_QA_KEY (a key with
# tts:read,tts:write,keys:read) enables the API checks; exported, never echoed.
export LOCKN_QA_KEY
.PHONY: qa promote
qa: setup-test
	$(PY) -m backend.ops.cli qa $(if $(LOCKN_BASE_URL),--base-url "$(LOCKN_BASE_URL)") $(if $(TRIGGER),--trigger $(TRIGGER))

# Refuses unless the last QA run against FROM passed within LOCKN_PROMOTE_MAX_AGE_H; then tags release-<UTC time>
# and runs LOCKN_PROMOTE_COMMAND with FROM, TO and RELEASE_TAG in its environment.
promote: setup
	@if [ -z "$(FROM)" ] || [ -z "$(TO)" ]; then echo "usage: make promote FROM=<base url> TO=<target name>" >&2; exit 2; fi
	$(PY) -m backend.ops.cli promote --from "$(FROM)" --to "$(TO)"
