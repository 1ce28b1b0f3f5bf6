//! Command line of weblog-host: `run` starts the Kafka pipeline and
//! `enrich-file` runs a plugin over a file. Exit codes: 0 on success or a
//! clean shutdown, 1 on an error, 2 on invalid arguments.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use weblog_common::{AdminArgs, KafkaArgs, LogArgs};
use weblog_host::cache::ComponentCache;
use weblog_host::enrich_file::{self, DEFAULT_BATCH_SIZE};
use weblog_host::pipeline::{self, PipelineConfig, RetrySettings, RunTotals};
use weblog_host::plugin::Plugin;
use weblog_host::retry::{Backoff, DEFAULT_MAX_RETRIES};
use weblog_host::sandbox::{self, SandboxLimits, DEFAULT_CALL_TIMEOUT, DEFAULT_MEMORY_LIMIT};

/// Max of `--batch-size`: a batch is one plugin call, whose records and
/// outputs all sit in the plugin's memory at once.
const MAX_BATCH_SIZE: u64 = 100_000;

/// Max of `--batch-linger-ms`: a longer wait only delays records.
const MAX_BATCH_LINGER_MS: u64 = 60_000;

/// Max of `--max-in-flight-batches`. Every batch in flight keeps its
/// records and outputs in memory, and tokio's semaphore that counts them
/// panics on more than `usize::MAX >> 3` permits.
const MAX_IN_FLIGHT_BATCHES: u64 = 10_000;

/// Max of `--plugin-timeout-ms`: ten minutes of CPU for one call.
const MAX_PLUGIN_TIMEOUT_MS: u64 = 600_000;

/// Min of `--plugin-memory-mib`, a floor that rejects obvious typos. It
/// is not measured against the smallest plugin.
const MIN_PLUGIN_MEMORY_MIB: u64 = 2;

/// Max of `--plugin-memory-mib`: the 4 GiB that a 32-bit WASM memory can
/// address.
const MAX_PLUGIN_MEMORY_MIB: u64 = 4096;

/// Max of `--max-retries`: with the 30 s max backoff, over 8 hours.
const MAX_RETRIES: u64 = 1_000;

#[derive(Parser)]
#[command(
    name = "weblog-host",
    version,
    about = "Enriches access-log records from Kafka in a WASM plugin"
)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

// The arguments are parsed once at start, so the size of the larger
// variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Consume raw lines from Kafka, enrich them and produce the results.
    Run(RunArgs),
    /// Run a plugin over a file without Kafka and print one JSON object per line.
    EnrichFile(EnrichFileArgs),
    /// Send the dead letters in --dlq-topic through the plugin again.
    ///
    /// Takes the flags of `run`. Successes go to --output-topic, new
    /// failures back to --dlq-topic with one attempt more. Consumes in the
    /// group <--group-id>-replay (--input-topic is not used), stops at the
    /// end offsets found at start and prints the counts.
    ReplayDlq(ReplayArgs),
    /// Print a consumer group's lag per partition: committed offset, end
    /// offset and the records between them.
    Lag(weblog_common::lag::LagArgs),
}

/// Plugin flags shared by both commands.
#[derive(Args)]
struct PluginArgs {
    /// Path of the plugin component (.wasm).
    #[arg(long, env = "WEBLOG_PLUGIN")]
    plugin: PathBuf,

