# `make run` and `make test` create .venv and install everything from pyproject.toml + constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= runs
REGRESS_OUT ?= .regress-runs
# extra pytest arguments, e.g. TEST_ARGS='-n 2 --dist loadfile' (pytest-xdist, one thread per worker:
# tests/conftest.py). A fresh clone passed under it in session 11 except for a sweep test's wait, since widened;
# serial stays the default until a CI run has shown the two-worker suite with the sweep tests' own workers beside it
TEST_ARGS ?=
REGRESS_BASELINE ?= tests/regression/cardiac_synth_ci.json

.PHONY: install run test test-cluster test-browser regress bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test,cluster]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/robench run --suite cardiac-synth --method standard --seed 0 --budget quick --out $(OUT) --resume
	$(BIN)/robench leaderboard $(OUT) --format markdown

test: $(STAMP)
	$(BIN)/python -m pytest -q $(TEST_ARGS)

# the tests that need system packages (Debian, as root): a real single-node Slurm cluster (slurm-wlm, munge),
# and headless Chromium for the HTML report (chromium, chromium-driver, selenium); without them those tests skip
test-cluster: $(STAMP)
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge
	$(BIN)/python -m pytest -q tests/test_sweep.py

test-browser: $(STAMP)
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
	$(BIN)/pip install --quiet -c constraints.txt selenium
	$(BIN)/python -m pytest -q tests/test_publish.py

# Dice regression far from chance: the `ci` budget on cardiac-synth against the committed baseline
# (tolerance derived from the spread over seeds; docs/numerics.md). Resumable; a finished run is reused.
regress: $(STAMP)
	ROBENCH_HOME=$${ROBENCH_HOME:-$(CURDIR)/.robench-cache} $(BIN)/robench run --suite cardiac-synth --method standard --seed 0 --budget ci --corruptions none --precision fp32 --out $(REGRESS_OUT) --resume
	$(BIN)/robench regress $(REGRESS_OUT) --baseline $(REGRESS_BASELINE)

# pytest-benchmark suite, then the numbers of docs/performance.md re-measured into docs/performance-measured.md
bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks -q --benchmark-only --benchmark-json=benchmarks/results/latest.json
	$(BIN)/python benchmarks/performance_report.py --out docs/performance-measured.md

clean:
	rm -rf $(VENV) .pytest_cache $(REGRESS_OUT)
