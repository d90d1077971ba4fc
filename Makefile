# Keel: `make up` runs the local stack, `make test` runs everything CI runs, `make bench` measures.
# Installed tools and the cargo target dir live outside the clone (~/.cache/keel), so a second run
# reuses them; run-time state lives under /var/tmp/keel-$USER (override with KEEL_STATE).
SHELL := /bin/bash
export KEEL_CACHE ?= $(HOME)/.cache/keel
export CARGO_TARGET_DIR ?= $(KEEL_CACHE)/target

.PHONY: up down test bench fuzz chaos status sqlx-prepare

# make up: installs what is missing, builds, and runs the two-region stack under keel-local's
# supervisor (crates/localstack/src/stack.rs says what runs). make down stops it.
up:
	@bash deploy/local/bin/install.sh
	@cargo build --release --workspace --bins --quiet
	@$(CARGO_TARGET_DIR)/release/keel-local up

down:
	@if [ -x $(CARGO_TARGET_DIR)/release/keel-local ]; then $(CARGO_TARGET_DIR)/release/keel-local down; fi

test:
	@bash deploy/local/bin/test.sh

bench:
	@bash deploy/local/bin/bench.sh

# make chaos: RUNS chaos runs (1; a release's worth is RUNS=500), SEED=... replays one.
chaos:
	@RUNS=$(or $(RUNS),1) $(if $(SEED),SEED=$(SEED)) bash deploy/local/bin/chaos.sh

# make fuzz: every fuzz target for FUZZ_SECONDS each (an hour in all by default).
FUZZ_SECONDS ?= 1200
fuzz:
	@bash deploy/local/bin/install.sh --test
	@bash deploy/local/bin/fuzz.sh $(FUZZ_SECONDS)

# After changing a compile-checked query or a migration: writes .sqlx/ again (check it in).
sqlx-prepare:
	@bash deploy/local/bin/sqlx.sh prepare
