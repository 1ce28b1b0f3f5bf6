//! weblog-bench: measures the whole weblog pipeline beside a passthrough
//! loop with no plugin and a reconstruction of the seed prototype, on one
//! broker and the same input. `scripts/bench-pipeline.sh` (run by
//! `make bench`) starts the broker and calls `replay` and `run`.
//!
//! Layout:
//! - [`replay`]: the input file, the real corpora repeated.
//! - [`passthrough`]: the consume-then-produce loop with no plugin.
//! - [`run`]: the order of the measurements; [`pipelines`]: the commands
//!   of each pipeline's stages; [`watch`]: progress and timing of a stage.
//! - [`latency`]: the rate-limited producer and the consumer that times it.
//! - [`kafka`], [`process`], [`machine`]: what the broker and Linux
//!   report.
//! - [`report`]: results.json and the Markdown tables.

mod kafka;
mod latency;
mod machine;
mod passthrough;
mod pipelines;
mod process;
mod replay;
mod report;
mod run;
mod watch;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weblog_common::LogArgs;

/// Logs shown when `RUST_LOG` is not set.
const DEFAULT_LOG_FILTER: &str = "warn,weblog_bench=info";

#[derive(Parser)]
#[command(
    name = "weblog-bench",
    about = "Benchmarks the weblog pipeline end to end"
)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a replay file: the corpora's lines repeated up to a line count.
    Replay(replay::ReplayArgs),
    /// Copy records from one topic to another with no plugin, committing
    /// after acknowledgements like the host.
    Passthrough(passthrough::PassthroughArgs),
    /// Measure every pipeline and write results.json and results.md.
    Run(run::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", DEFAULT_LOG_FILTER);
    }
    cli.log.init();
    let result = match cli.command {
        Command::Replay(args) => replay::write(&args),
        Command::Passthrough(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("failed to start the tokio runtime")
            .and_then(|runtime| runtime.block_on(passthrough::run(args))),
        Command::Run(args) => run::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
