# ChatPulse developer commands. `make run` starts the service with no
# configuration (embedded SQLite + in-process state); `make test` runs
# everything CI runs.

CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: build run release test test-unit lint compat fmt services clean bench bench-quick cluster cluster-stop cluster-status deploy-check api-check audit audit-refresh fuzz fuzz-ci fuzz-seeds

build:
	$(CARGO) build

run:
	$(CARGO) run --bin chatpulse -- serve

## The production binary: no Twitch simulator in it (docs/architecture.md,
## "Crates"); what deploy/docker/Dockerfile builds.
release:
	$(CARGO) build --release --locked --no-default-features --bin chatpulse

## The whole suite: formatting and lints; the test build (once: the deployment
## check, the client-library check and the API check run its binaries, so the
## dependency graph is not compiled a second time with other features); the
## deployment, compat and API checks; the dependency audit and a short fuzzing
## pass; then unit and integration tests against every backend. PostgreSQL and
## Redis are provisioned first (scripts/test-services.sh, which also installs
## HAProxy for the cluster test) and a 3-master Redis Cluster is started for
## the run and stopped afterwards, pass or fail (scripts/redis-cluster.sh).
## TEST_REQUIRE_ALL: a test whose server URL is missing fails instead of
## skipping, so no suite is left out silently.
DEBUG_DIR = $${CARGO_TARGET_DIR:-$(CURDIR)/target}/debug

test: lint
	$(CARGO) test --workspace --all-targets --no-run
	CHATPULSE_BIN="$(DEBUG_DIR)/chatpulse" TWITCH_SIM_BIN="$(DEBUG_DIR)/twitch-sim" \
	  $(MAKE) --no-print-directory deploy-check compat api-check
	$(MAKE) --no-print-directory audit fuzz-ci
	export TEST_REQUIRE_ALL=1 \
	  && eval "$$(scripts/test-services.sh)" \
	  && eval "$$(scripts/redis-cluster.sh start)" \
	  && trap 'scripts/redis-cluster.sh stop' EXIT \
	  && $(CARGO) test --workspace --all-targets

## Validates deploy/: Kubernetes objects against pinned schemas, the Dockerfile
## (hadolint), compose, HAProxy and Prometheus configurations, and every metric
## the dashboard and the alerts query against a running instance
## (scripts/deploy-check.sh; a venv under target/deploy-check).
deploy-check:
	scripts/deploy-check.sh

## The streamer API against its OpenAPI document: schemathesis (pinned, in a
## venv under target/api-check, built on first use) calls every /api/v1
## operation of a running embedded instance with a token made by the CLI and
## fails on any 5xx or non-conforming response (scripts/api-check.sh; about
## two minutes).
api-check:
	scripts/api-check.sh

## Unit tests only (pure rules; no servers needed).
test-unit:
	$(CARGO) test --workspace --lib

## Lints every crate, and the product crate once more as production builds
## it (without the simulator); the production build must not link the
## simulator crate at all. The test suite's `testcontainers` feature (test
## servers in Docker containers) is only compiled: no Docker engine runs here.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p chatpulse --no-default-features --lib --bins -- -D warnings
	$(CARGO) check --tests --features testcontainers
	@if $(CARGO) tree -p chatpulse --no-default-features -e normal,build --prefix none | grep -q '^twitch-sim '; then \
	  echo "the production build (--no-default-features) links the Twitch simulator" >&2; exit 1; fi

## The Twitch simulator against a real client library: pyTwitchAPI (pinned,
## in a venv under target/, built on first use) drives the simulator's own
## binary through the library's public options. Fails if the venv cannot be
## built. See crates/twitch-sim/README.md.
compat:
	CARGO="$(CARGO)" crates/twitch-sim/compat/run.sh

fmt:
	$(CARGO) fmt --all

services:
	@scripts/test-services.sh >/dev/null

## A load-balanced cluster on this machine, without Docker (scripts/cluster.sh):
## PostgreSQL, a private Redis, the Twitch simulator, three instances and
## HAProxy (deploy/haproxy/haproxy.cfg) on ports 18080-18100
## (CLUSTER_BASE_PORT). Prints the URLs; `cluster-stop` ends what it started.
cluster:
	$(CARGO) build --bin chatpulse
	@scripts/cluster.sh start >/dev/null

cluster-stop:
	@scripts/cluster.sh stop

cluster-status:
	@scripts/cluster.sh status

## Benchmarks (docs/PERFORMANCE.md): release builds of the server and the
## load harness, which starts the server itself in embedded and distributed
## mode (local PostgreSQL, a private redis-server) and prints a Markdown
## table. Not part of `test`. 10,000 overlay sockets need a high open-files
## limit, hence the ulimit. `bench-quick` is the CI-sized run (about a minute).
BENCH = $${CARGO_TARGET_DIR:-target}/release/chatpulse-bench

bench:
	$(CARGO) build --release -p chatpulse -p chatpulse-bench --bin chatpulse --bin chatpulse-bench
	ulimit -n 65536 2>/dev/null || ulimit -n "$$(ulimit -Hn)"; $(BENCH)

bench-quick:
	$(CARGO) build --release -p chatpulse -p chatpulse-bench --bin chatpulse --bin chatpulse-bench
	ulimit -n 65536 2>/dev/null || ulimit -n "$$(ulimit -Hn)"; $(BENCH) --quick

## Dependency audit (audit/README.md): `cargo audit` of Cargo.lock and
## fuzz/Cargo.lock against the advisory database snapshot in audit/advisory-db
## (or AUDIT_DB), offline; a canary with a known vulnerability must be caught
## first. `audit-refresh` replaces the snapshot with the current database
## (needs git access to it; commit the result).
audit:
	scripts/audit.sh

audit-refresh:
	scripts/audit.sh refresh

## Fuzzing (docs/fuzzing.md): the cargo-fuzz targets in fuzz/ (webhook,
## eventsub_ws, config, form) for FUZZ_SECONDS each, on the stable toolchain
## (RUSTC_BOOTSTRAP=1); installs cargo-fuzz when missing. A crash stops with
## the input under fuzz/artifacts/. `fuzz-ci` is the short pass `test` runs
## (15 s per target, an unoptimised build: quick to compile).
## `fuzz-seeds` captures the seed payloads again from the Twitch simulator.
FUZZ_SECONDS ?= 60

fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

fuzz-ci:
	FUZZ_BUILD=--dev scripts/fuzz.sh 15

fuzz-seeds:
	$(CARGO) build -p twitch-sim --bin twitch-sim
	fuzz/seeds/capture.py $${CARGO_TARGET_DIR:-target}/debug/twitch-sim fuzz/seeds

clean:
	$(CARGO) clean
	rm -rf data
