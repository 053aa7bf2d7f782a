# Developer entry points. `make test` works on a clean clone: it installs what it needs first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test system-deps stress bench bench-throughput clean

# The sandbox runs as uid 65534 and imports python, the venv and scenario_lib: under umask 022 the venv
# is readable whatever the user's umask is, and the package is opened up for a clone made under umask 077.
$(STAMP): pyproject.toml setup.py scenario_lib/scene/_hand.c scenario_lib/scene/_state.c scenario_lib/scene/_kernel.h
	@bash scripts/install-system-deps.sh
	umask 022 && python3 -m venv $(VENV)
	umask 022 && $(PY) -m pip install --quiet --upgrade pip
	umask 022 && $(PY) -m pip install --quiet -e '.[flows,dask,stack,data,test]'
	chmod -R o+rX scenario_lib
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

stress: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) bench/validation_bench.py

# The throughput bars (issue 11): in-process CLI and the deployment on a stack of its own (~10 min; --no-deployment,
# --cli-count or --sustained-count to shorten, --long-count 1000 for the linearity run).
bench-throughput: $(STAMP)
	$(PY) bench/throughput_bench.py $(ARGS)

clean:
	rm -rf $(VENV) .state .pytest_cache .mypy_cache

# The local stack (scripts/stack.sh): Prefect server, process worker and SeaweedFS on 127.0.0.1, state in .state/.
.PHONY: demo down
demo: $(STAMP)
	bash scripts/stack.sh demo

down:
	bash scripts/stack.sh down
