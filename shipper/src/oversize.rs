//! Lines longer than Kafka accepts: what is sent in their place.
//!
//! A record can be too large for librdkafka (`message.max.bytes`, checked
//! before sending) or for the broker (the topic's `max.message.bytes`,
//! checked per batch). A line that is too large is replaced, by policy,
//! with a dead letter that keeps its first bytes and records its length in
//! a header, or with the line cut short plus a marker in the raw topic. Either way the
//! checkpoint moves past the line once the replacement is acknowledged, so
//! a long line never stops the shipper.
//!
//! If the broker rejects the replacement too, it is sent once more without
//! the line's bytes; only when that fails does the run fail.

use std::path::Path;
use std::sync::Arc;

use clap::ValueEnum;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};

/// Value of the `weblog.error.kind` header of a line that was too long.
pub(crate) const ERROR_KIND: &str = "line-too-long";

/// Replacement of a line that is too large for Kafka.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum OversizePolicy {
    /// A dead letter with the line's first bytes in the dead-letter topic.
    #[default]
    DeadLetter,
    /// The line's first bytes plus a marker, in the raw topic.
    Truncate,
}

/// The line a record was made from.
#[derive(Debug)]
pub(crate) struct LineInfo {
    /// Sequence number in the acknowledgement window.
    pub(crate) sequence: u64,
    /// 1-based number of the line in this run.
    pub(crate) number: u64,
    /// File the line was read from.
    pub(crate) path: Arc<Path>,
    /// Byte offset of the line's first byte.
    pub(crate) offset: u64,
    /// Length of the whole line in bytes, without its `\n`.
    pub(crate) length: u64,
}

/// The kinds of record a line can become, in the order they are tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The line, batched with others.
    Line,
    /// The line again, alone in its produce request, after the broker
    /// rejected its batch as too large. A batch can be too large although
    /// each of its lines fits.
    LineAlone,
    /// Dead letter with the line's first bytes.
    DeadLetter,
    /// Dead letter without a value.
    EmptyDeadLetter,
    /// The line's first bytes plus the marker, in the raw topic.
    Truncated,
    /// Only the marker, in the raw topic.
    MarkerOnly,
}

impl Attempt {
    /// Returns whether the record goes to the dead-letter topic.
    pub(crate) fn is_dead_letter(self) -> bool {
        matches!(self, Self::DeadLetter | Self::EmptyDeadLetter)
    }

    /// Returns whether the record carries the whole line.
    pub(crate) fn is_whole_line(self) -> bool {
        matches!(self, Self::Line | Self::LineAlone)
    }
}

/// A record to send for a line.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) line: Arc<LineInfo>,
    pub(crate) attempt: Attempt,
    pub(crate) payload: Vec<u8>,
    /// Reason the line was replaced, empty for a whole line.
    pub(crate) reason: Arc<str>,
}

impl Outgoing {
    /// Returns the record of a whole line.
    pub(crate) fn line(line: Arc<LineInfo>, payload: Vec<u8>) -> Self {
        Self {
            line,
            attempt: Attempt::Line,
            payload,
            reason: Arc::from(""),
        }
    }

    /// Returns the record that replaces a line that is too long, keeping
    /// at most `keep_bytes` of `bytes`, the line's first bytes.
    pub(crate) fn replacement(
        policy: OversizePolicy,
        keep_bytes: usize,
        line: Arc<LineInfo>,
        bytes: &[u8],
        reason: String,
    ) -> Self {
        let kept = &bytes[..bytes.len().min(keep_bytes)];
        let (attempt, payload) = match policy {
            OversizePolicy::DeadLetter => (Attempt::DeadLetter, kept.to_vec()),
            OversizePolicy::Truncate => {
                let mut payload = kept.to_vec();
                payload.extend_from_slice(truncation_marker(line.length).as_bytes());
                (Attempt::Truncated, payload)
            }
        };
        Self {
            line,
            attempt,
            payload,
            reason: Arc::from(reason),
        }
    }

    /// Returns the record to try after this one was rejected as too large,
    /// or `None` when nothing smaller is left. `by_broker` is true when the
    /// broker rejected it, possibly for its batch, and false when librdkafka
    /// did, for the record alone.
    pub(crate) fn after_too_large(
        self,
        by_broker: bool,
        policy: OversizePolicy,
        keep_bytes: usize,
        reason: String,
    ) -> Option<Self> {
        match self.attempt {
            Attempt::Line if by_broker => Some(Self {
                attempt: Attempt::LineAlone,
                ..self
            }),
            Attempt::Line | Attempt::LineAlone => Some(Self::replacement(
                policy,
                keep_bytes,
                self.line,
                &self.payload,
                reason,
            )),
            Attempt::DeadLetter => Some(Self {
                attempt: Attempt::EmptyDeadLetter,
                payload: Vec::new(),
                ..self
            }),
            Attempt::Truncated => Some(Self {
                attempt: Attempt::MarkerOnly,
                payload: truncation_marker(self.line.length).into_bytes(),
                ..self
            }),
            Attempt::EmptyDeadLetter | Attempt::MarkerOnly => None,
        }
    }

    /// Returns the topic the record goes to.
    pub(crate) fn topic<'a>(&self, raw_topic: &'a str, dlq_topic: &'a str) -> &'a str {
        if self.attempt.is_dead_letter() {
            dlq_topic
        } else {
            raw_topic
        }
    }

