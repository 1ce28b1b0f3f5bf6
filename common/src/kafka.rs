//! Kafka client settings from flags and environment variables.
//!
//! Every binary takes `--bootstrap-servers` and any number of raw
//! librdkafka settings through `--kafka-option key=value`. The settings that
//! carry our delivery guarantees are set here and cannot be overridden by a
//! raw option: trying to is an error that names the option.
//!
//! Secrets such as `sasl.password` can come from `--kafka-option-file`
//! instead of the command line, and their values never appear in errors,
//! `Debug` output or help text (see [`secrets`]).

mod scope;
mod secrets;

use std::fmt;
use std::path::PathBuf;

use crate::usage::usage_error;
use clap::Args;
use rdkafka::ClientConfig;

use scope::ClientKind;
pub use secrets::{is_sensitive_key, shown_value, REDACTED};

/// Broker list used when neither the flag nor its variable is set: the local
/// single-node broker that `make broker-up` starts.
pub const DEFAULT_BOOTSTRAP_SERVERS: &str = "127.0.0.1:9092";

/// librdkafka statistics interval when `--stats-interval-ms` is not given,
/// in milliseconds. The broker metrics, the readiness check and the lag
/// gauges refresh this often; a report costs the client a JSON document of a
/// few KiB per broker and partition.
pub const DEFAULT_STATS_INTERVAL_MS: u64 = 5000;

/// Max of `--stats-interval-ms`: librdkafka's max `statistics.interval.ms`
/// (one day, librdkafka 2.12.1 CONFIGURATION.md).
pub const MAX_STATS_INTERVAL_MS: u64 = 86_400_000;

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
    "isolation.level",
];

/// Returns what to do instead of setting the reserved librdkafka `key`.
fn reserved_key_fix(key: &str) -> &'static str {
    match key {
        "bootstrap.servers" | "metadata.broker.list" => "use --bootstrap-servers instead",
        "acks" | "request.required.acks" => {
            "producers always use acks=all, which the delivery guarantee needs; \
             remove the option"
        }
        "enable.idempotence" => {
            "producers are always idempotent, so that retries write no duplicates; \
             remove the option"
        }
        "enable.auto.commit" | "enable.auto.offset.store" => {
            "consumers commit offsets only after the records are handled; remove the option"
        }
        "group.id" => "use --group-id of weblog-host or weblog-sink instead",
        "isolation.level" => {
            "consumers read only committed transactions, so that the outputs of an \
             aborted --exactly-once batch are never written; remove the option"
        }
        _ => "remove the option",
    }
}

/// Kafka flags shared by every binary.
#[derive(Args, Clone)]
pub struct KafkaArgs {
    /// Comma-separated list of Kafka brokers (host:port) to bootstrap from.
    #[arg(long, env = "WEBLOG_BOOTSTRAP_SERVERS", default_value = DEFAULT_BOOTSTRAP_SERVERS)]
    pub bootstrap_servers: String,

    /// Raw librdkafka setting as key=value, for example
    /// security.protocol=SASL_SSL. Repeat the flag or separate settings
    /// with commas; a comma followed by text without '=' stays in the
    /// value, as in debug=msg,broker. Settings that the
    /// delivery guarantees depend on (acks, idempotence, auto commit) are
    /// rejected. A setting that librdkafka reads only in consumers, such as
    /// group.instance.id, goes only to consumers, and one read only in
    /// producers only to producers. Put secrets in --kafka-option-file
    /// instead.
    // The variable's value stays out of --help, because it may hold a
    // password.
    #[arg(
        long = "kafka-option",
        env = "WEBLOG_KAFKA_OPTIONS",
        hide_env_values = true,
        value_name = "KEY=VALUE",
        value_parser = secrets::KeyValueParser
    )]
    kafka_option_lists: Vec<secrets::OptionList>,

    /// File of raw librdkafka settings, one KEY=VALUE per line; blank lines
    /// and lines starting with '#' are ignored. Meant for secrets such as
    /// sasl.password or ssl.key.password, which then stay out of the process
    /// list and the environment. A key set both here and by --kafka-option
    /// is an error.
    #[arg(long, env = "WEBLOG_KAFKA_OPTION_FILE", value_name = "PATH")]
    pub kafka_option_file: Option<PathBuf>,

    /// Interval of librdkafka's statistics in milliseconds, from 1 to
    /// 86400000 (one day). The Kafka metrics, the broker readiness check and
    /// the lag gauges refresh this often.
    // librdkafka parses the value as a 32-bit int, so an unchecked larger
    // value would wrap to another interval.
    #[arg(
        long,
        env = "WEBLOG_STATS_INTERVAL_MS",
        value_name = "MS",
        default_value_t = DEFAULT_STATS_INTERVAL_MS,
        value_parser = clap::value_parser!(u64).range(1..=MAX_STATS_INTERVAL_MS)
    )]
    pub stats_interval_ms: u64,
}

