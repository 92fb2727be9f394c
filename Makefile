# The README's two commands: `make run` starts everything, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-requirements

.PHONY: install run test browsers

# Reinstall only when requirements.txt changed: a second `make run` starts in seconds.
$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python scripts/run.py

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)