    /// Returns the record's headers: none for a whole line, the source and
    /// length for a truncated one, and the error as well for a dead letter.
    pub(crate) fn headers(&self) -> Option<OwnedHeaders> {
        if self.attempt.is_whole_line() {
            return None;
        }
        let path = self.line.path.to_string_lossy();
        let offset = self.line.offset.to_string();
        let length = self.line.length.to_string();
        let mut headers = OwnedHeaders::new_with_capacity(5);
        if self.attempt.is_dead_letter() {
            headers = headers
                .insert(header("weblog.error.kind", ERROR_KIND))
                .insert(header("weblog.error.reason", &self.reason));
        }
        headers = headers
            .insert(header("weblog.source.file", &path))
            .insert(header("weblog.source.offset", &offset))
            .insert(header("weblog.line.length", &length));
        Some(headers)
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// Returns the text appended to a truncated line.
pub(crate) fn truncation_marker(length: u64) -> String {
    format!(" [weblog: line truncated from {length} bytes]")
}

/// Returns whether Kafka rejected a record for its size.
pub(crate) fn is_too_large(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge)
    )
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers;

    use super::*;

    fn info(length: u64) -> Arc<LineInfo> {
        Arc::new(LineInfo {
            sequence: 3,
            number: 4,
            path: Arc::from(Path::new("/logs/access.log")),
            offset: 120,
            length,
        })
    }

    fn header_map(record: &Outgoing) -> Vec<(String, String)> {
        let Some(headers) = record.headers() else {
            return Vec::new();
        };
        headers
            .iter()
            .map(|header| {
                let value = header
                    .value
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                (header.key.to_string(), value.into_owned())
            })
            .collect()
    }

    #[test]
    fn dead_letter_keeps_prefix_and_headers() {
        let record = Outgoing::replacement(
            OversizePolicy::DeadLetter,
            4,
            info(10),
            b"0123456789",
            "line of 10 bytes is too large".to_string(),
        );
        assert_eq!(record.attempt, Attempt::DeadLetter);
        assert_eq!(record.payload, b"0123");
        assert_eq!(record.topic("raw", "dlq"), "dlq");
        assert_eq!(
            header_map(&record),
            vec![
                ("weblog.error.kind".to_string(), "line-too-long".to_string()),
                (
                    "weblog.error.reason".to_string(),
                    "line of 10 bytes is too large".to_string()
                ),
                (
                    "weblog.source.file".to_string(),
                    "/logs/access.log".to_string()
                ),
                ("weblog.source.offset".to_string(), "120".to_string()),
                ("weblog.line.length".to_string(), "10".to_string()),
            ]
        );
    }

    #[test]
    fn truncated_line_ends_with_marker() {
        let record = Outgoing::replacement(
            OversizePolicy::Truncate,
            4,
            info(10),
            b"0123456789",
            String::new(),
        );
        assert_eq!(record.attempt, Attempt::Truncated);
        assert_eq!(
            record.payload,
            b"0123 [weblog: line truncated from 10 bytes]"
        );
        assert_eq!(record.topic("raw", "dlq"), "raw");
        let headers = header_map(&record);
        assert_eq!(headers.len(), 3);
        assert_eq!(
            headers[2],
            ("weblog.line.length".to_string(), "10".to_string())
        );
    }

    #[test]
    fn whole_line_has_no_headers() {
        let record = Outgoing::line(info(3), b"abc".to_vec());
        assert!(record.headers().is_none());
        assert_eq!(record.topic("raw", "dlq"), "raw");
    }

    #[test]
    fn broker_rejection_retries_line_alone_first() {
        let policy = OversizePolicy::DeadLetter;
        let record = Outgoing::line(info(6), b"abcdef".to_vec());
        let alone = record
            .after_too_large(true, policy, 2, "by broker".to_string())
            .expect("retry alone");
        assert_eq!(alone.attempt, Attempt::LineAlone);
        assert_eq!(alone.payload, b"abcdef");

        let dead_letter = alone
            .after_too_large(true, policy, 2, "by broker".to_string())
            .expect("dead letter");
        assert_eq!(dead_letter.attempt, Attempt::DeadLetter);
        assert_eq!(dead_letter.payload, b"ab");
        assert_eq!(&*dead_letter.reason, "by broker");

        let empty = dead_letter
            .after_too_large(true, policy, 2, "dlq too small".to_string())
            .expect("empty dead letter");
        assert_eq!(empty.attempt, Attempt::EmptyDeadLetter);
        assert!(empty.payload.is_empty());
        assert_eq!(&*empty.reason, "by broker");
        assert!(empty
            .after_too_large(true, policy, 2, String::new())
            .is_none());
    }

    #[test]
    fn local_rejection_skips_retry_alone() {
        let record = Outgoing::line(info(6), b"abcdef".to_vec());
        let next = record
            .after_too_large(false, OversizePolicy::Truncate, 2, "local".to_string())
            .expect("truncated line");
        assert_eq!(next.attempt, Attempt::Truncated);
        let marker = next
            .after_too_large(true, OversizePolicy::Truncate, 2, String::new())
            .expect("marker only");
        assert_eq!(marker.attempt, Attempt::MarkerOnly);
        assert_eq!(marker.payload, truncation_marker(6).as_bytes());
    }

    #[test]
    fn size_errors_are_recognized() {
        let local = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        let batch = KafkaError::MessageProduction(RDKafkaErrorCode::MessageBatchTooLarge);
        let other = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert!(is_too_large(&local));
        assert!(is_too_large(&batch));
        assert!(!is_too_large(&other));
    }
}
