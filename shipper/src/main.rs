//! `weblog-shipper` produces each line of a web-server access log to a
//! Kafka topic as one record. It reads the file once and exits, or with
//! `--follow` keeps following it like `tail -F` until SIGINT or SIGTERM.
//!
//! With `--checkpoint`, it records per file the byte offset up to which
//! Kafka acknowledged every line, and a restart resumes there. Delivery is
//! at-least-once: after a crash, the lines sent after the last checkpoint
//! write are sent again, and no line is lost. A line too large for Kafka is
//! dead-lettered or truncated, by `--oversize`, and never stops the run.
//!
//! Exit codes:
//! - 0: Kafka acknowledged every line read; in follow mode, after SIGINT or
//!   SIGTERM.
//! - 1: any error, including a failed delivery, and in one-shot mode an
//!   interruption by SIGINT or SIGTERM, after which the file is only partly
//!   shipped.
//! - 2: invalid flags.
//!
//! Layout:
//! - `config` turns flags into settings.
//! - `source` splits a file into lines, and `follow` reads files on a
//!   thread of its own and notices rotation.
//! - `identity`, `checkpoint`, `resume` and `progress` recognize files and
//!   record how far they are shipped.
//! - `oversize` replaces lines too large for Kafka.
//! - `shipment` sends lines and counts acknowledgements, and `produce` runs
//!   it all. `progress_bar` shows the counts to the operator.

mod checkpoint;
mod config;
mod follow;
mod identity;
mod metrics;
mod oversize;
mod produce;
mod progress;
mod progress_bar;
mod resume;
mod shipment;
mod source;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::config::{Cli, Config};
use crate::produce::ShipSummary;
use crate::progress_bar::ProgressReporter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    match run(cli).await {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {}", weblog_common::report::error_chain(&error));
            weblog_common::usage::exit_code(&error)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ShipSummary> {
    let config = Config::try_from(cli)?;
    let shutdown =
        weblog_common::listen_for_shutdown().context("failed to install the signal handlers")?;
    let reporter = ProgressReporter::start(&config.progress, &config.file, config.follow);
    let summary = produce::ship(&config, &shutdown).await;
    if let Some(reporter) = reporter {
        reporter.finish().await;
    }
    summary
}
