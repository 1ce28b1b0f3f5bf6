//! Tracing setup: `RUST_LOG` picks the levels, `--log-format` the format.
//! Logs go to stderr so that stdout stays free for command output. Text
//! logs are colored only on a terminal, and never with `NO_COLOR` set, so
//! that journald and log files get plain text.

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
    pub fn init(&self) {
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
        let colored = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(colored)
            .with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Text => builder.init(),
            LogFormat::Json => builder.json().flatten_event(true).init(),
        }
    }
}
