//! Command-line flags of the shipper and the settings validated from them.
//! The rest of the crate uses only [`Config`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rdkafka::ClientConfig;
use weblog_common::{KafkaArgs, LogArgs};

/// Topic that receives the lines when `--topic` is not given. The host
/// consumes this topic by default.
pub(crate) const DEFAULT_TOPIC: &str = "web-logs-raw";

/// Max time to wait for the broker to describe the topic at start. A
/// reachable local broker replies within milliseconds, so 10 s only runs out
/// when the broker is down or the address is wrong.
pub(crate) const DEFAULT_METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Produces each line of a web-server access log to a Kafka topic, one
/// record per line, and exits once Kafka has acknowledged every record.
#[derive(Parser, Debug)]
#[command(name = "weblog-shipper", version)]
pub(crate) struct Cli {
    /// Access log to ship, read once from start to end. Lines end at '\n',
    /// and each record contains the line's bytes without that '\n'.
    #[arg(long, env = "WEBLOG_SHIPPER_FILE", value_name = "PATH")]
    pub(crate) file: PathBuf,

    /// Kafka topic that receives one record per line. It must exist.
    #[arg(long, env = "WEBLOG_RAW_TOPIC", default_value = DEFAULT_TOPIC)]
    pub(crate) topic: String,

    #[command(flatten)]
    pub(crate) kafka: KafkaArgs,

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
    /// Broker list, repeated in errors so the operator sees where we looked.
    pub(crate) bootstrap_servers: String,
    /// librdkafka settings of the producer.
    pub(crate) producer: ClientConfig,
    /// Max time to wait for topic metadata at start.
    pub(crate) metadata_timeout: Duration,
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
        Ok(Self {
            file: cli.file,
            topic: cli.topic,
            bootstrap_servers: cli.kafka.bootstrap_servers,
            producer,
            metadata_timeout: DEFAULT_METADATA_TIMEOUT,
        })
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
