//! Command-line flags of the shipper and the settings validated from them.
//! The rest of the crate uses only [`Config`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rdkafka::ClientConfig;
use weblog_common::usage::usage_error;
use weblog_common::{AdminArgs, KafkaArgs, LogArgs};

use crate::oversize::OversizePolicy;
use crate::progress_bar::ProgressArgs;

/// Topic that receives the lines when `--topic` is not given. The host
/// consumes this topic by default.
pub(crate) const DEFAULT_TOPIC: &str = "web-logs-raw";

/// Topic that receives dead letters when `--dlq-topic` is not given, the
/// same default as the host's.
pub(crate) const DEFAULT_DLQ_TOPIC: &str = "web-logs-dlq";

/// Time between two checkpoint writes while offsets move. After a crash,
/// the lines acknowledged within this time are sent again; each write costs
/// two fsyncs.
pub(crate) const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 200;

/// Time between two looks at a followed file that has no new data. It is
/// the longest a new line waits before it is read.
pub(crate) const DEFAULT_POLL_INTERVAL_MS: u64 = 250;

/// Bytes of a too-large line kept in its dead letter or truncated record:
/// enough to recognize the line, far below Kafka's default max message size
/// of about 1 MB.
pub(crate) const DEFAULT_OVERSIZE_KEEP_BYTES: usize = 16 * 1024;

/// librdkafka's default `message.max.bytes` (librdkafka 2.12
/// CONFIGURATION.md), which applies unless `--kafka-option` sets it.
const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Max time to wait for the broker to describe the topic at start. A
/// reachable local broker replies within milliseconds, so 10 s only runs out
/// when the broker is down or the address is wrong.
pub(crate) const DEFAULT_METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Produces each line of a web-server access log to a Kafka topic, one
/// record per line. Without --follow it exits once Kafka has acknowledged
/// every line; with --follow it runs until SIGINT or SIGTERM.
#[derive(Parser, Debug)]
#[command(name = "weblog-shipper", version)]
pub(crate) struct Cli {
    /// Access log to ship. Lines end at '\n', and each record contains the
    /// line's bytes without that '\n'.
    #[arg(long, env = "WEBLOG_SHIPPER_FILE", value_name = "PATH")]
    pub(crate) file: PathBuf,

    /// Kafka topic that receives one record per line. It must exist.
    #[arg(long, env = "WEBLOG_RAW_TOPIC", default_value = DEFAULT_TOPIC)]
    pub(crate) topic: String,

    /// Keep reading the file as it grows, like `tail -F`: through rotation
    /// by rename and by copy-truncate, and while the file is briefly
    /// missing. A last line without '\n' waits for its '\n'. Runs until
    /// SIGINT or SIGTERM, then exits 0 once every line read is acknowledged.
    /// Needs --checkpoint.
    // A follower without a checkpoint would send the whole file again on
    // each restart. None is placed next to the log by default, because log
    // directories are often not writable by the shipper, and rotation
    // globs such as `access.log*` would rotate the checkpoint too.
    #[arg(long, env = "WEBLOG_SHIPPER_FOLLOW", requires = "checkpoint")]
    pub(crate) follow: bool,

    /// File that records, per log file, the byte offset up to which Kafka
    /// acknowledged every line. A run resumes there, so a restart sends
    /// only the lines in doubt again. Written atomically; give each log file
    /// its own. Without it, a run reads the file from its start.
    #[arg(long, env = "WEBLOG_SHIPPER_CHECKPOINT", value_name = "PATH")]
    pub(crate) checkpoint: Option<PathBuf>,

