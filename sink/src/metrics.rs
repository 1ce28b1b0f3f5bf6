//! Names of the sink's Prometheus metrics, the recorder with their
//! histogram buckets, and the freshness of written records.

use std::time::{SystemTime, UNIX_EPOCH};

use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use weblog_common::metrics::{
    describe_counter, describe_gauge, describe_histogram, exponential_buckets, histogram,
    Histogram, PrometheusHandle, Unit,
};

/// Records consumed, by topic.
pub(crate) const RECORDS_CONSUMED: &str = "weblog_sink_records_consumed_total";
/// Records appended to the output file and fsynced.
pub(crate) const RECORDS_WRITTEN: &str = "weblog_sink_records_written_total";
/// Bytes appended to the output file, newlines included.
pub(crate) const WRITTEN_BYTES: &str = "weblog_sink_written_bytes_total";
/// fsync calls on the output file.
pub(crate) const FSYNCS: &str = "weblog_sink_fsyncs_total";
/// Records sent to the dead-letter topic and acknowledged, by kind.
pub(crate) const RECORDS_DEAD_LETTERED: &str = "weblog_sink_records_dead_lettered_total";
/// Lag of the group on each assigned partition, in records.
pub(crate) const CONSUMER_LAG: &str = "weblog_sink_consumer_lag_records";
/// Time from a record's own `timestamp_ms` field to its write.
pub(crate) const LOG_FRESHNESS: &str = "weblog_sink_log_freshness_seconds";
/// Time from a record's Kafka timestamp to its write.
pub(crate) const KAFKA_FRESHNESS: &str = "weblog_sink_kafka_freshness_seconds";

/// Key of the event time that the default plugin writes, in milliseconds
/// since the Unix epoch.
const TIMESTAMP_KEY: &[u8] = b"\"timestamp_ms\"";

/// Installs the recorder and returns its handle.
pub(crate) fn install() -> anyhow::Result<PrometheusHandle> {
    // Log freshness covers replays of old logs, such as the NASA log of
    // 1995: 1 ms to about 35 years.
    let log_buckets = exponential_buckets(0.001, 4.0, 21);
    // Kafka freshness is the pipeline's own delay: 1 ms to about 4.5 hours.
    let kafka_buckets = exponential_buckets(0.001, 3.0, 16);
    let handle = weblog_common::metrics::install(
        "weblog-sink",
        &[
            (LOG_FRESHNESS, &log_buckets),
            (KAFKA_FRESHNESS, &kafka_buckets),
        ],
    )?;

    describe_counter!(RECORDS_CONSUMED, "records consumed");
    describe_counter!(
        RECORDS_WRITTEN,
        "records appended to the output and fsynced"
    );
    describe_counter!(WRITTEN_BYTES, Unit::Bytes, "bytes appended to the output");
    describe_counter!(FSYNCS, "fsync calls on the output file");
    describe_counter!(
        RECORDS_DEAD_LETTERED,
        "records sent to the dead-letter topic"
    );
    describe_gauge!(
        CONSUMER_LAG,
        "records of an assigned partition not committed yet"
    );
    describe_histogram!(
        LOG_FRESHNESS,
        Unit::Seconds,
        "time from the record's timestamp_ms field to its write"
    );
    describe_histogram!(
        KAFKA_FRESHNESS,
        Unit::Seconds,
        "time from the record's Kafka timestamp to its write"
    );
    Ok(handle)
}

/// Freshness histograms of one batch, measured against the time the batch
/// is written.
pub(crate) struct Freshness {
    now_ms: i64,
    log: Histogram,
    kafka: Histogram,
}

impl Freshness {
    /// Starts a batch's measurement at the current time.
    pub(crate) fn now() -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as i64);
        Self {
            now_ms,
            log: histogram!(LOG_FRESHNESS),
            kafka: histogram!(KAFKA_FRESHNESS),
        }
    }

    /// Records the age of `message`, whose value is written as `line`.
    pub(crate) fn record(&self, message: &OwnedMessage, line: &[u8]) {
        if let Some(created) = message.timestamp().to_millis() {
            self.kafka.record(age_seconds(self.now_ms, created));
        }
        if let Some(event) = timestamp_ms(line) {
            self.log.record(age_seconds(self.now_ms, event));
        }
    }
}

/// Returns the seconds from `then_ms` to `now_ms`, 0 for a time in the
/// future (a clock ahead of this one).
fn age_seconds(now_ms: i64, then_ms: i64) -> f64 {
    (now_ms.saturating_sub(then_ms)).max(0) as f64 / 1000.0
}

/// Returns the integer value of the last `"timestamp_ms"` key in a JSON
/// text, without parsing the whole text. Inside a JSON string a quote is
/// escaped, so the quoted key followed by a colon only matches a real key
/// (of the record or of a nested object).
fn timestamp_ms(json: &[u8]) -> Option<i64> {
    let start = json
        .windows(TIMESTAMP_KEY.len())
        .rposition(|window| window == TIMESTAMP_KEY)?;
    let rest = trim_start(&json[start + TIMESTAMP_KEY.len()..]);
    let rest = trim_start(rest.strip_prefix(b":")?);
    let digits = rest
        .iter()
        .enumerate()
        .take_while(|(index, byte)| byte.is_ascii_digit() || (*index == 0 && **byte == b'-'))
        .count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let skipped = bytes
        .iter()
        .take_while(|byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    &bytes[skipped..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_is_found_at_end() {
        let line = br#"{"status":200,"timestamp_ms":1431857103000}"#;
        assert_eq!(timestamp_ms(line), Some(1_431_857_103_000));
    }

    #[test]
    fn timestamp_allows_whitespace() {
        let line = br#"{"timestamp_ms" : -5 }"#;
        assert_eq!(timestamp_ms(line), Some(-5));
    }

    #[test]
    fn key_inside_string_is_ignored() {
        let line = br#"{"path":"/x?\"timestamp_ms\":1"}"#;
        assert_eq!(timestamp_ms(line), None);
    }

    #[test]
    fn null_timestamp_is_skipped() {
        assert_eq!(timestamp_ms(br#"{"timestamp_ms":null}"#), None);
        assert_eq!(timestamp_ms(br#"{"status":200}"#), None);
    }

    #[test]
    fn future_time_counts_as_zero() {
        assert_eq!(age_seconds(1_000, 3_000), 0.0);
        assert_eq!(age_seconds(3_500, 1_000), 2.5);
    }
}
