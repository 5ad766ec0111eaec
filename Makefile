# The two commands a newcomer needs: `make lab` and `make test`. Both set everything up.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8888

.PHONY: lab test test-lowest install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,lab]'
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
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The suite again at the LOWEST versions pyproject.toml declares (uv's lowest-direct resolution of
# the dev extra), in .venv-lowest; the browser test and the hygiene checks (ruff, mypy: about the
# code, not the versions) are left to `make test`. The simulator's close of a request whose headers
# never complete relies on aiohttp's keep-alive timeout, which this resolution does not apply to
# half-received headers (open question, see the closing note of issue 12); `make test` checks it.
LOWEST := .venv-lowest
test-lowest: $(STAMP)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	test -x $(LOWEST)/bin/python || $(BIN)/uv venv --quiet --python $(BIN)/python $(LOWEST)
	$(BIN)/uv pip compile --quiet --python $(LOWEST)/bin/python pyproject.toml --extra dev \
	  --resolution lowest-direct -o $(LOWEST)/requirements.txt
	VIRTUAL_ENV=$(LOWEST) $(BIN)/uv pip sync --quiet $(LOWEST)/requirements.txt
	VIRTUAL_ENV=$(LOWEST) $(BIN)/uv pip install --quiet --no-deps -e .
	$(LOWEST)/bin/python -m pytest -m "not browser" --ignore=tests/test_hygiene.py \
	  --deselect tests/test_offline_limits.py::test_headers_that_never_complete_are_closed $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(LOWEST) build *.egg-info .pytest_cache
