# ChatPulse developer commands. `make run` starts the service with no
# configuration (embedded SQLite + in-process state); `make test` runs
# everything CI runs.

CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: build run test test-unit lint fmt services clean

build:
	$(CARGO) build

run:
	$(CARGO) run --bin chatpulse -- serve

## The whole suite: formatting and lints, then unit and integration tests
## against every backend. PostgreSQL and Redis are provisioned first
## (scripts/test-services.sh) and a 3-master Redis Cluster is started for the
## run and stopped afterwards, pass or fail (scripts/redis-cluster.sh).
test: lint
	eval "$$(scripts/test-services.sh)" \
	  && eval "$$(scripts/redis-cluster.sh start)" \
	  && trap 'scripts/redis-cluster.sh stop' EXIT \
	  && $(CARGO) test --all-targets

## Unit tests only (pure rules; no servers needed).
test-unit:
	$(CARGO) test --lib

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

services:
	@scripts/test-services.sh >/dev/null

clean:
	$(CARGO) clean
	rm -rf data
