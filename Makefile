# Two entry points: `make run` (set up + open the app) and `make test` (set up + run the tests).
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup run test discriminators bench lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade "pip>=24"
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/apc

test: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest

discriminators: setup
	$(VENV)/bin/python -m apc_tui.data_build train

bench: setup
	$(VENV)/bin/python bench/scoring.py

clean:
	rm -rf $(VENV) build *.egg-info