    /// Treat the file as complete: also send a last line without '\n' and
    /// move the checkpoint past it. Without it, a run with --checkpoint
    /// leaves such a line for the next run, because the writer may still be
    /// writing it. Use it once a log file is no longer written to.
    #[arg(
        long = "final",
        env = "WEBLOG_SHIPPER_FINAL",
        requires = "checkpoint",
        conflicts_with = "follow"
    )]
    pub(crate) final_run: bool,

    /// Milliseconds between two checkpoint writes while lines are
    /// acknowledged.
    #[arg(
        long,
        env = "WEBLOG_SHIPPER_CHECKPOINT_INTERVAL_MS",
        value_name = "MS",
        default_value_t = DEFAULT_CHECKPOINT_INTERVAL_MS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub(crate) checkpoint_interval_ms: u64,

    /// Milliseconds between two looks at a followed file that has no new
    /// data.
    #[arg(
        long,
        env = "WEBLOG_SHIPPER_POLL_INTERVAL_MS",
        value_name = "MS",
        default_value_t = DEFAULT_POLL_INTERVAL_MS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub(crate) poll_interval_ms: u64,

    /// Policy for a line that is too large for Kafka (librdkafka's
    /// message.max.bytes or the topic's max.message.bytes): send a dead
    /// letter to --dlq-topic, or the line truncated to --topic.
    #[arg(
        long,
        env = "WEBLOG_SHIPPER_OVERSIZE",
        value_enum,
        default_value_t = OversizePolicy::DeadLetter
    )]
    pub(crate) oversize: OversizePolicy,

    /// Bytes of a too-large line kept in its dead letter or truncated
    /// record, below message.max.bytes. Default: 16384, or half of
    /// message.max.bytes when that is smaller.
    #[arg(
        long,
        env = "WEBLOG_SHIPPER_OVERSIZE_KEEP_BYTES",
        value_name = "BYTES",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub(crate) oversize_keep_bytes: Option<u64>,

    /// Dead-letter topic for lines too large for Kafka, with
    /// --oversize dead-letter. It must exist.
    #[arg(long, env = "WEBLOG_DLQ_TOPIC", default_value = DEFAULT_DLQ_TOPIC)]
    pub(crate) dlq_topic: String,

    #[command(flatten)]
    pub(crate) progress: ProgressArgs,

    #[command(flatten)]
    pub(crate) kafka: KafkaArgs,

    #[command(flatten)]
    pub(crate) admin: AdminArgs,

    #[command(flatten)]
    pub(crate) log: LogArgs,
}

/// Validated settings of one shipper run.
#[derive(Debug)]
pub(crate) struct Config {
    /// Access log to read.
    pub(crate) file: PathBuf,
    /// Topic that receives the lines.
    pub(crate) topic: String,
    /// Whether to follow the file after its end.
    pub(crate) follow: bool,
    /// Checkpoint file, if any.
    pub(crate) checkpoint: Option<PathBuf>,
    /// Whether a one-shot run with a checkpoint sends a last line without
    /// `\n` too.
    pub(crate) final_run: bool,
    /// Time between two checkpoint writes.
    pub(crate) checkpoint_interval: Duration,
    /// Time between two looks at a followed file without new data.
    pub(crate) poll_interval: Duration,
    /// Replacement of a line that is too large.
    pub(crate) oversize: OversizePolicy,
    /// Bytes of a too-large line kept in its replacement.
    pub(crate) oversize_keep_bytes: usize,
    /// Topic of dead letters.
    pub(crate) dlq_topic: String,
    /// Bytes of a line kept when reading: librdkafka rejects any longer
    /// record, so the rest is skipped instead of buffered.
    pub(crate) max_line_bytes: usize,
    /// Broker list, repeated in errors so the operator sees where we looked.
    pub(crate) bootstrap_servers: String,
    /// librdkafka settings of the producer.
    pub(crate) producer: ClientConfig,
    /// Max time to wait for topic metadata at start.
    pub(crate) metadata_timeout: Duration,
    /// Display of progress on stderr.
    pub(crate) progress: ProgressArgs,
    /// Loopback address of the admin endpoint, or `None` for none.
    pub(crate) admin_addr: Option<std::net::SocketAddr>,
}

impl TryFrom<Cli> for Config {
    type Error = anyhow::Error;

