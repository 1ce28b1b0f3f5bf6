//! Code that the shipper, host and sink share: Kafka client settings taken
//! from flags and environment variables, tracing setup, the shutdown
//! signal, and durable checkpoint writes. Each binary owns its own pipeline; nothing here touches records.
//!
//! Monitoring: [`admin`] serves `/metrics`, `/healthz` and `/readyz`,
//! [`metrics`] installs the Prometheus recorder, [`kafka_stats`] turns
//! librdkafka statistics into metrics and a readiness check, and [`lag`]
//! computes consumer lag for the gauges and `weblog-host lag`.
//!
//! Exiting: [`report`] prints an error with its causes on one line, and
//! [`usage`] picks the exit status.

#![warn(missing_docs)]

pub mod admin;
pub mod durable;
pub mod kafka;
pub mod kafka_context;
pub mod kafka_stats;
pub mod key_value;
pub mod lag;
pub mod logging;
pub mod metrics;
pub mod report;
pub mod shutdown;
pub mod topic;
pub mod usage;

pub use admin::AdminArgs;
pub use kafka::KafkaArgs;
pub use kafka_context::LoggingContext;
pub use logging::LogArgs;
pub use shutdown::listen_for_shutdown;