impl KafkaArgs {
    /// Builds the base client config: brokers plus the raw options.
    pub fn client_config(&self) -> anyhow::Result<ClientConfig> {
        self.client_config_for(None)
    }

    /// Builds the base client config of a client of `kind`: brokers plus
    /// the raw options that apply to it, or all of them for `None`.
    fn client_config_for(&self, kind: Option<ClientKind>) -> anyhow::Result<ClientConfig> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("statistics.interval.ms", self.stats_interval_ms.to_string());
        for (key, value) in &self.raw_options()? {
            let shown = shown_value(key, value);
            if RESERVED_KEYS.contains(&key.as_str()) {
                let fix = reserved_key_fix(key);
                return Err(usage_error(format!(
                    "invalid --kafka-option {key}={shown}: weblog sets {key} itself; {fix}"
                )));
            }
            if key == "statistics.interval.ms" {
                return Err(usage_error(format!(
                    "invalid --kafka-option {key}={shown}: weblog sets {key} itself; \
                     use --stats-interval-ms instead"
                )));
            }
            if let Some(kind) = kind.filter(|kind| !scope::applies_to(key, *kind)) {
                tracing::debug!(key = %key, ?kind, "kafka option does not apply to this client");
                continue;
            }
            config.set(key, value);
        }
        secrets::check_settings(&config)?;
        Ok(config)
    }

    /// Returns the settings of every `--kafka-option` in order.
    pub fn kafka_options(&self) -> Vec<(String, String)> {
        self.kafka_option_lists
            .iter()
            .flat_map(|list| list.0.iter().cloned())
            .collect()
    }

    /// Returns the raw settings of `--kafka-option` followed by those of
    /// `--kafka-option-file`. Fails when the file cannot be read or sets a
    /// key that a flag sets too.
    pub fn raw_options(&self) -> anyhow::Result<Vec<(String, String)>> {
        let flag_options = self.kafka_options();
        let mut options = flag_options.clone();
        let Some(path) = &self.kafka_option_file else {
            return Ok(options);
        };
        for (key, value) in secrets::read_option_file(path)? {
            if flag_options.iter().any(|(flag_key, _)| *flag_key == key) {
                return Err(usage_error(format!(
                    "invalid kafka option {key}: it is set both by --kafka-option and in \
                     --kafka-option-file {path:?}; keep one"
                )));
            }
            options.push((key, value));
        }
        Ok(options)
    }

    /// Returns the interval of librdkafka's statistics.
    pub fn stats_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.stats_interval_ms)
    }

    /// Builds the config of a producer that waits for every in-sync replica
    /// and never writes a record twice on retry.
    pub fn producer_config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = self.client_config_for(Some(ClientKind::Producer))?;
        config.set("acks", "all").set("enable.idempotence", "true");
        // Batches fill for up to 5 ms, so a burst of small log lines goes out
        // in few requests. A --kafka-option of either key or its alias wins.
        let tuning = [
            (["linger.ms", "queue.buffering.max.ms"], "5"),
            (["compression.type", "compression.codec"], "lz4"),
        ];
        for (keys, value) in tuning {
            if keys.iter().all(|key| config.get(key).is_none()) {
                config.set(keys[0], value);
            }
        }
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
            .raw_options()?
            .into_iter()
            .find(|(key, _)| key == "transactional.id")
        {
            return Err(usage_error(format!(
                "invalid --kafka-option {key}={value}: weblog sets {key} itself; \
                 use --transactional-id instead"
            )));
        }
        let mut config = self.producer_config()?;
        config.set("transactional.id", transactional_id);
        Ok(config)
    }

    /// Builds the config of a consumer in `group_id` that never commits or
    /// stores an offset on its own: the caller commits after durable writes.
    pub fn consumer_config(&self, group_id: &str) -> anyhow::Result<ClientConfig> {
        let mut config = self.client_config_for(Some(ClientKind::Consumer))?;
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed");
        Ok(config)
    }
}