    /// Plugin setting as key=value, passed to the plugin's init. Repeat for
    /// several, or separate them with commas. A part without '=' belongs
    /// to the value before it, so KEY=a,b is one setting; a key cannot
    /// hold a comma.
    #[arg(
        long = "plugin-config",
        env = "WEBLOG_PLUGIN_CONFIG",
        value_name = "KEY=VALUE",
        value_parser = parse_plugin_settings
    )]
    plugin_config: Vec<PluginSettings>,

    /// CPU deadline of one plugin call, in milliseconds, from 1 to 600000.
    /// A call past it is interrupted and its records are dead-lettered as
    /// timeouts.
    #[arg(
        long,
        env = "WEBLOG_PLUGIN_TIMEOUT_MS",
        default_value_t = DEFAULT_CALL_TIMEOUT.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(1..=MAX_PLUGIN_TIMEOUT_MS)
    )]
    plugin_timeout_ms: u64,

    /// Max linear memory of a plugin instance, in MiB, from 2 to 4096.
    #[arg(
        long,
        env = "WEBLOG_PLUGIN_MEMORY_MIB",
        default_value_t = DEFAULT_MEMORY_LIMIT >> 20,
        value_parser = ranged_usize(MIN_PLUGIN_MEMORY_MIB, MAX_PLUGIN_MEMORY_MIB)
    )]
    plugin_memory_mib: usize,
}

/// Returns a parser of a `usize` flag that rejects values outside
/// `min..=max`, naming the value and the range.
fn ranged_usize(min: u64, max: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(min..=max)
}

impl PluginArgs {
    /// Returns the sandbox limits. clap has checked the flags' ranges.
    fn limits(&self) -> anyhow::Result<SandboxLimits> {
        Ok(SandboxLimits {
            call_timeout: Duration::from_millis(self.plugin_timeout_ms),
            memory_bytes: self.plugin_memory_mib << 20,
        })
    }
}

/// Help of `--admin-addr` on the host, which also serves `POST /reload`.
const ADMIN_ADDR_HELP: &str = "Loopback address of the admin HTTP endpoint, such as \
    127.0.0.1:9464, serving GET /metrics, /healthz and /readyz, and POST /reload, which swaps \
    the plugin like SIGHUP and rejects clients that are not on loopback. Port 0 picks a free \
    port, logged at start. Off by default, so that several instances on one machine do not \
    compete for a port";

