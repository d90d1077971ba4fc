# Keel: `make up` runs the local stack, `make test` runs everything CI runs, `make bench` measures.
# Installed tools and the cargo target dir live outside the clone (~/.cache/keel), so a second run
# reuses them; run-time state lives under /var/tmp/keel-$USER (override with KEEL_STATE).
SHELL := /bin/bash
export KEEL_CACHE ?= $(HOME)/.cache/keel
export CARGO_TARGET_DIR ?= $(KEEL_CACHE)/target

.PHONY: up down test bench status

up:
	@bash deploy/local/bin/up.sh

down:
	@bash deploy/local/bin/down.sh

test:
	@bash deploy/local/bin/test.sh

bench:
	@bash deploy/local/bin/bench.sh
