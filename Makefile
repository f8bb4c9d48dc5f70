# Two commands do all set-up on a fresh machine:
#   make run   build everything and run the exchange (OBS, TES, bots) until Ctrl-C
#   make test  build everything and run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXT_SOURCES := $(wildcard native/*.pyx native/*.pxd) setup.py
EXT_STAMP := native/.built
WORKLOAD := data/standard-1m-seed42.npy

.PHONY: run replay test bench bench-e2e build clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "setuptools>=68" "Cython>=3.0.10" "numpy>=1.26"
	$(PY) -m pip install --quiet --no-build-isolation -e '.[dev]'
	touch $@

$(EXT_STAMP): $(STAMP) $(EXT_SOURCES)
	$(PY) setup.py --quiet build_ext --inplace
	touch $@

build: $(EXT_STAMP)

$(WORKLOAD): $(EXT_STAMP)
	mkdir -p data
	$(PY) main.py workload $@ --messages 1000000 --seed 42

run: $(EXT_STAMP)
	$(PY) main.py up

replay: $(WORKLOAD)
	$(PY) main.py replay $(WORKLOAD) --out data/fills.npy

test: $(EXT_STAMP)
	$(PY) -m pytest

bench: $(EXT_STAMP)
	$(PY) main.py bench book

bench-e2e: $(EXT_STAMP)
	$(PY) main.py bench e2e

clean:
	rm -rf $(VENV) build native/*.c native/*.so native/*.html $(EXT_STAMP) data
