//! Tracing setup: `RUST_LOG` picks the levels, `--log-format` the format.
//! Logs go to stderr so that stdout stays free for command output. Text
//! logs are colored only on a terminal, and never with `NO_COLOR` set, so
//! that journald and log files get plain text.

use std::env::VarError;
use std::io::IsTerminal;

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Filter used when `RUST_LOG` is not set: lifecycle events of our crates
/// and warnings from everything else.
const DEFAULT_FILTER: &str =
    "warn,weblog_common=info,weblog_host=info,weblog_shipper=info,weblog_sink=info";

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per event, for log collectors.
    Json,
}

/// Logging flags shared by every binary.
#[derive(Args, Clone, Debug)]
pub struct LogArgs {
    /// Log format on stderr. Levels come from RUST_LOG (default: info for
    /// weblog, warn for libraries).
    #[arg(long, env = "WEBLOG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the global tracing subscriber. Call once, first thing in
    /// `main`.
    ///
    /// An invalid `RUST_LOG` is logged as a warning, and the default filter
    /// is used instead.
    pub fn init(&self) {
        let (filter, invalid) = select_filter(std::env::var(EnvFilter::DEFAULT_ENV));
        let colored = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(colored)
            .with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Text => builder.init(),
            LogFormat::Json => builder.json().flatten_event(true).init(),
        }
        if let Some(invalid) = invalid {
            tracing::warn!(
                variable = EnvFilter::DEFAULT_ENV,
                value = ?invalid.value,
                error = %invalid.error,
                default = DEFAULT_FILTER,
                "invalid RUST_LOG, so the default log filter is used"
            );
        }
    }
}

/// A `RUST_LOG` value that does not parse.
#[derive(Debug, PartialEq, Eq)]
struct InvalidFilter {
    value: String,
    error: String,
}

/// Parses `rust_log`, the value of `RUST_LOG`, into a filter. Falls back to
/// the default filter when the variable is not set or does not parse, and in
/// the second case also returns the value and the parse error.
fn select_filter(rust_log: Result<String, VarError>) -> (EnvFilter, Option<InvalidFilter>) {
    let default = || EnvFilter::new(DEFAULT_FILTER);
    match rust_log {
        Ok(value) => match EnvFilter::try_new(&value) {
            Ok(filter) => (filter, None),
            Err(error) => {
                let error = error.to_string();
                (default(), Some(InvalidFilter { value, error }))
            }
        },
        Err(VarError::NotPresent) => (default(), None),
        Err(VarError::NotUnicode(value)) => {
            let invalid = InvalidFilter {
                value: value.to_string_lossy().into_owned(),
                error: "it is not valid UTF-8".to_owned(),
            };
            (default(), Some(invalid))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unparsable_filter_falls_back() {
        let (filter, invalid) = select_filter(Ok("weblog=[[[".to_owned()));
        assert_eq!(
            filter.to_string(),
            EnvFilter::new(DEFAULT_FILTER).to_string()
        );
        let invalid = invalid.expect("the value does not parse");
        assert_eq!(invalid.value, "weblog=[[[");
        assert_eq!(
            invalid.error,
            "error parsing level filter: expected one of \"off\", \"error\", \"warn\", \
             \"info\", \"debug\", \"trace\", or a number 0-5"
        );
    }

    #[test]
    fn valid_filter_is_used() {
        let (filter, invalid) = select_filter(Ok("weblog_shipper=debug".to_owned()));
        assert_eq!(filter.to_string(), "weblog_shipper=debug");
        assert_eq!(invalid, None);
    }

    #[test]
    fn unset_filter_is_default() {
        let (filter, invalid) = select_filter(Err(VarError::NotPresent));
        assert_eq!(
            filter.to_string(),
            EnvFilter::new(DEFAULT_FILTER).to_string()
        );
        assert_eq!(invalid, None);
    }

    #[test]
    fn non_unicode_filter_falls_back() {
        use std::os::unix::ffi::OsStringExt;

        let value = std::ffi::OsString::from_vec(b"weblog=\xff".to_vec());
        let (filter, invalid) = select_filter(Err(VarError::NotUnicode(value)));
        assert_eq!(
            filter.to_string(),
            EnvFilter::new(DEFAULT_FILTER).to_string()
        );
        let invalid = invalid.expect("the value is not UTF-8");
        assert_eq!(invalid.value, "weblog=\u{fffd}");
        assert_eq!(invalid.error, "it is not valid UTF-8");
    }
}
