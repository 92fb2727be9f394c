# The README's two commands: `make run` starts everything, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-requirements
POSTGRES_TEST_URL ?= postgres://postgres@127.0.0.1:5432/wizard

.PHONY: install run test lint types system

# Reinstall only when requirements.txt changed: a second `make run` starts in seconds.
$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python scripts/run.py

# The system packages the tests need (installed with apt-get as root, else the command to run).
system:
	@scripts/system-packages.sh

# Lint first: ruff's checks and formatting at zero findings (pyproject.toml).
lint: install
	$(BIN)/ruff check --quiet .
	$(BIN)/ruff format --check --quiet .

# Then mypy with django-stubs at zero findings (pyproject.toml: strict for the pure modules).
types: install
	$(BIN)/mypy

# First every database test again on PostgreSQL (skipped with a note where none runs;
# required in CI), then the whole suite on the default configuration.
test: install system lint types
	@if $(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null; then \
	  echo "== database tests on PostgreSQL =="; \
	  DB_TESTS_ONLY=1 DATABASE_URL=$(POSTGRES_TEST_URL) $(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not browser"; \
	else \
	  echo "PostgreSQL is not reachable on 127.0.0.1:5432: its pass is skipped"; $${CI:+false}; \
	fi
	$(BIN)/python -m pytest $(PYTEST_ARGS)
