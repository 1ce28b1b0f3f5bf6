//! Sizing dead letters so that Kafka accepts them whatever their input.
//!
//! A dead letter carries its input's bytes plus a dozen headers, so an
//! input just under the max record size makes a dead letter over it. Such
//! a dead letter keeps only the input's first bytes, as many as fit in the
//! producer's `message.max.bytes`, and carries the headers
//! [`headers::LINE_LENGTH`] (the input's full length, the name the shipper
//! uses for a line it cut) and [`headers::LINE_TRUNCATED`]. When the broker
//! still rejects a dead letter for good, because the topic's
//! `max.message.bytes` is lower, it is sent once more with at most
//! [`SMALL_VALUE_BYTES`] of the input and a reason of at most
//! [`SMALL_REASON_BYTES`]; only when that fails too does the host fail.
//!
//! NOTE: the broker checks `max.message.bytes` per record batch, so a dead
//! letter rejected with others in one batch is cut although it would fit
//! alone; the shipper sends such a line alone first. `replay-dlq` leaves a
//! cut dead letter in place.
//!
//! A key is never cut, since a cut key is another key: a dead letter whose
//! input's key is over [`DeadLetterSize::max_key_bytes`] has no key and
//! carries the key's length in [`headers::KEY_LENGTH`].

use rdkafka::message::{Header, Headers, OwnedHeaders};

use crate::failure::cut_text;
use crate::headers;

/// Bytes added to a record's key, value and header bytes when estimating
/// its size against `message.max.bytes`. librdkafka 2.12 counts at most 31
/// bytes of per-record overhead and a few varint bytes per header, so this
/// errs on the large side.
pub(super) const RECORD_OVERHEAD_BYTES: usize = 64;

/// Bytes added per header in the same estimate.
pub(super) const HEADER_OVERHEAD_BYTES: usize = 10;

/// Bytes kept of the input in a dead letter sent again after the broker
/// rejected it for good. With the headers this stays under 2 KB.
pub(super) const SMALL_VALUE_BYTES: usize = 1024;

/// Bytes kept of the reason in such a dead letter.
pub(super) const SMALL_REASON_BYTES: usize = 256;

/// Room kept for the two headers that mark a cut value: the names, a
/// 20-digit length, `true` and their overhead.
const CUT_HEADERS_BYTES: usize = 96;

/// How much of its input a dead letter keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DeadLetterSize {
    /// As much as fits in the producer's `message.max.bytes`.
    Fit,
    /// At most [`SMALL_VALUE_BYTES`]: the broker rejected a larger dead
    /// letter. Its reason comes from [`small_reason`].
    Small,
}

impl DeadLetterSize {
    /// Returns the max bytes of the input's key that a dead letter keeps.
    /// A longer key is dropped.
    pub(super) fn max_key_bytes(self, message_max_bytes: usize) -> usize {
        match self {
            Self::Fit => message_max_bytes / 2,
            Self::Small => SMALL_VALUE_BYTES,
        }
    }

    /// Returns the max bytes of the value of a dead letter whose key and
    /// other headers take `fixed_bytes` of `message_max_bytes`.
    pub(super) fn max_value_bytes(self, message_max_bytes: usize, fixed_bytes: usize) -> usize {
        let fit = message_max_bytes.saturating_sub(fixed_bytes + CUT_HEADERS_BYTES);
        match self {
            Self::Fit => fit,
            Self::Small => fit.min(SMALL_VALUE_BYTES),
        }
    }
}

/// Returns the bytes `headers` add to a record in the size estimate.
pub(super) fn header_bytes(headers: &OwnedHeaders) -> usize {
    headers
        .iter()
        .map(|header| {
            header.key.len() + header.value.map_or(0, <[u8]>::len) + HEADER_OVERHEAD_BYTES
        })
        .sum()
}

/// Returns the first `max_bytes` of `value` and `headers`, with the
/// headers that mark a cut value added when `value` is longer.
pub(super) fn cut_value(
    value: &[u8],
    max_bytes: usize,
    headers: OwnedHeaders,
) -> (&[u8], OwnedHeaders) {
    if value.len() <= max_bytes {
        return (value, headers);
    }
    let length = value.len().to_string();
    let headers = headers
        .insert(header(headers::LINE_LENGTH, &length))
        .insert(header(headers::LINE_TRUNCATED, "true"));
    (&value[..max_bytes], headers)
}

