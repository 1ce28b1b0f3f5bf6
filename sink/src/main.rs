//! `weblog-sink` consumes the enriched records from Kafka and appends each
//! one as a line to a JSON Lines file.
//!
//! Delivery into the file is exactly-once. After each batch is written and
//! fsynced, a checkpoint beside the file records its length and the next
//! offset per partition. A restart truncates what was written after the
//! last checkpoint and resumes the consumer at the checkpointed offsets,
//! so a record is neither lost nor written twice when the sink is killed
//! at any point. This holds for one sink instance per output file, which
//! the lock file `<output>.lock` enforces, and while nothing else writes to
//! the file. Records sent to the dead-letter
//! topic are at-least-once: a crash after their acknowledgement and before
//! the checkpoint sends them again.
//!
//! Exit codes:
//! - 0: a clean stop on SIGINT or SIGTERM, once the current batch is
//!   committed.
//! - 1: any error, such as a failed write. The batch in progress is then
//!   not checkpointed, and the next run writes it again.
//! - 2: invalid flags.
//!
//! Layout: `config` turns flags into settings, `consume` runs the batch
//! loop and commits, `receive` collects each batch and handles failed
//! receives, `context` starts assigned partitions at the
//! checkpoint, `record` checks each value, `write` owns the output file and
//! its rotation, `lock` keeps a second sink off it, `checkpoint` the
//! checkpoint file, `dead_letter` the dead-letter producer, and `metrics`
//! the Prometheus metrics that the admin endpoint (`--admin-addr`) serves.

mod checkpoint;
mod config;
mod consume;
mod context;
mod dead_letter;
mod lock;
mod metrics;
mod receive;
mod record;
mod write;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use weblog_common::admin::AdminServer;

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
            eprintln!("error: {}", weblog_common::report::error_chain(&error));
            weblog_common::usage::exit_code(&error)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<consume::SinkSummary> {
    let config = Config::try_from(cli)?;
    let shutdown =
        weblog_common::listen_for_shutdown().context("failed to install the signal handlers")?;
    let metrics = metrics::install()?;
    if let Some(addr) = config.admin_addr {
        AdminServer::new(Some(metrics))
            .serve(addr, shutdown.child_token())
            .await?;
    }
    consume::run(&config, &shutdown).await
}
