# hanmadi — two commands do everything: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= dev,local

.PHONY: setup demo test lint typecheck pytest bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip wheel
	@echo "Installing hanmadi[$(EXTRAS)] (llama-cpp-python compiles once, about 5-7 minutes; pip caches the wheel)..."
	@$(BIN)/python -m pip install --progress-bar on -e ".[$(EXTRAS)]"
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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
