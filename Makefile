# py-rate-guard — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON_BOOTSTRAP := $(shell command -v python3.11 2>/dev/null || command -v python3)

.PHONY: help
help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: setup
setup: ## Check the Rust toolchain
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from rustup.rs"; exit 1; }
	@$(CARGO) --version

.PHONY: python
python: setup ## Make .venv with the dev tools and install the package into it (pip install ., release wheel)
	@test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV) 2>/dev/null \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	       && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv \
	       && $(PYTHON_BOOTSTRAP) -m venv --clear $(VENV); } \
	  || { echo "cannot create $(VENV): install python3-venv (apt-get install python3-venv)"; exit 1; }
	@cmp -s requirements-dev.txt $(VENV)/.dev-tools || { $(PY) -m pip install -q \
	    --disable-pip-version-check -r requirements-dev.txt \
	  && cp requirements-dev.txt $(VENV)/.dev-tools; }
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --force-reinstall .

.PHONY: develop
develop: ## Rebuild the package in place for quick iteration (maturin develop: debug, editable)
	$(VENV)/bin/maturin develop -q

.PHONY: redis
redis: ## Install redis-server and redis-tools (apt) when missing; tests start their own servers
	@if command -v redis-server >/dev/null && command -v redis-cli >/dev/null \
	    && command -v redis-benchmark >/dev/null; then \
	  redis-server --version; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools; \
	else \
	  echo "redis-server and redis-tools are needed: sudo apt-get install redis-server redis-tools"; exit 1; \
	fi

.PHONY: demo
demo: python ## Serve the FastAPI quick start (uvicorn; memory, or RATE_GUARD_REDIS_URL) and send it 8 requests
	$(PY) examples/demo.py

.PHONY: test
test: setup redis python ## Run the whole test suite, Rust then Python (soak tests excluded; see test-soak)
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc
	$(PY) -m pytest -q -m "not soak" tests/python

.PHONY: test-soak
test-soak: setup redis ## The suite with 20x the property-test cases
	PROPTEST_CASES=5000 $(CARGO) test --release --workspace --all-targets

.PHONY: lint
lint: setup python ## cargo fmt --check, clippy with warnings denied, ruff and mypy
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests/python
	$(VENV)/bin/mypy python

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: bench
bench: setup redis python ## Benchmarks: keyed check vs governor, bytes per key, Redis vs redis-benchmark
	$(CARGO) bench -p rate-guard-core --bench keyed_check
	$(CARGO) bench -p rate-guard-core --bench memory_per_key
	$(CARGO) bench -p rate-guard-redis --bench redis_throughput
	$(CARGO) bench -p rate-guard-tower --bench axum_throughput
	$(PY) bench/python_bench.py
	$(PY) bench/http_bench.py
	$(PY) bench/cost_bench.py
