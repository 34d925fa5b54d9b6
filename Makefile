# The README's two commands: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test torture lint bench clean

setup: $(STAMP)

# Debian packages a real user has: exiftool writes XMP sidecars, chromium renders the
# report in its test, tesseract-ocr is `lamina ocr --engine tesseract` (run with a fixed argv),
# unar unpacks compressed RAR / CBR members for rarfile (Debian's free RAR reader; its
# `unrar-free` fails rarfile's tool check, and its 7zip has no RAR codec).
SYSTEM_PACKAGES := libimage-exiftool-perl chromium tesseract-ocr unar

$(STAMP): pyproject.toml constraints.txt Makefile
	@if [ -n "$(SYSTEM_PACKAGES)" ]; then \
	  missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then apt-get update -q && apt-get install -y -q $$missing; fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The main job on a sample collection built from photos that ship in Python packages:
# `lamina run` scans, senses, embeds, clusters, tags (examples/labels.txt) and writes the
# exports and an HTML report. Re-running it recomputes nothing that has not changed.
demo: setup
	@test -d demo/collection || $(BIN)/python -m lamina.sample demo/collection
	$(BIN)/lamina --store demo/store run --config examples/lamina.toml
	@echo "exports (tags.csv, folder_medoids.csv, config.json): demo/exports/"
	@echo "try: $(BIN)/lamina --store demo/store sql \"select * from files where status <> 'ok'\""

# CI runs this (.ci/run): ruff, mypy over the typed core, then the suite (tests/ and the
# docstring examples of src/lamina, collected by src/conftest.py).
test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -n 2

# The reliability suite in full (tests/reliability with LAMINA_TORTURE=full: 20 kills, every
# fault three times, property tests, every command over the hostile collection), a
# time-boxed fuzz run of each parser, then docs/reliability.md from the figures. `make test`
# runs the same suite in a bounded form. LAMINA_TORTURE_SEED=N replays a run's choices.
FUZZ_SECONDS ?= 60
torture: setup
	$(BIN)/python -m tests.reliability.torture --fuzz-seconds $(FUZZ_SECONDS)

# mypy checks the typed core (src/lamina/core, jobs and passes: see [tool.mypy]).
lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/python -m mypy

bench: setup
	$(BIN)/python bench/scan.py

clean:
	rm -rf $(VENV) demo .pytest_cache .ruff_cache
