//! Command-line flags of the sink and the settings validated from them.
//! The rest of the crate uses only [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rdkafka::ClientConfig;
use weblog_common::{AdminArgs, KafkaArgs, LogArgs};

use crate::write::Rotation;

/// Topic read when `--topic` is not given: the one the host writes.
pub(crate) const DEFAULT_TOPIC: &str = "web-logs-enriched";

/// Dead-letter topic when `--dlq-topic` is not given: the one the host
/// writes its failures to, so one topic contains every record the pipeline
/// could not deliver.
pub(crate) const DEFAULT_DLQ_TOPIC: &str = "web-logs-dlq";

/// Consumer group when `--group-id` is not given.
pub(crate) const DEFAULT_GROUP_ID: &str = "weblog-sink";

/// Max records per batch when `--batch-size` is not given. Each batch costs
/// one fsync and one commit, so larger batches raise throughput. With 1000,
/// a batch of typical access-log records (under 1 KiB each) stays under
/// 1 MiB.
pub(crate) const DEFAULT_BATCH_SIZE: u64 = 1000;

/// Wait for more records after the first of a batch when
/// `--batch-linger-ms` is not given, in milliseconds. It bounds the delay
/// of a record when traffic is light.
pub(crate) const DEFAULT_BATCH_LINGER_MS: u64 = 100;

/// Max `--batch-size`. A batch is held in memory until it is written, so
/// this bounds memory to about 1 GiB with records of 1 KiB.
pub(crate) const MAX_BATCH_SIZE: u64 = 1_000_000;

/// Max `--batch-linger-ms`: one minute. A longer wait only delays records.
pub(crate) const MAX_BATCH_LINGER_MS: u64 = 60_000;

/// Min `--rotate-bytes`: 4 KiB. Smaller files would rotate after nearly
/// every batch, and each rotation costs two renames and four fsyncs.
pub(crate) const MIN_ROTATE_BYTES: u64 = 4096;

/// Max `--rotate-interval-secs`: 10 years of 365.25 days. Larger values
/// mean no rotation, which leaving the flag out already sets.
pub(crate) const MAX_ROTATE_INTERVAL_SECS: u64 = 315_576_000;

/// Appends the enriched records from Kafka to a JSON Lines file, one record
/// per line, and commits their offsets only after the file is fsynced.
#[derive(Parser, Debug)]
#[command(name = "weblog-sink", version)]
pub(crate) struct Cli {
    /// JSON Lines file that receives the records. Its checkpoint is kept
    /// at PATH.checkpoint and rotated files at PATH.000001 and up. A run
    /// resumes at the checkpoint; without one, PATH must be missing or
    /// empty.
    #[arg(long, env = "WEBLOG_SINK_OUTPUT", value_name = "PATH")]
    pub(crate) output: PathBuf,

    /// Rotate the output file once it has at least this many bytes, at
    /// least 4096. The check runs after each batch, so a file can exceed
    /// it by one batch. Off when not given.
    #[arg(
        long,
        env = "WEBLOG_SINK_ROTATE_BYTES",
        value_name = "BYTES",
        value_parser = clap::value_parser!(u64).range(MIN_ROTATE_BYTES..)
    )]
    pub(crate) rotate_bytes: Option<u64>,

    /// Rotate the output file once this many seconds have passed since its
    /// first record was written in this run, from 1 to 315576000 (10
    /// years). Off when not given.
    #[arg(
        long,
        env = "WEBLOG_SINK_ROTATE_INTERVAL_SECS",
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=MAX_ROTATE_INTERVAL_SECS)
    )]
    pub(crate) rotate_interval_secs: Option<u64>,

    /// Kafka topic to read the enriched records from.
    #[arg(long, env = "WEBLOG_ENRICHED_TOPIC", default_value = DEFAULT_TOPIC)]
    pub(crate) topic: String,

    /// Kafka topic that receives each record whose value is not one line of
    /// valid JSON, with the reason in its headers.
    #[arg(long, env = "WEBLOG_DLQ_TOPIC", default_value = DEFAULT_DLQ_TOPIC)]
    pub(crate) dlq_topic: String,

    /// Kafka consumer group. Its committed offsets follow the checkpoint,
    /// for lag monitoring, and are where a partition without a checkpoint
    /// entry starts.
    #[arg(long, env = "WEBLOG_SINK_GROUP_ID", default_value = DEFAULT_GROUP_ID)]
    pub(crate) group_id: String,

    /// Max records written, fsynced and committed together, from 1 to
    /// 1000000.
    #[arg(
        long,
        env = "WEBLOG_SINK_BATCH_SIZE",
        default_value_t = DEFAULT_BATCH_SIZE,
        value_parser = clap::value_parser!(u64).range(1..=MAX_BATCH_SIZE)
    )]
    pub(crate) batch_size: u64,

    /// Time to wait for more records after the first record of a batch, in
    /// milliseconds, from 0 to 60000.
    #[arg(
        long,
        env = "WEBLOG_SINK_BATCH_LINGER_MS",
        default_value_t = DEFAULT_BATCH_LINGER_MS,
        value_parser = clap::value_parser!(u64).range(..=MAX_BATCH_LINGER_MS)
    )]
    pub(crate) batch_linger_ms: u64,

    #[command(flatten)]
    pub(crate) kafka: KafkaArgs,

    #[command(flatten)]
    pub(crate) log: LogArgs,

    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// Validated settings of one sink run.