#[derive(Args)]
#[command(mut_arg("admin_addr", |arg| arg.help(ADMIN_ADDR_HELP)))]
struct RunArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    plugin: PluginArgs,

    /// Topic to consume raw log lines from.
    #[arg(long, env = "WEBLOG_RAW_TOPIC", default_value = "web-logs-raw")]
    input_topic: String,

    /// Topic to produce enriched JSON records to.
    #[arg(
        long,
        env = "WEBLOG_ENRICHED_TOPIC",
        default_value = "web-logs-enriched"
    )]
    output_topic: String,

    /// Topic to produce records that could not be enriched to.
    #[arg(long, env = "WEBLOG_DLQ_TOPIC", default_value = "web-logs-dlq")]
    dlq_topic: String,

    /// Consumer group id shared by all host instances.
    #[arg(long, env = "WEBLOG_HOST_GROUP_ID", default_value = "weblog-host")]
    group_id: String,

    /// Max records per plugin call, from 1 to 100000.
    #[arg(
        long,
        env = "WEBLOG_HOST_BATCH_SIZE",
        default_value_t = DEFAULT_BATCH_SIZE,
        value_parser = ranged_usize(1, MAX_BATCH_SIZE)
    )]
    batch_size: usize,

    /// How long a batch waits for more records after its first, in
    /// milliseconds, from 0 to 60000.
    #[arg(
        long,
        env = "WEBLOG_HOST_BATCH_LINGER_MS",
        default_value_t = 20,
        value_parser = clap::value_parser!(u64).range(0..=MAX_BATCH_LINGER_MS)
    )]
    batch_linger_ms: u64,

    /// Max batches whose outputs await acknowledgement before consumption
    /// pauses, from 1 to 10000.
    #[arg(
        long,
        env = "WEBLOG_HOST_MAX_IN_FLIGHT_BATCHES",
        default_value_t = 32,
        value_parser = ranged_usize(1, MAX_IN_FLIGHT_BATCHES)
    )]
    max_in_flight_batches: usize,

    /// Sends of a record after its delivery failed with a retriable error
    /// (librdkafka's own retries until message.timeout.ms are spent by
    /// then), with exponential backoff from 0.5 s to 30 s and 20 % jitter.
    /// With --exactly-once, aborted transactions in a row. Past it the
    /// host stops without committing the record's offset. From 0 to 1000.
    #[arg(
        long,
        env = "WEBLOG_HOST_MAX_RETRIES",
        default_value_t = DEFAULT_MAX_RETRIES,
        value_parser = clap::value_parser!(u32).range(0..=MAX_RETRIES as i64)
    )]
    max_retries: u32,

    /// Directory of compiled plugin components, so that a restart or a swap
    /// back does not compile again [default: $WEBLOG_CACHE_DIR/components,
    /// or $HOME/.cache/weblog/components]. Only the host's user may write
    /// to it: the host runs the machine code it finds there.
    #[arg(long, env = "WEBLOG_COMPONENT_CACHE", value_name = "DIR")]
    component_cache: Option<PathBuf>,

    /// Compile the plugin at every start and swap, without the cache. It
    /// wins over --component-cache and WEBLOG_COMPONENT_CACHE.
    #[arg(long)]
    no_component_cache: bool,

    /// The admin endpoint; its `POST /reload` swaps the plugin like SIGHUP.
    #[command(flatten)]
    admin: AdminArgs,

    /// Put each batch's outputs and offsets in one Kafka transaction, so
    /// that read_committed consumers see every input's outputs exactly
    /// once. Batches then run one at a time, which lowers throughput.
    #[arg(long, env = "WEBLOG_HOST_EXACTLY_ONCE")]
    exactly_once: bool,

    /// Transactional id of this instance with --exactly-once
    /// [default: weblog-host-<group id>-<instance id>]. Keep it across
    /// restarts, so that a restarted instance fences its predecessor and
    /// aborts the transaction it left open. Two live instances must not
    /// share it, because the newer one fences the older.
    #[arg(long, env = "WEBLOG_HOST_TRANSACTIONAL_ID", requires = "exactly_once")]
    transactional_id: Option<String>,

    /// Name of this instance, written to every dead letter and part of the
    /// default transactional id [default: the host name in the
    /// transactional id, and the host name plus a random suffix, logged at
    /// start, in dead letters].
    #[arg(long, env = "WEBLOG_HOST_INSTANCE_ID")]
    instance_id: Option<String>,

    /// Call the default plugin's parser compiled into the host in place of
    /// the component's, with the same settings, to measure what the
    /// sandbox costs. For benchmarks only.
    #[cfg(feature = "native-plugin")]
    #[arg(long, hide = true)]
    native_plugin: bool,
}

impl RunArgs {
    /// Returns the component cache directory, or `None` when it is off.
    fn component_cache(&self) -> Option<PathBuf> {
        if self.no_component_cache {
            return None;
        }
        let dir = self
            .component_cache
            .clone()
            .or_else(ComponentCache::default_dir);
        if dir.is_none() {
            tracing::warn!(
                "neither HOME nor WEBLOG_CACHE_DIR is set, compiled plugins are not cached"
            );
        }
        dir
    }

    /// Returns --instance-id, or else generates an id from the host name
    /// and the clock and logs it.
    fn instance_id(&self) -> anyhow::Result<String> {
        if let Some(id) = &self.instance_id {
            anyhow::ensure!(!id.is_empty(), "invalid --instance-id: it is empty");
            return Ok(id.clone());
        }
        let host = host_name().unwrap_or_else(|_| "weblog-host".to_string());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let id = format!("{host}-{:08x}", nanos ^ std::process::id().rotate_left(16));
        tracing::info!(instance = %id, "generated an instance id; set --instance-id to choose one");
        Ok(id)
    }

