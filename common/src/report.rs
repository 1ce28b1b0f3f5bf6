//! Printing an error with its causes on one line, as the binary does
//! before it exits.

use std::fmt::Write;

/// Returns `error` and its causes joined by `: `, as `{:#}` does, but
/// leaves out a cause whose message already ends the message before it.
/// rdkafka's `KafkaError` (0.39) prints its error code and also returns
/// that code as its source, so `{:#}` shows the code twice.
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if !previous.is_empty() && previous.ends_with(&message) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        let _ = write!(line, "{message}");
        previous = message;
    }
    line
}

#[cfg(test)]
mod tests {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    use super::*;

    #[test]
    fn kafka_code_is_printed_once() {
        let error = anyhow::Error::new(KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnsupportedFeature,
        ))
        .context("failed to fetch metadata of topic \"t\"");
        let line = error_chain(&error);
        assert_eq!(
            line,
            "failed to fetch metadata of topic \"t\": Meta data fetch error: \
             UnsupportedFeature (Local: Required feature not supported by broker)"
        );
        assert_eq!(line.matches("UnsupportedFeature").count(), 1);
        let alternate = format!("{error:#}");
        assert_eq!(alternate.matches("UnsupportedFeature").count(), 2);
    }

    #[test]
    fn distinct_causes_are_kept() {
        let error = anyhow::anyhow!("disk full")
            .context("failed to write file")
            .context("failed to save");
        assert_eq!(
            error_chain(&error),
            "failed to save: failed to write file: disk full"
        );
    }
}