/// Returns a copy of a rejected dead letter's headers for a
/// [`DeadLetterSize::Small`] dead letter: the reason is cut, with why the
/// dead letter is small appended, and the headers of a cut value and a
/// dropped key are dropped because they are added again as needed.
pub(super) fn small_headers(rejected: Option<&OwnedHeaders>, error: &str) -> OwnedHeaders {
    let mut copy = OwnedHeaders::new_with_capacity(16);
    for old in rejected.iter().flat_map(|headers| headers.iter()) {
        if [
            headers::LINE_LENGTH,
            headers::LINE_TRUNCATED,
            headers::KEY_LENGTH,
        ]
        .contains(&old.key)
        {
            continue;
        }
        if old.key != headers::ERROR_REASON {
            copy = copy.insert(old);
            continue;
        }
        let reason = String::from_utf8_lossy(old.value.unwrap_or_default()).into_owned();
        let reason = small_reason(reason, error);
        copy = copy.insert(header(headers::ERROR_REASON, &reason));
    }
    copy
}

/// Returns the reason of a [`DeadLetterSize::Small`] dead letter: the
/// first [`SMALL_REASON_BYTES`] of `reason` and the broker's `error` for
/// the larger one.
pub(super) fn small_reason(reason: String, error: &str) -> String {
    format!(
        "{}; the broker rejected its dead letter too: {error}",
        cut_text(reason, SMALL_REASON_BYTES)
    )
}

pub(super) fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_value(headers: &OwnedHeaders, key: &str) -> Option<String> {
        headers
            .iter()
            .find(|header| header.key == key)
            .and_then(|header| header.value)
            .map(|value| String::from_utf8_lossy(value).into_owned())
    }

    #[test]
    fn short_value_is_kept() {
        let headers = OwnedHeaders::new().insert(header("a", "b"));
        let (value, headers) = cut_value(b"abc", 3, headers);
        assert_eq!(value, b"abc");
        assert_eq!(headers.count(), 1);
    }

    #[test]
    fn long_value_is_cut_and_marked() {
        let (value, headers) = cut_value(b"abcdef", 4, OwnedHeaders::new());
        assert_eq!(value, b"abcd");
        assert_eq!(
            header_value(&headers, headers::LINE_LENGTH).as_deref(),
            Some("6")
        );
        assert_eq!(
            header_value(&headers, headers::LINE_TRUNCATED).as_deref(),
            Some("true")
        );
    }

    #[test]
    fn fit_leaves_room_for_headers() {
        let max = DeadLetterSize::Fit.max_value_bytes(1_000_000, 900);
        assert_eq!(max, 1_000_000 - 900 - CUT_HEADERS_BYTES);
        assert_eq!(DeadLetterSize::Small.max_value_bytes(1_000_000, 900), 1024);
        assert_eq!(DeadLetterSize::Fit.max_value_bytes(100, 900), 0);
    }

    #[test]
    fn key_limit_leaves_room_for_value() {
        assert_eq!(DeadLetterSize::Fit.max_key_bytes(1_000_000), 500_000);
        assert_eq!(DeadLetterSize::Small.max_key_bytes(1_000_000), 1024);
    }

    #[test]
    fn small_headers_cut_reason() {
        let rejected = OwnedHeaders::new()
            .insert(header(headers::PLUGIN_NAME, "access-log"))
            .insert(header(headers::ERROR_REASON, &"x".repeat(5_000)))
            .insert(header(headers::LINE_LENGTH, "9"))
            .insert(header(headers::LINE_TRUNCATED, "true"))
            .insert(header(headers::KEY_LENGTH, "5000"));
        let copy = small_headers(Some(&rejected), "MessageSizeTooLarge");
        assert_eq!(copy.count(), 2);
        assert_eq!(
            header_value(&copy, headers::PLUGIN_NAME).as_deref(),
            Some("access-log")
        );
        let reason = header_value(&copy, headers::ERROR_REASON).expect("reason");
        assert!(reason.starts_with(&"x".repeat(SMALL_REASON_BYTES)));
        assert!(
            reason.ends_with("... (cut from 5000 bytes); the broker rejected its dead letter too: MessageSizeTooLarge"),
            "{reason}"
        );
    }
}