    /// Returns the transactional id with --exactly-once, else `None`.
    fn transactional_id(&self) -> anyhow::Result<Option<String>> {
        if !self.exactly_once {
            return Ok(None);
        }
        if let Some(id) = &self.transactional_id {
            anyhow::ensure!(!id.is_empty(), "invalid --transactional-id: it is empty");
            return Ok(Some(id.clone()));
        }
        let instance = match &self.instance_id {
            Some(instance) => instance.clone(),
            None => host_name().context(
                "failed to read the host name for the transactional id; \
                 set --instance-id or --transactional-id",
            )?,
        };
        anyhow::ensure!(!instance.is_empty(), "invalid --instance-id: it is empty");
        Ok(Some(format!("weblog-host-{}-{instance}", self.group_id)))
    }
}

/// Returns the kernel's host name (Linux), else `$HOSTNAME`.
fn host_name() -> anyhow::Result<String> {
    let name = match std::fs::read_to_string("/proc/sys/kernel/hostname") {
        Ok(name) => name.trim().to_string(),
        Err(_) => std::env::var("HOSTNAME").context("HOSTNAME is not set")?,
    };
    anyhow::ensure!(!name.is_empty(), "the host name is empty");
    Ok(name)
}

/// Flags of `replay-dlq`: those of `run` and a cap on attempts.
#[derive(Args)]
struct ReplayArgs {
    #[command(flatten)]
    run: RunArgs,

    /// Leave in the dead-letter topic each dead letter that already went
    /// through a plugin this many times (its weblog.error.attempts header),
    /// so that records no plugin can enrich are not replayed forever.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_attempts: u32,
}

#[derive(Args)]
struct EnrichFileArgs {
    #[command(flatten)]
    plugin: PluginArgs,

    /// Log file to enrich, read as raw bytes and split on `\n`.
    #[arg(long, env = "WEBLOG_INPUT")]
    input: PathBuf,

    /// Lines per plugin call, from 1 to 100000.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE, value_parser = ranged_usize(1, MAX_BATCH_SIZE))]
    batch_size: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", weblog_common::report::error_chain(&error));
            weblog_common::usage::exit_code(&error)
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => run_pipeline(args, None).map(|_| ()),
        Command::ReplayDlq(ReplayArgs {
            run: mut args,
            max_attempts,
        }) => {
            args.group_id = format!("{}-replay", args.group_id);
            args.input_topic = args.dlq_topic.clone();
            let totals = run_pipeline(args, Some(max_attempts))?;
            let mut summary = format!(
                "replayed {}: enriched {}, dead-lettered again {}",
                totals.consumed, totals.enriched, totals.dead_lettered
            );
            if totals.at_max_attempts > 0 {
                summary.push_str(&format!(
                    "; left {} dead letters at --max-attempts {max_attempts}",
                    totals.at_max_attempts
                ));
            }
            if totals.cut > 0 {
                summary.push_str(&format!(
                    "; left {} dead letters that hold only the first bytes of their input",
                    totals.cut
                ));
            }
            if totals.skipped > 0 {
                summary.push_str(&format!(
                    "; skipped {} dead letters the host did not write",
                    totals.skipped
                ));
            }
            println!("{summary}");
            Ok(())
        }
        Command::EnrichFile(args) => run_enrich_file(args),
        Command::Lag(args) => weblog_common::lag::run_lag_command(&args),
    }
}

