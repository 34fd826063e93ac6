# Two commands on a fresh clone: `make serve` runs Gimel locally, `make test` runs every test.
# Both create .venv and install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: serve test bench lint

$(BIN)/gimel: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The sls CLI (osls) and its plugins, exactly as package-lock.json pins them.
node_modules: package-lock.json
	npm ci --no-audit --no-fund
	touch $@

serve: $(BIN)/gimel
	$(BIN)/gimel serve

lint: $(BIN)/gimel node_modules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	npx --no-install eslint --max-warnings 0 gimel_core/dashboard

test: $(BIN)/gimel node_modules lint
	$(BIN)/pytest

bench: $(BIN)/gimel
	$(BIN)/python -m bench
