# Two commands do all the set-up:  `make demo` (the main job) and `make test` (the test suite).
# Both create .venv on first use. Where there is no GPU, torch is pinned to a CPU build; on a
# CUDA machine run `make setup TORCH=torch` (or any CUDA build of torch) first.

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.simgan-installed

.PHONY: setup demo demo-quick test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

demo: setup
	$(BIN)/simgan demo --out demo-$$(date +%Y%m%d-%H%M%S)

demo-quick: setup
	$(BIN)/simgan demo --quick --out demo-quick-$$(date +%Y%m%d-%H%M%S)

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/simgan bench

clean:
	rm -rf $(VENV) .pytest_cache