/// Runs the pipeline. With `replay`, the max attempts of a dead letter,
/// it runs over the dead-letter topic.
fn run_pipeline(args: RunArgs, replay: Option<u32>) -> anyhow::Result<RunTotals> {
    #[cfg(feature = "native-plugin")]
    if args.native_plugin {
        weblog_host::native::enable(&args.plugin.settings())?;
    }
    let config = PipelineConfig {
        transactional_id: args.transactional_id()?,
        instance_id: args.instance_id()?,
        component_cache: args.component_cache(),
        admin_addr: args.admin.validated_addr()?,
        limits: args.plugin.limits()?,
        kafka: args.kafka,
        input_topic: args.input_topic,
        output_topic: args.output_topic,
        dlq_topic: args.dlq_topic,
        group_id: args.group_id,
        plugin_config: args.plugin.settings(),
        plugin_path: args.plugin.plugin,
        batch_size: args.batch_size,
        batch_linger: Duration::from_millis(args.batch_linger_ms),
        max_in_flight_batches: args.max_in_flight_batches,
        retry: RetrySettings {
            max_retries: args.max_retries,
            backoff: Backoff::default(),
        },
        replay: replay.is_some(),
        max_attempts: replay.unwrap_or(u32::MAX),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    runtime.block_on(async {
        let shutdown = weblog_common::listen_for_shutdown()?;
        pipeline::run(config, shutdown).await
    })
}

fn run_enrich_file(args: EnrichFileArgs) -> anyhow::Result<()> {
    let engine = sandbox::create_engine()?;
    let limits = args.plugin.limits()?;
    let mut plugin = Plugin::load(&engine, &args.plugin.plugin, args.plugin.settings(), limits)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = enrich_file::enrich_file(&mut plugin, &args.input, args.batch_size, &mut out);
    match result {
        Ok(summary) => {
            eprintln!("{}", summary.report());
            Ok(())
        }
        // A reader such as `head` that closes the pipe early is not an error.
        Err(error) if is_broken_pipe(&error) => Ok(()),
        Err(error) => Err(error),
    }
    .and_then(|()| {
        out.flush()
            .or_else(|error| match error.kind() {
                std::io::ErrorKind::BrokenPipe => Ok(()),
                _ => Err(error),
            })
            .context("failed to write enrich-file output")
    })
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The settings of one `--plugin-config` flag or of the variable.
#[derive(Clone, Debug)]
struct PluginSettings(Vec<(String, String)>);

/// Parses one `--plugin-config` value: `key=value`, or several separated
/// by commas.
fn parse_plugin_settings(text: &str) -> anyhow::Result<PluginSettings> {
    weblog_common::key_value::parse_list(text)
        .map(PluginSettings)
        .map_err(|reason| anyhow::anyhow!("invalid plugin setting {text:?}: {reason}"))
}

impl PluginArgs {
    /// Returns the settings of every `--plugin-config` in order.
    fn settings(&self) -> Vec<(String, String)> {
        let lists = self.plugin_config.iter();
        lists.flat_map(|list| list.0.iter().cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_component_cache_wins_over_a_directory() {
        let cli = Cli::try_parse_from([
            "weblog-host",
            "run",
            "--plugin",
            "plugin.wasm",
            "--component-cache",
            "/tmp/components",
            "--no-component-cache",
        ])
        .expect("flags are valid");
        let Command::Run(args) = cli.command else {
            panic!("not the run command");
        };
        assert_eq!(args.component_cache(), None);
    }

    #[test]
    fn plugin_config_keeps_commas_in_values() {
        let cli = Cli::try_parse_from([
            "weblog-host",
            "run",
            "--plugin",
            "plugin.wasm",
            "--plugin-config",
            "service.route./api=api,route.keep=a,b",
            "--plugin-config",
            "mode=json",
        ])
        .expect("flags are valid");
        let Command::Run(args) = cli.command else {
            panic!("not the run command");
        };
        let expected = [
            ("service.route./api", "api"),
            ("route.keep", "a,b"),
            ("mode", "json"),
        ]
        .map(|(key, value)| (key.to_string(), value.to_string()));
        assert_eq!(args.plugin.settings(), expected);
    }

    #[test]
    fn plugin_config_without_key_names_value() {
        let error = Cli::try_parse_from([
            "weblog-host",
            "run",
            "--plugin",
            "plugin.wasm",
            "--plugin-config",
            "a,b=1",
        ])
        .err()
        .expect("a part without '=' first is invalid");
        let message = error.to_string();
        assert!(
            message.contains("invalid plugin setting \"a,b=1\"") && message.contains("no '='"),
            "{message}"
        );
    }
}