/// Shows the flags with secret values replaced by [`REDACTED`].
impl fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options: Vec<String> = self
            .kafka_options()
            .iter()
            .map(|(key, value)| format!("{key}={}", shown_value(key, value)))
            .collect();
        f.debug_struct("KafkaArgs")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("kafka_options", &options)
            .field("kafka_option_file", &self.kafka_option_file)
            .finish_non_exhaustive()
    }
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
    fn reserved_option_error_names_fix() {
        let cases = [
            ("acks=1", "acks=all"),
            ("request.required.acks=0", "acks=all"),
            ("enable.idempotence=false", "idempotent"),
            ("enable.auto.commit=true", "commit offsets only after"),
            ("group.id=g", "--group-id"),
            ("metadata.broker.list=b:9092", "--bootstrap-servers"),
            (
                "isolation.level=read_uncommitted",
                "only committed transactions",
            ),
        ];
        for (option, fix) in cases {
            let cli = parse(&["--kafka-option", option]).expect("flags are valid");
            let error = cli.kafka.client_config().expect_err("option is reserved");
            let message = error.to_string();
            assert!(message.contains(fix), "{option}: {message}");
            assert!(!message.contains("dedicated flag"), "{option}: {message}");
        }
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
    fn option_file_adds_settings() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("client.properties");
        std::fs::write(
            &path,
            "# SCRAM\nsasl.username=weblog\nsasl.password=hunter2\n",
        )
        .expect("write option file");
        let file = path.to_str().expect("UTF-8 path");
        let args = ["--kafka-option", "client.id=c", "--kafka-option-file", file];
        let cli = parse(&args).expect("flags are valid");
        let config = cli.kafka.client_config().expect("options are valid");
        assert_eq!(config.get("client.id"), Some("c"));
        assert_eq!(config.get("sasl.username"), Some("weblog"));
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
    }

    #[test]
    fn key_in_file_and_flag_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("client.properties");
        std::fs::write(&path, "sasl.password=hunter2\n").expect("write option file");
        let file = path.to_str().expect("UTF-8 path");
        let args = [
            "--kafka-option",
            "sasl.password=other",
            "--kafka-option-file",
            file,
        ];
        let cli = parse(&args).expect("flags are valid");
        let error = cli.kafka.client_config().expect_err("set twice");
        let message = format!("{error:#}");
        assert!(message.contains("sasl.password"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(!message.contains("other"), "{message}");
    }

    #[test]
    fn missing_option_file_is_named() {
        let args = ["--kafka-option-file", "/nonexistent/client.properties"];
        let cli = parse(&args).expect("flags are valid");
        let error = cli.kafka.client_config().expect_err("no such file");
        let message = format!("{error:#}");
        assert!(
            message.contains("/nonexistent/client.properties"),
            "{message}"
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let args = [
            "--kafka-option",
            "sasl.password=hunter2",
            "--kafka-option",
            "sasl.username=weblog",
        ];
        let cli = parse(&args).expect("flags are valid");
        let shown = format!("{:?}", cli.kafka);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sasl.password=[redacted]"), "{shown}");
        assert!(shown.contains("sasl.username=weblog"), "{shown}");
    }

    #[test]
    fn misspelt_secret_is_not_echoed() {
        let cli = parse(&["--kafka-option", "sasl.pasword=hunter2"]).expect("flags are valid");
        let error = cli.kafka.producer_config().expect_err("unknown key");
        let message = format!("{error:#}");
        assert!(message.contains("sasl.pasword"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn option_without_equals_is_not_echoed() {
        let error = parse(&["--kafka-option", "hunter2"]).err().expect("no '='");
        let message = error.to_string();
        assert!(message.contains("--kafka-option"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn stats_interval_over_max_names_value() {
        for value in ["99999999999", "4294968296", "86400001"] {
            let error = parse(&["--stats-interval-ms", value])
                .err()
                .expect("above one day");
            let message = error.to_string();
            assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
            assert!(message.contains(value), "{message}");
            assert!(message.contains("86400000"), "{message}");
        }
    }

    #[test]
    fn stats_interval_max_is_accepted() {
        let cli = parse(&["--stats-interval-ms", "86400000"]).expect("one day is valid");
        let config = cli.kafka.client_config().expect("valid");
        assert_eq!(config.get("statistics.interval.ms"), Some("86400000"));
    }

    #[test]
    fn consumer_option_skips_producer() {
        let args = [
            "--kafka-option",
            "group.instance.id=sink-1",
            "--kafka-option",
            "linger.ms=50",
            "--kafka-option",
            "client.id=c",
        ];
        let cli = parse(&args).expect("flags are valid");
        let producer = cli.kafka.producer_config().expect("valid");
        assert_eq!(producer.get("group.instance.id"), None);
        assert_eq!(producer.get("linger.ms"), Some("50"));
        assert_eq!(producer.get("client.id"), Some("c"));
        let consumer = cli.kafka.consumer_config("g").expect("valid");
        assert_eq!(consumer.get("group.instance.id"), Some("sink-1"));
        assert_eq!(consumer.get("linger.ms"), None);
        assert_eq!(consumer.get("client.id"), Some("c"));
    }

    #[test]
    fn producer_tuning_option_wins() {
        let cli = parse(&[]).expect("no flags is valid");
        let config = cli.kafka.producer_config().expect("defaults are valid");
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(config.get("compression.type"), Some("lz4"));

        let args = [
            "--kafka-option",
            "queue.buffering.max.ms=20",
            "--kafka-option",
            "compression.type=gzip",
        ];
        let cli = parse(&args).expect("flags are valid");
        let config = cli.kafka.producer_config().expect("options are valid");
        assert_eq!(config.get("linger.ms"), None);
        assert_eq!(config.get("queue.buffering.max.ms"), Some("20"));
        assert_eq!(config.get("compression.type"), Some("gzip"));
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
