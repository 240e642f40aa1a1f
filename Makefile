# Two commands do all set-up: `make dev` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: dev test fuzz install lint format schema bench-dashboard clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed node_modules/.installed

dev: install
	$(BIN)/kabinet dev

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -n 4 --dist loadfile

# The fuzzers of `make test` with many more examples (per REST operation, per GraphQL
# viewer): the default 500 runs about eight minutes on two cores.
FUZZ_EXAMPLES ?= 500
fuzz: install
	KABINET_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -p no:cacheprovider tests/test_fuzz_rest.py tests/test_fuzz_graphql.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

schema: install
	$(BIN)/kabinet schema export schema/sdl

bench-dashboard: install
	$(BIN)/python bench/dashboard.py

clean:
	rm -rf $(VENV) node_modules var schema-export
