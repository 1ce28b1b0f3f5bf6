//! `weblog-shipper` reads a web-server access log once and produces each
//! line to a Kafka topic as one record, then exits.
//!
//! Exit codes:
//! - 0: Kafka acknowledged every line.
//! - 1: any error, including a failed delivery and an interruption by
//!   SIGINT or SIGTERM, after which the file is only partly shipped.
//! - 2: invalid flags.
//!
//! Layout: `config` turns flags into settings, `source` splits the file into
//! lines, and `produce` sends them and counts the acknowledgements.

mod config;
mod produce;
mod source;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::config::{Cli, Config};
use crate::produce::ShipSummary;

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
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ShipSummary> {
    let config = Config::try_from(cli)?;
    let shutdown =
        weblog_common::listen_for_shutdown().context("failed to install the signal handlers")?;
    produce::ship(&config, &shutdown).await
}
