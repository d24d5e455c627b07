# make run: set up .venv and start the one-process server on http://127.0.0.1:8001
# make test: set up .venv and the test tools (chromium, espeak-ng, tansu) and run every test
.PHONY: setup setup-test run test test-fast bench

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

run: setup
	.venv/bin/voxline run

test: setup-test
	.venv/bin/python -m pytest -q -ra

test-fast: setup-test
	.venv/bin/python -m pytest -q -ra -m "not e2e and not distributed"

bench: setup
	.venv/bin/voxline bench
