//! Kafka client settings from flags and environment variables.
//!
//! Every binary takes `--bootstrap-servers` and any number of raw
//! librdkafka settings through `--kafka-option key=value`. The settings that
//! carry our delivery guarantees are set here and cannot be overridden by a
//! raw option: trying to is an error that names the option.

use anyhow::{bail, Context};
use clap::Args;
use rdkafka::ClientConfig;

/// Broker list used when neither the flag nor its variable is set: the local
/// single-node broker that `make broker-up` starts.
pub const DEFAULT_BOOTSTRAP_SERVERS: &str = "127.0.0.1:9092";

/// librdkafka statistics interval when `--stats-interval-ms` is not given,
/// in milliseconds. The broker metrics, the readiness check and the lag
/// gauges refresh this often; a report costs the client a JSON document of a
/// few KiB per broker and partition.
pub const DEFAULT_STATS_INTERVAL_MS: u64 = 5000;

/// librdkafka settings that the binaries fix themselves, because the
/// delivery guarantees depend on them.
const RESERVED_KEYS: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "group.id",
];

/// Kafka flags shared by every binary.
#[derive(Args, Clone, Debug)]
pub struct KafkaArgs {
    /// Comma-separated list of Kafka brokers (host:port) to bootstrap from.
    #[arg(long, env = "WEBLOG_BOOTSTRAP_SERVERS", default_value = DEFAULT_BOOTSTRAP_SERVERS)]
    pub bootstrap_servers: String,

    /// Raw librdkafka setting as key=value, for example
    /// security.protocol=SASL_SSL. Repeat the flag for several settings;
    /// in the variable, separate them with commas. Settings that the
    /// delivery guarantees depend on (acks, idempotence, auto commit) are
    /// rejected.
    #[arg(
        long = "kafka-option",
        env = "WEBLOG_KAFKA_OPTIONS",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = parse_key_value
    )]
    pub kafka_options: Vec<(String, String)>,

    /// Interval of librdkafka's statistics in milliseconds. The Kafka
    /// metrics, the broker readiness check and the lag gauges refresh this
    /// often.
    #[arg(
        long,
        env = "WEBLOG_STATS_INTERVAL_MS",
        default_value_t = DEFAULT_STATS_INTERVAL_MS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub stats_interval_ms: u64,
}

impl KafkaArgs {
    /// Builds the base client config: brokers plus the raw options.
    pub fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("statistics.interval.ms", self.stats_interval_ms.to_string());
        for (key, value) in &self.kafka_options {
            if RESERVED_KEYS.contains(&key.as_str()) {
                bail!(
                    "invalid --kafka-option {key}={value}: weblog sets {key} itself; \
                     use the dedicated flag or remove the option"
                );
            }
            if key == "statistics.interval.ms" {
                bail!(
                    "invalid --kafka-option {key}={value}: weblog sets {key} itself; \
                     use --stats-interval-ms instead"
                );
            }
            config.set(key, value);
        }
        Ok(config)
    }

    /// Returns the interval of librdkafka's statistics.
    pub fn stats_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.stats_interval_ms)
    }

    /// Builds the config of a producer that waits for every in-sync replica
    /// and never writes a record twice on retry.
    pub fn producer_config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = self.client_config()?;
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            // Batches fill for up to 5 ms, so a burst of small log lines
            // goes out in few requests.
            .set("linger.ms", "5")
            .set("compression.type", "lz4");
        Ok(config)
    }

    /// Builds the config of a transactional producer with id
    /// `transactional_id`: [`Self::producer_config`] plus the id, which the
    /// broker uses to fence an older producer of the same id and abort its
    /// open transaction.
    pub fn transactional_producer_config(
        &self,
        transactional_id: &str,
    ) -> anyhow::Result<ClientConfig> {
        if let Some((key, value)) = self
            .kafka_options
            .iter()
            .find(|(key, _)| key == "transactional.id")
        {
            bail!(
                "invalid --kafka-option {key}={value}: weblog sets {key} itself; \
                 use --transactional-id instead"
            );
        }
        let mut config = self.producer_config()?;
        config.set("transactional.id", transactional_id);
        Ok(config)
    }

    /// Builds the config of a consumer in `group_id` that never commits or
    /// stores an offset on its own: the caller commits after durable writes.
    pub fn consumer_config(&self, group_id: &str) -> anyhow::Result<ClientConfig> {
        let mut config = self.client_config()?;
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed");
        Ok(config)
    }
}

/// Parses `key=value` for `--kafka-option`.
fn parse_key_value(text: &str) -> anyhow::Result<(String, String)> {
    let (key, value) = text
        .split_once('=')
        .with_context(|| format!("invalid kafka option {text:?}: expected KEY=VALUE"))?;
    let key = key.trim();
    if key.is_empty() {
        bail!("invalid kafka option {text:?}: the key before '=' is empty");
    }
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
    }

    #[test]
    fn raw_option_reaches_config() {
        let cli = parse(&["--kafka-option", "client.id=abc"]).expect("flags are valid");
        let config = cli.kafka.client_config().expect("option is allowed");
        assert_eq!(config.get("client.id"), Some("abc"));
        assert_eq!(
            config.get("bootstrap.servers"),
            Some(DEFAULT_BOOTSTRAP_SERVERS)
        );
    }

    #[test]
    fn reserved_option_is_rejected() {
        let cli = parse(&["--kafka-option", "acks=1"]).expect("flags are valid");
        let error = cli.kafka.producer_config().expect_err("acks is reserved");
        assert!(error.to_string().contains("acks=1"), "{error}");
    }

    #[test]
    fn option_without_equals_is_rejected() {
        let error = parse(&["--kafka-option", "linger.ms"])
            .err()
            .expect("no '='");
        assert!(error.to_string().contains("KEY=VALUE"), "{error}");
    }

    #[test]
    fn producer_waits_for_all_replicas() {
        let cli = parse(&[]).expect("no flags is valid");
        let config = cli.kafka.producer_config().expect("defaults are valid");
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
    }

    #[test]
    fn transactional_producer_sets_its_id() {
        let cli = parse(&[]).expect("no flags is valid");
        let config = cli
            .kafka
            .transactional_producer_config("host-a")
            .expect("defaults are valid");
        assert_eq!(config.get("transactional.id"), Some("host-a"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
    }

    #[test]
    fn raw_transactional_id_is_rejected() {
        let cli = parse(&["--kafka-option", "transactional.id=x"]).expect("flags are valid");
        let error = cli
            .kafka
            .transactional_producer_config("host-a")
            .expect_err("the id has its own flag");
        assert!(error.to_string().contains("--transactional-id"), "{error}");
    }

    #[test]
    fn consumer_never_commits_on_its_own() {
        let cli = parse(&[]).expect("no flags is valid");
        let config = cli.kafka.consumer_config("g").expect("defaults are valid");
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(config.get("group.id"), Some("g"));
    }
}
