//! Names of the Kafka headers the host writes on every output record and
//! dead letter. Downstream tools read them, so they are part of the
//! interface.

/// Name of the plugin that produced or rejected the record.
pub const PLUGIN_NAME: &str = "weblog.plugin.name";
/// Version of that plugin.
pub const PLUGIN_VERSION: &str = "weblog.plugin.version";
/// SHA-256 of that plugin's component file, in lowercase hex. Unlike name
/// and version, which the plugin reports itself, it differs between builds.
pub const PLUGIN_DIGEST: &str = "weblog.plugin.digest";
/// Topic of the input record.
pub const SOURCE_TOPIC: &str = "weblog.source.topic";
/// Partition of the input record, in decimal.
pub const SOURCE_PARTITION: &str = "weblog.source.partition";
/// Offset of the input record, in decimal.
pub const SOURCE_OFFSET: &str = "weblog.source.offset";
/// Failure kind of a dead letter, such as `rejected` or `timeout`.
pub const ERROR_KIND: &str = "weblog.error.kind";
/// Failure message of a dead letter.
pub const ERROR_REASON: &str = "weblog.error.reason";
/// Timestamp of the input record, in milliseconds since the Unix epoch, in
/// decimal. Dead letters only; missing when the input record has none.
pub const SOURCE_TIMESTAMP: &str = "weblog.source.timestamp";
/// Times the record went through a plugin, in decimal: 1 on a dead letter
/// of `run`, one more on each dead letter of `replay-dlq`.
pub const ERROR_ATTEMPTS: &str = "weblog.error.attempts";
/// Instance id of the host that wrote the dead letter (`--instance-id`, or
/// the one it generated and logged at start).
pub const HOST_INSTANCE: &str = "weblog.host.instance";
/// Length in bytes of the input a dead letter was made from, in decimal.
/// Dead letters whose value keeps only the input's first bytes; the shipper
/// writes the same header on a line it cut.
pub const LINE_LENGTH: &str = "weblog.line.length";
/// `true` on a dead letter whose value keeps only the input's first bytes
/// because the whole input would not fit in a Kafka record.
pub const LINE_TRUNCATED: &str = "weblog.line.truncated";
/// Length in bytes of the input's key, in decimal, on a dead letter
/// without a key because the input's key alone takes more than half of a
/// Kafka record.
pub const KEY_LENGTH: &str = "weblog.key.length";
