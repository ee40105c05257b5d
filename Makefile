# spoold: two commands on a fresh machine with Python 3.11+:
#   make run    set up a venv, a local spool and the example jobs, then run the daemon
#   make test   set up a venv, then lint, type-check and run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG := config/spoold.toml
STAMP  := $(VENV)/.installed

.PHONY: run test test-systemd lint typecheck unit burst chaos bench bench-quick bench-peers bench-fallback bench-web clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/spoold init --config $(CONFIG)
	$(BIN)/python examples/submit_examples.py --config $(CONFIG)
	$(BIN)/spoold run --config $(CONFIG)

burst: $(STAMP)
	$(BIN)/spoold init --config $(CONFIG)
	$(BIN)/python examples/submit_examples.py --config $(CONFIG)
	$(BIN)/spoold run --burst --config $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict spoold

unit: $(STAMP)
	$(BIN)/pytest -q -m 'not slow'

# Two workers (pytest-xdist): every test brings its own spool, daemon, ports and
# redis-server, so they run side by side; one worker took 10 minutes on 2 cores.
test: lint typecheck
	$(BIN)/pytest -q -n 2

# spoold under a real systemd: the README's install in a Debian 12 container booted
# with systemd-nspawn (root; apt-get install systemd-container debootstrap). The root
# filesystem is cached in /var/cache/spoold-test (tests/systemd/container.py).
test-systemd: $(STAMP)
	$(BIN)/pytest -q -s -m systemd tests/systemd

chaos: $(STAMP)
	$(BIN)/pytest -q -m chaos -s

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick

# spoold beside RQ, Celery and Huey: W1..W3, 2 workers each, median of 3 runs (20 to 29
# minutes). The peers are pip-installed into a venv of their own in the bench's temp
# folder; a private redis-server serves spoold's Redis backend, RQ and Celery alike.
bench-peers: $(STAMP)
	$(BIN)/python -m bench.peers

# What the link + unlink fallback costs on a filesystem without RENAME_NOREPLACE
# (bindfs; needs root and the bindfs package).
bench-fallback: $(STAMP)
	$(BIN)/python -m bench.fallback

# The dashboard (spoold web) on a spool with 100,000 records in done/ (about a minute).
bench-web: $(STAMP)
	$(BIN)/python -m bench.web

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
