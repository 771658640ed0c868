# rickhouse — one command per job. `make test` works on a fresh clone: it installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint bench bench-quick run clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/python -m pytest -q -x -p no:cacheprovider

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
	rm -rf $(VENV) rickhouse_data .pytest_cache
