# Two commands do all set-up on a fresh machine:
#   make run        build everything and run the exchange (OBS, TES, bots) until Ctrl-C
#   make test       build everything and run the test suite
# Cleaning up:
#   make clean      delete what the build made (.venv, build/, the compiled extension); never data
#   make wipe-data  delete the exchange's state in data/ (or DATA=DIR): journals, database, tick
#                   store, keys, workloads, saying so first; refused while a server holds a
#                   directory in it. The exchange then starts afresh.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# what feeds the extension: setup.py generates native/constants.pxd from the engine's constants
EXT_SOURCES := $(wildcard native/*.pyx native/*.pxd native/*.h) setup.py engine/types.py engine/stream.py engine/snapshot.py
EXT_STAMP := native/.built
DATA ?= data
WORKLOAD := $(DATA)/standard-1m-seed42.npy

.PHONY: run replay test bench bench-e2e build browser quickfix screenshots clean wipe-data

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
	mkdir -p $(DATA)
	$(PY) main.py workload $@ --messages 1000000 --seed 42

run: $(EXT_STAMP)
	$(PY) main.py up

replay: $(WORKLOAD)
	$(PY) main.py replay $(WORKLOAD) --out $(DATA)/fills.npy

# The browser tests drive Debian's Chromium (Playwright cannot download its own browser here):
# installed when missing, where apt-get and root are available; otherwise those tests skip, saying why.
browser:
	@command -v chromium >/dev/null || { \
	    if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	        echo "installing Debian's chromium for the browser tests"; \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
	        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
	        || echo "could not install chromium: the browser tests will skip"; \
	    else echo "no chromium, and no apt-get as root to install it: the browser tests will skip"; fi; }

# The FIX interoperability test builds an initiator against Debian's QuickFIX (libquickfix-dev):
# installed when missing, where apt-get and root are available; otherwise that test skips, saying why.
quickfix:
	@[ -e /usr/include/quickfix/Session.h ] || { \
	    if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	        echo "installing Debian's QuickFIX (libquickfix-dev) for the FIX interoperability test"; \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -q libquickfix-dev >/dev/null \
	        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libquickfix-dev >/dev/null; } \
	        || echo "could not install QuickFIX: the FIX interoperability test will skip"; \
	    else echo "no QuickFIX, and no apt-get as root to install it: the FIX interoperability test will skip"; fi; }

test: $(EXT_STAMP) browser quickfix
	$(PY) -m pytest

# The README's pictures of the web apps, taken by the browser tests.
screenshots: $(EXT_STAMP) browser
	EXCHANGE_SCREENSHOTS=docs $(PY) -m pytest -q tests/test_browser.py

bench: $(EXT_STAMP)
	$(PY) main.py bench book

bench-e2e: $(EXT_STAMP)
	$(PY) main.py bench e2e

clean:
	rm -rf $(VENV) build native/*.c native/*.so native/*.html native/constants.pxd $(EXT_STAMP)

# A running server holds an flock on its directory (servers/journal.py DirectoryLock).
wipe-data:
	@if command -v flock >/dev/null; then for dir in $(DATA)/*/; do \
	    [ ! -d "$$dir" ] || flock -n "$$dir" true || { \
	        echo "wipe-data: $$dir is in use by a running server: stop the exchange first; nothing deleted"; exit 1; }; \
	done; fi
	@echo "wipe-data: deleting $(DATA)/, the exchange's state: the order book and TES journals and"
	@echo "snapshots, the database (exchange.sqlite), the tick store, the recorder's status, the CURVE"
	@echo "keys and generated workloads. The next start begins with empty books and no history."
	rm -rf $(DATA)
