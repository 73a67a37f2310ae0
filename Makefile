# py-rate-guard — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help
help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: setup
setup: ## Check the Rust toolchain (the Python package is not there yet)
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from rustup.rs"; exit 1; }
	@$(CARGO) --version

.PHONY: demo
demo: setup ## Run the quick-start demo (Rust, in-memory store)
	$(CARGO) run --quiet --release -p rate-guard-core --example demo

.PHONY: test
test: setup ## Run the whole test suite (soak tests excluded; see test-soak)
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

.PHONY: test-soak
test-soak: setup ## Run the long soak tests too
	$(CARGO) test --workspace --all-targets -- --include-ignored

.PHONY: lint
lint: setup ## cargo fmt --check and clippy with warnings denied
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: bench
bench: setup ## Benchmarks: keyed check vs governor, bytes per key
	$(CARGO) bench -p rate-guard-core --bench keyed_check
	$(CARGO) bench -p rate-guard-core --bench memory_per_key
