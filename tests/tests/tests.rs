//! Integration tests of the weblog binaries, run as separate processes.
//!
//! - `enrich_file`: the host's `enrich-file` command with the default
//!   plugin, no Kafka needed.
//! - `anonymize`: the anonymize plugin through `enrich-file`, on raw lines
//!   and chained after the default plugin.
//! - `sandbox`: the plugin sandbox against the misbehaving test plugins in
//!   `fixtures/plugins`, through `enrich-file` and, with Kafka, `run`.
//! - `deploy`: the systemd units, Kubernetes manifests and Grafana
//!   dashboard in `deploy/` against the binaries' flags and metrics.
//! - `secrets`: Kafka passwords stay out of `--help`, errors and logs.
//! - `shipper`, `sink`, `host`: each binary against a real Kafka broker.
//! - `progress`: the shipper's progress log lines and their counts.
//! - `exactly_once`: the host's `--exactly-once` mode, clean and under
//!   SIGKILL, next to the default mode under the same kills.
//! - `end_to_end`: the three real corpora through the whole pipeline.
//! - `bench_smoke`: the whole-pipeline benchmark script on a few thousand
//!   lines, for complete results.
//! - `metrics`: the admin endpoints (`/metrics`, `/healthz`, `/readyz`) of
//!   the three binaries during a pipeline run and a broker outage.
//! - `lag`: `weblog-host lag` against Kafka's own consumer-groups tool.
//! - `crash`: the same corpora with shipper, host and sink killed with
//!   SIGKILL at seeded random moments, in both delivery modes of the host.
//! - `broker_crash`: the pipeline through a SIGKILL of a private broker.
//! - `replay`: dead letters of outputs Kafka rejected, and `replay-dlq`.
//! - `oversize`: dead letters cut to fit Kafka's max record sizes.
//! - `signals`: SIGHUP leaves the shipper and the sink running.
//! - `cluster`: the pipeline on a 3-broker cluster while brokers die,
//!   with the `cluster-tests` feature (`make cluster-test`).
//!
//! The Kafka tests need the `kafka-tests` feature and a broker at
//! `KAFKA_BOOTSTRAP` (default 127.0.0.1:9092); `make test` starts one. Each
//! test uses topics and groups of its own, so tests run in parallel. The
//! binaries and the plugin must be built first (`make test` does it).

// Test helpers are `pub` for the modules that share them.
#![allow(unreachable_pub)]

mod util;

#[cfg(feature = "cluster-tests")]
mod cluster;

mod anonymize;
mod deploy;
mod edge_cases;
mod enrich_file;
mod sandbox;
mod secrets;

#[cfg(feature = "kafka-tests")]
mod bench_smoke;
#[cfg(feature = "kafka-tests")]
mod broker_crash;
#[cfg(feature = "kafka-tests")]
mod crash;
#[cfg(feature = "kafka-tests")]
mod end_to_end;
#[cfg(feature = "kafka-tests")]
mod exactly_once;
#[cfg(feature = "kafka-tests")]
mod host;
#[cfg(feature = "kafka-tests")]
mod lag;
#[cfg(feature = "kafka-tests")]
mod metrics;
#[cfg(feature = "kafka-tests")]
mod oversize;
#[cfg(feature = "kafka-tests")]
mod progress;
#[cfg(feature = "kafka-tests")]
mod replay;
#[cfg(feature = "kafka-tests")]
mod shipper;
#[cfg(feature = "kafka-tests")]
mod signals;
#[cfg(feature = "kafka-tests")]
mod sink;
