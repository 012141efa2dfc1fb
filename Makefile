# The two commands: `make run` starts everything, `make test` tests everything.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install system-deps run test soak bench lint clean

install: $(VENV)/.installed

# Re-installs only when pyproject.toml changes: `make install` is idempotent.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

run: install
	$(BIN)/inlet dev

# What the suite needs from the system, installed with apt when missing (as
# root; CI and a fresh machine both come here): PostgreSQL's binaries for the
# test clusters, pg_partman for its partitioned event tables (migration 0006),
# curl for the reference examples, Debian's chromium for the admin page's
# browser tests (Playwright's own browser download can't work here).
system-deps:
	@need=""; \
	command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$$need postgresql"; \
	pgv=$$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1); \
	test -f /usr/share/postgresql/$${pgv:-15}/extension/pg_partman.control || need="$$need postgresql-$${pgv:-15}-partman"; \
	command -v curl >/dev/null 2>&1 || need="$$need curl"; \
	test -x /usr/bin/chromium || need="$$need chromium"; \
	if [ -n "$$need" ]; then \
		echo "installing system packages:$$need"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$need; \
	fi

test: install system-deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault and Redis failover tests with five times the load and the fault
# cycles (~15 minutes).
soak: install
	INLET_SOAK=5 $(BIN)/python -m pytest tests/test_faults.py tests/test_failover.py -s $(PYTEST_ARGS)

# Benchmarks against their floors (method and figures: bench/README.md).
bench: install system-deps $(VENV)/.bench-installed
	$(BIN)/python -m bench $(BENCH_ARGS)

$(VENV)/.bench-installed: pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	touch $@

lint: install
	$(BIN)/python -m ruff check app worker tests bench alembic
	$(BIN)/python -m ruff format --check app worker tests bench alembic
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