#[derive(Debug)]
pub(crate) struct Config {
    /// JSON Lines file to append to.
    pub(crate) output: PathBuf,
    /// When to rotate the output file.
    pub(crate) rotation: Rotation,
    /// Topic to consume.
    pub(crate) topic: String,
    /// Topic for records that are not one line of JSON.
    pub(crate) dlq_topic: String,
    /// Consumer group, repeated in logs.
    pub(crate) group_id: String,
    /// Max records per batch, at least 1.
    pub(crate) batch_size: usize,
    /// Wait for more records after the first of a batch.
    pub(crate) batch_linger: Duration,
    /// librdkafka settings of the consumer.
    pub(crate) consumer: ClientConfig,
    /// librdkafka settings of the dead-letter producer.
    pub(crate) producer: ClientConfig,
    /// Loopback address of the admin endpoint, or `None` for none.
    pub(crate) admin_addr: Option<SocketAddr>,
    /// Interval of librdkafka's statistics and of the lag gauges.
    pub(crate) stats_interval: Duration,
}

impl TryFrom<Cli> for Config {
    type Error = anyhow::Error;

    fn try_from(cli: Cli) -> anyhow::Result<Self> {
        let batch_size = usize::try_from(cli.batch_size).unwrap_or(usize::MAX);
        Ok(Self {
            consumer: cli.kafka.consumer_config(&cli.group_id)?,
            producer: cli.kafka.producer_config()?,
            stats_interval: cli.kafka.stats_interval(),
            admin_addr: cli.admin.validated_addr()?,
            output: cli.output,
            rotation: Rotation {
                max_bytes: cli.rotate_bytes,
                interval: cli.rotate_interval_secs.map(Duration::from_secs),
            },
            topic: cli.topic,
            dlq_topic: cli.dlq_topic,
            group_id: cli.group_id,
            batch_size,
            batch_linger: Duration::from_millis(cli.batch_linger_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("weblog-sink").chain(args.iter().copied()))
    }

    #[test]
    fn output_is_required() {
        let error = parse(&[]).expect_err("--output is missing");
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn defaults_apply() {
        let cli = parse(&["--output", "out.jsonl"]).expect("flags are valid");
        let config = Config::try_from(cli).expect("defaults are valid");
        assert_eq!(config.topic, DEFAULT_TOPIC);
        assert_eq!(config.dlq_topic, DEFAULT_DLQ_TOPIC);
        assert_eq!(config.group_id, DEFAULT_GROUP_ID);
        assert_eq!(config.batch_size, 1000);
        assert_eq!(config.batch_linger, Duration::from_millis(100));
        assert_eq!(config.rotation, Rotation::default());
    }

    #[test]
    fn rotation_flags_apply() {
        let args = [
            "--output",
            "o",
            "--rotate-bytes",
            "1048576",
            "--rotate-interval-secs",
            "3600",
        ];
        let cli = parse(&args).expect("flags are valid");
        let config = Config::try_from(cli).expect("config is valid");
        assert_eq!(config.rotation.max_bytes, Some(1_048_576));
        assert_eq!(config.rotation.interval, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn zero_rotate_bytes_is_rejected() {
        let error = parse(&["--output", "o", "--rotate-bytes", "0"]).expect_err("size 0");
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn out_of_range_numbers_are_rejected() {
        let cases = [
            ("--rotate-bytes", "4095", "4096"),
            (
                "--rotate-interval-secs",
                "18446744073709551615",
                "315576000",
            ),
            ("--batch-size", "1000001", "1000000"),
            ("--batch-linger-ms", "60001", "60000"),
        ];
        for (flag, value, bound) in cases {
            let error = parse(&["--output", "o", flag, value]).expect_err(flag);
            assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
            let message = error.to_string();
            assert!(message.contains(flag), "{message}");
            assert!(message.contains(value), "{message}");
            assert!(message.contains(bound), "{message}");
        }
    }

    #[test]
    fn range_bounds_are_accepted() {
        let args = [
            "--output",
            "o",
            "--rotate-bytes",
            "4096",
            "--rotate-interval-secs",
            "315576000",
            "--batch-size",
            "1000000",
            "--batch-linger-ms",
            "60000",
        ];
        let cli = parse(&args).expect("bounds are valid");
        let config = Config::try_from(cli).expect("config is valid");
        assert_eq!(config.rotation.max_bytes, Some(4096));
        assert_eq!(
            config.rotation.interval,
            Some(Duration::from_secs(315_576_000))
        );
        assert_eq!(config.batch_size, 1_000_000);
        assert_eq!(config.batch_linger, Duration::from_millis(60_000));
    }

    #[test]
    fn help_lists_only_sink_routes() {
        let help = Cli::command().render_long_help().to_string();

        assert!(help.contains("/metrics, /healthz and /readyz"), "{help}");
        assert!(!help.contains("/reload"), "{help}");
        assert!(!help.contains("the host"), "{help}");
    }

    #[test]
    fn consumer_uses_group_and_manual_commits() {
        let cli = parse(&["--output", "o", "--group-id", "g1"]).expect("flags are valid");
        let config = Config::try_from(cli).expect("config is valid");
        assert_eq!(config.consumer.get("group.id"), Some("g1"));
        assert_eq!(config.consumer.get("enable.auto.commit"), Some("false"));
        assert_eq!(
            config.consumer.get("enable.auto.offset.store"),
            Some("false")
        );
    }

    #[test]
    fn zero_batch_size_is_rejected() {
        let error = parse(&["--output", "o", "--batch-size", "0"]).expect_err("size 0");
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
    }
}
