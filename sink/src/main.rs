//! `weblog-sink` consumes the enriched records from Kafka and appends each
//! one as a line to a JSON Lines file.
//!
//! Delivery is at-least-once. A batch's offsets are committed only after
//! its records are written and fsynced, or acknowledged by the dead-letter
//! topic, so a committed record is never lost. The guarantee stops short of
//! exactly-once: when the sink dies after the fsync and before the commit,
//! or when a rebalance makes that commit fail, the batch is consumed again
//! and its records appear in the file twice.
//!
//! Exit codes:
//! - 0: a clean stop on SIGINT or SIGTERM, once the current batch is
//!   committed.
//! - 1: any error, such as a failed write. The batch in progress is then
//!   not committed.
//! - 2: invalid flags.
//!
//! Layout: `config` turns flags into settings, `consume` runs the batch
//! loop and commits, `record` checks each value, `write` owns the output
//! file, and `dead_letter` the dead-letter producer.

mod config;
mod consume;
mod dead_letter;
mod record;
mod write;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::config::{Cli, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    let output = cli.output.clone();
    match run(cli).await {
        Ok(summary) => {
            println!("wrote {} records to {}", summary.written, output.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<consume::SinkSummary> {
    let config = Config::try_from(cli)?;
    let shutdown =
        weblog_common::listen_for_shutdown().context("failed to install the signal handlers")?;
    consume::run(&config, &shutdown).await
}
