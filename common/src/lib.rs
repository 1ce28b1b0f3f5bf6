//! Code that the shipper, host and sink share: Kafka client settings taken
//! from flags and environment variables, tracing setup, the shutdown
//! signal, and durable checkpoint writes. Each binary owns its own pipeline; nothing here touches records.

#![warn(missing_docs)]

pub mod durable;
pub mod kafka;
pub mod kafka_context;
pub mod logging;
pub mod shutdown;

pub use kafka::KafkaArgs;
pub use kafka_context::LoggingContext;
pub use logging::LogArgs;
pub use shutdown::listen_for_shutdown;
