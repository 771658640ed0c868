# rickhouse — one command per job. `make test` works on a fresh clone: it installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Feast's own SDK (with its DuckDB offline store), for tests/app/test_feast_client.py and the
# side-by-side export benchmark: a venv of its own, so that its pins never
# touch the project's dependencies.
FEAST_VENV := .venv-feast
FEAST_VERSION := 0.67
FEAST_STAMP := $(FEAST_VENV)/.installed-$(FEAST_VERSION)-duckdb

.PHONY: install feast-venv test lint bench bench-quick run clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,cluster]'
	touch $(STAMP)

feast-venv: $(FEAST_STAMP)

$(FEAST_STAMP):
	test -x $(FEAST_VENV)/bin/python || $(PY) -m venv $(FEAST_VENV)
	$(FEAST_VENV)/bin/python -m pip install -q 'feast[duckdb]==$(FEAST_VERSION).*'
	touch $(FEAST_STAMP)

# The style, checked by the tools (STYLE.md): lint, formatting, and types of the packages.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app cluster store offline online

test: install feast-venv lint
	$(BIN)/python -m pytest -q -x -p no:cacheprovider --durations=15

# Spark 4.3 reading published offline snapshots (tests/spark): opt-in, not part of `make test`:
# pyspark is ~0.5 GB and needs Java 17+ (the machine's OpenJDK). It goes into .venv for this
# target only.
SPARK_STAMP := $(VENV)/.installed-pyspark-4.3
.PHONY: test-spark

$(SPARK_STAMP): | $(STAMP)
	@command -v java >/dev/null || { echo "make test-spark needs Java 17+ (java on PATH)"; exit 1; }
	$(BIN)/python -m pip install -q 'pyspark>=4.3,<4.4'
	touch $(SPARK_STAMP)

test-spark: install $(SPARK_STAMP)
	RICKHOUSE_TEST_SPARK=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/spark

bench: install
	$(BIN)/python bench/online_lookup.py
	$(BIN)/python bench/offline_export.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/store_lookup.py
	$(BIN)/python bench/serve.py

bench-quick: install
	$(BIN)/python bench/online_lookup.py --quick

run: install
	$(BIN)/rickhouse demo --port 8000
	@echo "serving on http://127.0.0.1:8000 (Ctrl-C stops); paste the curl commands above in another shell"
	$(BIN)/rickhouse serve --host 127.0.0.1 --port 8000

clean:
	rm -rf $(VENV) $(FEAST_VENV) rickhouse_data .pytest_cache
