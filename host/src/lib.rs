//! weblog-host: consumes raw access-log lines from Kafka, enriches them in a
//! sandboxed WASM component plugin and produces JSON records, sending what
//! cannot be enriched to a dead-letter topic with the reason.
//!
//! Layout:
//! - [`sandbox`]: the wasmtime engine and the limits of every instance.
//! - [`plugin`]: loading a component, calling it, containing its failures.
//! - [`cache`]: compiled components on disk, so a restart does not compile.
//! - [`canary`]: the check a replacement plugin passes before a swap.
//! - [`swap`]: the file watch and SIGHUP that trigger a swap.
//! - [`admin`]: the admin HTTP endpoint: metrics, health and reload requests.
//! - [`metrics`]: names of the Prometheus metrics and their recorder.
//! - [`failure`]: the kind and reason of a failed plugin call.
//! - [`outcome`]: what became of each input record.
//! - [`headers`]: names of the headers on output records and dead letters.
//! - [`enrich_file`]: the same plugin over a file, without Kafka.
//! - [`pipeline`]: the Kafka consume, produce and commit loop.

#![warn(missing_docs)]

pub mod admin;
mod bindings;
pub mod cache;
pub mod canary;
pub mod enrich_file;
pub mod failure;
pub mod headers;
pub mod metrics;
#[cfg(feature = "native-plugin")]
pub mod native;
pub mod outcome;
pub mod pipeline;
pub mod plugin;
pub mod retry;
pub mod sandbox;
pub mod swap;

pub use bindings::{InputRecord, PLUGIN_INTERFACE, WIT_VERSION};
