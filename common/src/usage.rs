//! Errors in flags, environment variables and option files, which the
//! binaries report with exit status 2 like clap's own, so that a service
//! manager can tell a setting to fix from a failure worth a restart.

use std::fmt;
use std::process::ExitCode;

use rdkafka::error::KafkaError;

/// Exit status of a binary stopped by an invalid setting; clap exits with
/// it on an invalid flag.
pub const USAGE_EXIT_STATUS: u8 = 2;

/// A setting that no retry can fix. Its message names the setting, the
/// value and the fix.
#[derive(Debug)]
pub struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns an error with `message` that [`exit_code`] maps to
/// [`USAGE_EXIT_STATUS`].
pub fn usage_error(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// Returns the exit status of a binary that stopped with `error`:
/// [`USAGE_EXIT_STATUS`] when a cause is a [`UsageError`] or a setting that
/// librdkafka rejected while creating a client, 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> ExitCode {
    let invalid_setting = error.chain().any(|cause| {
        cause.is::<UsageError>()
            || matches!(
                cause.downcast_ref::<KafkaError>(),
                Some(KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_))
            )
    });
    if invalid_setting {
        ExitCode::from(USAGE_EXIT_STATUS)
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::types::RDKafkaConfRes;

    use super::*;

    #[test]
    fn usage_error_exits_2() {
        let error = usage_error("invalid --flag x").context("failed to start");
        assert_eq!(exit_code(&error), ExitCode::from(2));
        assert_eq!(format!("{error:#}"), "failed to start: invalid --flag x");
    }

    #[test]
    fn rejected_kafka_setting_exits_2() {
        let error = anyhow::Error::new(KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "invalid value".to_string(),
            "linger.ms".to_string(),
            "x".to_string(),
        ))
        .context("failed to create producer");
        assert_eq!(exit_code(&error), ExitCode::from(2));
    }

    #[test]
    fn other_error_exits_1() {
        let error = anyhow::anyhow!("connection refused").context("failed to fetch metadata");
        assert_eq!(exit_code(&error), ExitCode::FAILURE);
    }
}
