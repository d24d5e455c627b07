# make run: set up .venv and start the one-process server on http://127.0.0.1:8001
# make test: set up .venv and the test tools (chromium, espeak-ng, tansu), run the gates
# (ruff, mypy --strict), then every test; a gate that fails fails the run
.PHONY: setup setup-test run lint test test-fast bench

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

run: setup
	.venv/bin/voxline run

lint: setup-test
	.venv/bin/ruff check src
	PYTHONPATH=src .venv/bin/mypy src

test: lint
	.venv/bin/python -m pytest -q -ra

test-fast: lint
	.venv/bin/python -m pytest -q -ra -m "not e2e and not distributed"

bench:
	bash scripts/setup.sh --bench
	.venv/bin/voxline bench