    fn try_from(cli: Cli) -> anyhow::Result<Self> {
        let mut producer = cli.kafka.producer_config()?;
        // The topic check at start requests metadata for the topic by name.
        // By default a producer's metadata request lets the broker create a
        // missing topic, which would hide a typo in --topic behind a new,
        // empty topic. An explicit --kafka-option still wins.
        if producer.get("allow.auto.create.topics").is_none() {
            producer.set("allow.auto.create.topics", "false");
        }
        let max_line_bytes = match producer.get("message.max.bytes") {
            Some(value) => value.parse().with_context(|| {
                format!("invalid --kafka-option message.max.bytes={value}: expected bytes")
            })?,
            None => LIBRDKAFKA_MESSAGE_MAX_BYTES,
        };
        let oversize_keep_bytes = match cli.oversize_keep_bytes {
            Some(bytes) => usize::try_from(bytes)
                .context("invalid --oversize-keep-bytes: too large for this platform")?,
            None => DEFAULT_OVERSIZE_KEEP_BYTES.min(max_line_bytes / 2),
        };
        if oversize_keep_bytes >= max_line_bytes {
            return Err(usage_error(format!(
                "invalid --oversize-keep-bytes {oversize_keep_bytes}: it must be below \
                 message.max.bytes ({max_line_bytes}), or the replacement of a long line is \
                 too large as well"
            )));
        }
        Ok(Self {
            file: cli.file,
            topic: cli.topic,
            follow: cli.follow,
            checkpoint: cli.checkpoint,
            final_run: cli.final_run,
            checkpoint_interval: Duration::from_millis(cli.checkpoint_interval_ms),
            poll_interval: Duration::from_millis(cli.poll_interval_ms),
            oversize: cli.oversize,
            oversize_keep_bytes,
            dlq_topic: cli.dlq_topic,
            max_line_bytes,
            bootstrap_servers: cli.kafka.bootstrap_servers,
            producer,
            metadata_timeout: DEFAULT_METADATA_TIMEOUT,
            progress: cli.progress,
            admin_addr: cli.admin.validated_addr()?,
        })
    }
}

