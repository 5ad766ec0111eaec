# The two commands a newcomer needs: `make lab` and `make test`. Both set everything up, in one .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8888
# The suite over every core, two workers more than cores: with a worker per core a third of the two cores'
# time went idle while tests waited (servers, kernels, the browser, retries), which the extra workers fill
# (2 cores, 2026-12-06: 5 min 24 s with four workers, 6 min 03 s with three). Tests that must not run beside
# each other share a group, which one worker runs in turn (tests/conftest.py: group_of).
# `make test XDIST=` runs it in one process.
CORES := $(shell nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
XDIST ?= -n $(shell echo $$(( $(CORES) + 2 ))) --dist loadgroup

.PHONY: lab test test-fast test-lowest install install-lowest clean

# uv installs the environment in seconds from a warm cache: the uv on PATH, else one that pip puts into .venv;
# pip installs it all when uv cannot be had (no pip to fetch it, no wheel for the platform, no index). uv does
# not compile bytecode up front (a minute of CPU for modules mostly never imported): Python caches each
# module's on its first import, which `make lab` and `make test` let it do even where the environment says
# PYTHONDONTWRITEBYTECODE (without the cache every kernel, worker and CLI run compiles its imports again).
unexport PYTHONDONTWRITEBYTECODE
UV := $(or $(shell command -v uv 2>/dev/null),$(BIN)/uv)
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv --without-pip $(VENV)
	@test -x $(UV) || $(PY) -m pip --python $(BIN)/python install --quiet uv >/dev/null 2>&1 || true
	@if [ -x $(UV) ]; then \
	  echo "installing into $(VENV) with uv"; \
	  VIRTUAL_ENV=$(CURDIR)/$(VENV) $(UV) pip install --quiet -e '.[dev,lab]' pip; \
	else \
	  echo "installing into $(VENV) with pip (a few minutes)"; \
	  $(BIN)/python -m ensurepip --upgrade >/dev/null && $(BIN)/python -m pip install --quiet -e '.[dev,lab]'; \
	fi
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	mkdir -p $(VENV)/share/jupyter/lab/settings
	printf '%s\n' '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' \
	  > $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $(STAMP)

install: $(STAMP)

# etc/jupyter/jupyter_server_config.py saves the tutorials without outputs (the checkout stays clean);
# their lab folder is ./lab-data/ (git-ignored), the same as the CLI's run from the checkout.
lab: $(STAMP)
	cd notebooks && JUPYTER_CONFIG_PATH=$(CURDIR)/etc/jupyter ../$(BIN)/jupyter lab --no-browser --ip 127.0.0.1 --port $(PORT) \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# The quick loop while changing code: everything but the tests marked slow (notebooks, browser, multiprocess,
# long compares); `make test` runs them all.
test-fast: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

# The suite again at the LOWEST versions pyproject.toml declares (uv's lowest-direct resolution of the dev
# extra), in .venv-lowest, on what a dependency's version can break: the package's own tests. Left to
# `make test`: the browser tests (chromium and JupyterLab's front end, not our dependencies' APIs), the
# notebooks (they call the same Lab verbs the tests check one by one, at four times the cost), the hygiene
# checks (ruff, mypy, import rules: about the code, not the versions) and the other tests marked slow (long
# compares, several processes at once, restarts: the same calls into our dependencies as the quick tests of
# the same modules, repeated at length). The simulator's close of a
# request whose headers never complete relies on aiohttp's keep-alive timeout, which this resolution does
# not apply to half-received headers (open question, see the closing note of issue 12); `make test` checks it.
LOWEST := .venv-lowest
LOWEST_STAMP := $(LOWEST)/.installed
$(LOWEST_STAMP): $(STAMP)
	test -x $(UV) || $(BIN)/python -m pip install --quiet uv
	test -x $(LOWEST)/bin/python || $(UV) venv --quiet --python $(BIN)/python $(LOWEST)
	$(UV) pip compile --quiet --python $(LOWEST)/bin/python pyproject.toml --extra dev \
	  --resolution lowest-direct -o $(LOWEST)/requirements.txt
	VIRTUAL_ENV=$(LOWEST) $(UV) pip sync --quiet $(LOWEST)/requirements.txt
	VIRTUAL_ENV=$(LOWEST) $(UV) pip install --quiet --no-deps -e .
	touch $(LOWEST_STAMP)

# Both environments, nothing run (.ci/run makes them while the system packages install).
install-lowest: $(LOWEST_STAMP)

test-lowest: $(LOWEST_STAMP)
	$(LOWEST)/bin/python -m pytest $(XDIST) -m "not slow and not browser and not notebook" --ignore=tests/test_hygiene.py \
	  --deselect tests/test_offline_limits.py::test_headers_that_never_complete_are_closed $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(LOWEST) build *.egg-info .pytest_cache
