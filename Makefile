# Entry points for people and CI. `make demo` runs the pipeline on a log,
# `make test` runs every test against a real Kafka broker it starts itself.

SHELL := /bin/bash
CARGO ?= cargo
LOG ?= examples/sample-access.log
PLUGIN_WASM := plugins/target/wasm32-wasip2/release/weblog_access_log.wasm
KAFKA_TESTS := $(CARGO) test -p weblog-tests --features kafka-tests

.PHONY: help toolchain plugin test-plugins build release broker-up broker-down \
	demo test unit-test integration-test e2e cluster-up cluster-down cluster-test \
	lint bench bench-smoke clean

help:
	@echo "make demo [LOG=path]  run the pipeline on a log (default $(LOG))"
	@echo "make test             unit, integration and end-to-end tests"
	@echo "make e2e              only the end-to-end test on the real corpora"
	@echo "make broker-up|broker-down   start or stop the local Kafka broker"
	@echo "make cluster-up|cluster-down start or stop the 3-node Kafka cluster"
	@echo "make cluster-test     the shipper through broker crashes in that cluster"
	@echo "make lint             rustfmt and clippy on both workspaces"
	@echo "make bench            plugin cost per line, then every pipeline end to end (BENCHMARKS.md)"
	@echo "make bench-smoke      the end-to-end benchmark on a few thousand lines"

toolchain:
	rustup target add wasm32-wasip2

plugin: toolchain
	cd plugins && $(CARGO) build --release --target wasm32-wasip2

test-plugins: toolchain
	cd tests/fixtures/plugins && $(CARGO) build --release --target wasm32-wasip2

build:
	$(CARGO) build --workspace --bins

release:
	$(CARGO) build --release --workspace --bins

broker-up:
	scripts/kafka.sh up

broker-down:
	scripts/kafka.sh down

cluster-up:
	scripts/kafka-cluster.sh up

cluster-down:
	scripts/kafka-cluster.sh down

demo: plugin release
	scripts/demo.sh "$(LOG)"

test: unit-test integration-test cluster-test

unit-test: plugin test-plugins build
	$(CARGO) test --workspace --exclude weblog-tests
	cd plugins && $(CARGO) test

integration-test: plugin test-plugins build
	scripts/with-broker.sh $(KAFKA_TESTS)

cluster-test: build
	scripts/kafka-cluster.sh run $(CARGO) test -p weblog-tests --features cluster-tests cluster

e2e: plugin build
	scripts/with-broker.sh $(KAFKA_TESTS) end_to_end

lint:
	$(CARGO) fmt --all --check
	cd plugins && $(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --features weblog-tests/kafka-tests -- -D warnings
	cd plugins && $(CARGO) clippy --all-targets -- -D warnings
	cd tests/fixtures/plugins && $(CARGO) fmt --all --check
	cd tests/fixtures/plugins && $(CARGO) clippy --all-targets -- -D warnings

# Criterion benchmarks, about two minutes after the builds: the plugin's
# native parser, then native and WASM side by side through the host. Then
# every pipeline end to end on one broker (scripts/bench-pipeline.sh).
bench: plugin
	cd plugins && $(CARGO) bench --bench parse
	$(CARGO) bench -p weblog-host --bench plugin
	$(CARGO) bench -p weblog-host --bench swap
	@# cargo bench -p weblog-host relinked target/release/weblog-host without
	@# the native-plugin feature that the workspace build turns on.
	$(MAKE) release
	scripts/with-broker.sh scripts/bench-pipeline.sh

# The whole-pipeline benchmark on a few thousand lines with the debug
# binaries: checks that it still runs and counts every line.
bench-smoke: plugin build
	scripts/with-broker.sh scripts/bench-pipeline.sh --smoke

clean:
	$(CARGO) clean
	cd plugins && $(CARGO) clean