impl Config {
    /// Returns whether a one-shot read leaves a last line without `\n` in
    /// the file for the next run: only a run that resumes from a checkpoint
    /// can send it later, and only one without --final. A run without a
    /// checkpoint reads the whole file each time, so it sends that line.
    pub(crate) fn leave_partial_line(&self) -> bool {
        self.checkpoint.is_some() && !self.final_run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("weblog-shipper").chain(args.iter().copied()))
    }

    #[test]
    fn file_is_required() {
        let error = parse(&[]).expect_err("--file is missing");
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn topic_defaults_to_raw_topic() {
        let cli = parse(&["--file", "access.log"]).expect("flags are valid");
        let config = Config::try_from(cli).expect("defaults are valid");
        assert_eq!(config.topic, DEFAULT_TOPIC);
        assert_eq!(config.file, PathBuf::from("access.log"));
    }

    #[test]
    fn one_shot_defaults() {
        let cli = parse(&["--file", "access.log"]).expect("flags are valid");
        let config = Config::try_from(cli).expect("defaults are valid");
        assert!(!config.follow);
        assert_eq!(config.checkpoint, None);
        assert_eq!(config.checkpoint_interval, Duration::from_millis(200));
        assert_eq!(config.poll_interval, Duration::from_millis(250));
        assert_eq!(config.oversize, OversizePolicy::DeadLetter);
        assert_eq!(config.oversize_keep_bytes, 16 * 1024);
        assert_eq!(config.dlq_topic, DEFAULT_DLQ_TOPIC);
        assert_eq!(config.max_line_bytes, 1_000_000);
    }

    #[test]
    fn follow_requires_checkpoint() {
        let error = parse(&["--file", "a.log", "--follow"]).expect_err("no --checkpoint");
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert!(error.to_string().contains("--checkpoint"), "{error}");
    }

    #[test]
    fn follow_with_checkpoint_is_valid() {
        let args = ["--file", "a.log", "--follow", "--checkpoint", "a.ckpt"];
        let cli = parse(&args).expect("flags are valid");
        let config = Config::try_from(cli).expect("valid");
        assert!(config.follow);
        assert_eq!(config.checkpoint, Some(PathBuf::from("a.ckpt")));
    }

    #[test]
    fn oversize_flags_are_parsed() {
        let args = [
            "--file",
            "a.log",
            "--oversize",
            "truncate",
            "--oversize-keep-bytes",
            "100",
        ];
        let config = Config::try_from(parse(&args).expect("flags are valid")).expect("valid");
        assert_eq!(config.oversize, OversizePolicy::Truncate);
        assert_eq!(config.oversize_keep_bytes, 100);
    }

    #[test]
    fn max_line_follows_message_max_bytes() {
        let args = [
            "--file",
            "a.log",
            "--kafka-option",
            "message.max.bytes=5000",
        ];
        let config = Config::try_from(parse(&args).expect("flags are valid")).expect("valid");
        assert_eq!(config.max_line_bytes, 5000);
    }

    #[test]
    fn keep_bytes_must_fit_message() {
        let args = [
            "--file",
            "a.log",
            "--kafka-option",
            "message.max.bytes=1000",
            "--oversize-keep-bytes",
            "1000",
        ];
        let error = Config::try_from(parse(&args).expect("flags are valid"))
            .expect_err("keep bytes too large");
        assert!(
            error.to_string().contains("--oversize-keep-bytes 1000"),
            "{error}"
        );
    }

    #[test]
    fn checkpoint_leaves_partial_line() {
        let without = Config::try_from(parse(&["--file", "a.log"]).expect("flags are valid"));
        assert!(!without.expect("valid").leave_partial_line());
        let args = ["--file", "a.log", "--checkpoint", "a.ckpt"];
        let with = Config::try_from(parse(&args).expect("flags are valid")).expect("valid");
        assert!(with.leave_partial_line());
        let args = ["--file", "a.log", "--checkpoint", "a.ckpt", "--final"];
        let last = Config::try_from(parse(&args).expect("flags are valid")).expect("valid");
        assert!(!last.leave_partial_line());
    }

    #[test]
    fn final_needs_checkpoint_and_no_follow() {
        let error = parse(&["--file", "a.log", "--final"]).expect_err("no --checkpoint");
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        let args = [
            "--file",
            "a.log",
            "--checkpoint",
            "c",
            "--follow",
            "--final",
        ];
        let error = parse(&args).expect_err("--final with --follow");
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn keep_bytes_error_names_max() {
        let args = ["--file", "a.log", "--oversize-keep-bytes", "2000000"];
        let error = Config::try_from(parse(&args).expect("flags are valid"))
            .expect_err("above the default message.max.bytes");
        let message = error.to_string();
        assert!(
            message.contains("--oversize-keep-bytes 2000000"),
            "{message}"
        );
        assert!(message.contains("message.max.bytes (1000000)"), "{message}");
    }

    #[test]
    fn zero_interval_is_rejected() {
        let args = ["--file", "a.log", "--checkpoint-interval-ms", "0"];
        let error = parse(&args).expect_err("0 ms");
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn producer_never_creates_topics() {
        let cli = parse(&["--file", "access.log"]).expect("flags are valid");
        let config = Config::try_from(cli).expect("defaults are valid");
        assert_eq!(
            config.producer.get("allow.auto.create.topics"),
            Some("false")
        );
        assert_eq!(config.producer.get("acks"), Some("all"));
    }

    #[test]
    fn explicit_auto_create_option_wins() {
        let args = [
            "--file",
            "a.log",
            "--kafka-option",
            "allow.auto.create.topics=true",
        ];
        let cli = parse(&args).expect("flags are valid");
        let config = Config::try_from(cli).expect("option is allowed");
        assert_eq!(
            config.producer.get("allow.auto.create.topics"),
            Some("true")
        );
    }
}
