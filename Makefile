# hanmadi — two commands do everything: `make demo` and `make test`.
# `make setup` installs exactly requirements.lock (hashes checked) into .venv; `make lock` refreshes the lock.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
LOCK_FLAGS := --generate-hashes --universal --python-version 3.11 -q $(if $(UPGRADE),--upgrade)

.PHONY: setup demo test lint typecheck pytest bench lock clean

setup: $(STAMP)

$(STAMP): requirements.lock requirements-build.lock scripts/setup-venv.sh
	@VENV=$(VENV) PY=$(PY) bash scripts/setup-venv.sh
	@touch $(STAMP)

demo: setup
	$(BIN)/hanmadi demo

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

test: lint typecheck pytest

bench: setup
	$(BIN)/hanmadi bench strategies --json

# Resolves pyproject.toml's ranges to exact versions with hashes for every platform (uv, itself pinned). Existing pins
# are kept where the ranges allow; `make lock UPGRADE=1` moves everything to the newest allowed release.
lock:
	@test -x $(VENV)-lock/bin/uv || ($(PY) -m venv $(VENV)-lock && $(VENV)-lock/bin/pip install -q uv==$(UV_VERSION))
	$(VENV)-lock/bin/uv pip compile pyproject.toml requirements-build.in --extra dev --extra local $(LOCK_FLAGS) -o requirements.lock
	$(VENV)-lock/bin/uv pip compile requirements-build.in -c requirements.lock $(LOCK_FLAGS) -o requirements-build.lock

clean:
	rm -rf $(VENV) $(VENV)-lock .pytest_cache .mypy_cache .ruff_cache
