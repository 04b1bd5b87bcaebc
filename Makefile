# The README's two commands:
#   make run   - create the environment, build Pi-DE, start the hypivisor with the dashboard
#   make test  - install everything the tests need, run every test (unit, integration, browser)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test env dashboard test-env schema demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# compileall: an editable install writes no bytecode while PYTHONDONTWRITEBYTECODE is set (CI machines set it), and
# every bridge, hypivisor and fake LLM the tests start would compile the packages again.
env: $(PY)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m compileall -q -x '/(tests|node_modules)/' pi_socket hypivisor

# Build Pi-DE when its sources exist (npm ci is skipped when node_modules is current).
dashboard:
	@if [ -f pi_de/package.json ]; then \
	  cd pi_de && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run -s build; \
	else echo "pi_de has no sources yet: the dashboard port will say so"; fi

run: env dashboard
	$(PY) -m hypivisor $(ARGS)

schema: env
	$(PY) -m pi_socket.protocol schema -o pi_de/src/protocol/schema.json

test-env: env
	bash integration_tests/setup_env.sh

test: test-env
	@if [ -f pi_de/package.json ]; then (cd pi_de && npm run -s build && npm test); fi
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

# Benchmarks (not part of `make test`): proxy vs nginx, registry scale, history, streaming, overhead on pi,
# Pi-DE rendering. SMOKE=1: tiny sizes, seconds; the figures are then meaningless (CI checks completeness).
bench: test-env
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m bench.run $(if $(SMOKE),--smoke) $(BENCH_ARGS)

# The demo: hypivisor + dashboard + 3 real pi agents in tmux on the bundled fake LLM (no API key); Ctrl+C cleans up.
demo: env dashboard
	$(PY) -m hypivisor.demo $(ARGS)

clean:
	rm -rf $(VENV) pi_de/node_modules pi_de/dist .pytest_cache
