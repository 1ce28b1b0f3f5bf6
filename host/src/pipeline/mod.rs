//! `weblog-host run`: the Kafka pipeline around a plugin.
//!
//! One task consumes the raw topic in batches, calls the plugin, and hands
//! every output record and dead letter to the producer. A second task (see
//! [`commit`]) waits for each batch's delivery reports in order and only
//! then commits the batch's offsets. This gives at-least-once delivery: a
//! record's offset is committed only after everything it produced is
//! acknowledged by all in-sync replicas, so a crash replays the records
//! whose outputs may be incomplete, and can write some of them twice.
//!
//! With `--exactly-once` the commit task stays idle: [`transaction`] puts
//! each batch's outputs and offsets in one Kafka transaction instead, and
//! batches run one at a time.
//!
//! A third task (see [`crate::swap`]) prepares replacement plugins; the
//! loop swaps one in between two batches, so every batch is enriched by
//! one plugin and its outputs name that plugin.

mod batch_size;
mod commit;
mod consume;
mod dead_letter;
mod deliver;
mod produce;
mod replay;
mod transaction;

pub use deliver::RetrySettings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::ClientConfig;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weblog_common::admin::health;
use weblog_common::topic::check_topic_exists;
use weblog_common::{KafkaArgs, LoggingContext};

use crate::cache::ComponentCache;
use crate::canary::{RecentRecords, CANARY_SAMPLE_SIZE};
use crate::outcome::EnrichOutcome;
use crate::plugin::{Plugin, PluginIdentity};
use crate::sandbox::{self, SandboxLimits};
use crate::swap::{self, Replacement, SwapCounts, SwapSettings};
use commit::{PendingBatch, PipelineCounts};
use transaction::Transactions;

/// Everything `run` needs, validated.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Kafka connection settings.
    pub kafka: KafkaArgs,
    /// Topic of raw log lines.
    pub input_topic: String,
    /// Topic for enriched JSON records.
    pub output_topic: String,
    /// Topic for records that could not be enriched.
    pub dlq_topic: String,
    /// Consumer group of the host instances.
    pub group_id: String,
    /// Path of the plugin component.
    pub plugin_path: PathBuf,
    /// Key/value pairs passed to the plugin's `init`.
    pub plugin_config: Vec<(String, String)>,
    /// Limits of every plugin instance.
    pub limits: SandboxLimits,
    /// Max records per plugin call.
    pub batch_size: usize,
    /// How long a batch waits for more records after its first one.
    pub batch_linger: Duration,
    /// Max batches whose outputs are in flight before consumption pauses.
    pub max_in_flight_batches: usize,
    /// Directory of compiled components, or `None` to compile every time.
    pub component_cache: Option<PathBuf>,
    /// Loopback address of the admin endpoint, or `None` for none.
    pub admin_addr: Option<SocketAddr>,
    /// Transactional id of the exactly-once mode, or `None` for
    /// at-least-once. Two live instances must not share one: the newer
    /// fences the older, which then stops.
    pub transactional_id: Option<String>,
    /// How failed deliveries are retried.
    pub retry: RetrySettings,
    /// Name of this instance, written to dead letters.
    pub instance_id: String,
    /// Whether `input_topic` is a dead-letter topic to replay: origins come
    /// from the dead letters' headers, those the host did not write are
    /// skipped, and the run stops at the end offsets found at start.
    pub replay: bool,
    /// With `replay`, dead letters that already went through a plugin this
    /// many times are left in the topic.
    pub max_attempts: u32,
}

/// Totals of a run, logged when it stops.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunTotals {
    /// Records that went through the plugin.
    pub consumed: u64,
    /// Records produced to the enriched topic.
    pub enriched: u64,
    /// Records produced to the dead-letter topic.
    pub dead_lettered: u64,
    /// Consumed dead letters that the host did not write, left alone by a
    /// replay.
    pub skipped: u64,
    /// Consumed dead letters at `max_attempts`, left alone by a replay.
    pub at_max_attempts: u64,
    /// Consumed dead letters that hold only the first bytes of their
    /// input, left alone by a replay.
    pub cut: u64,
}

/// Runs the pipeline until `shutdown` is cancelled, or with `replay` until
/// the end offsets found at start, then finishes in-flight batches,
/// commits and returns the totals.
pub async fn run(config: PipelineConfig, shutdown: CancellationToken) -> anyhow::Result<RunTotals> {
    crate::metrics::install()?;
    let plugin_check = health().register("plugin", "plugin not loaded yet");
    let engine = sandbox::create_engine_compiling_on_one_thread()?;
    let cache = config.component_cache.clone().map(ComponentCache::new);
    // Taken before the file is read, so that a file replaced while the
    // host starts is still seen as a change by the swap task.
    let loaded_file = swap::FileSignature::read(&config.plugin_path).ok();
    let mut plugin = Plugin::load_cached(
        &engine,
        &config.plugin_path,
        config.plugin_config.clone(),
        config.limits,
        cache.as_ref(),
    )?;
    plugin_check.pass();
    crate::metrics::set_plugin_info(plugin.identity(), 1.0);

    let mut producer_config = match &config.transactional_id {
        Some(id) => config.kafka.transactional_producer_config(id)?,
        None => config.kafka.producer_config()?,
    };
    // NOTE: with --exactly-once batches keep librdkafka's size. Batches of
    // one record each, on a topic that rejects most records, made every
    // rejection abort a transaction of a few records and stalled the
    // producer for a minute on a sequence error, so an oversized record
    // still takes the records batched with it to the dead-letter topic.
    if config.transactional_id.is_none() {
        batch_size::cap_batch_size(
            &config.kafka,
            &mut producer_config,
            &[&config.output_topic, &config.dlq_topic],
        )
        .await?;
    }
    let message_max_bytes = message_max_bytes(&producer_config)?;
    let producer: FutureProducer<LoggingContext> = producer_config
        .create_with_context(LoggingContext::with_stats("producer"))
        .with_context(|| {
            format!(
                "failed to create producer for {}",
                config.kafka.bootstrap_servers
            )
        })?;
    let bootstrap = &config.kafka.bootstrap_servers;
    for (topic, flag) in [
        (&config.output_topic, "--output-topic"),
        (&config.dlq_topic, "--dlq-topic"),
    ] {
        check_topic_exists(producer.client(), topic, flag, bootstrap)?;
    }
    let consumer = Arc::new(consume::HostContext::create_consumer(&config)?);
    check_topic_exists(
        producer.client(),
        &config.input_topic,
        "--input-topic",
        bootstrap,
    )?;
    let mut transactions = match &config.transactional_id {
        Some(id) => Some(Transactions::init(
            producer.clone(),
            consumer.clone(),
            id,
            config.retry,
        )?),
        None => None,
    };
    let mut replay_end = match config.replay {
        true => Some(replay::ReplayEnd::capture(&consumer, &config.input_topic)?),
        false => None,
    };
    // Cancelled at shutdown, or once a replay reached its end.
    let stop = shutdown.child_token();
    if replay_end.as_ref().is_some_and(replay::ReplayEnd::is_done) {
        stop.cancel();
    }
    consumer
        .subscribe(&[&config.input_topic])
        .with_context(|| format!("failed to subscribe to topic {:?}", config.input_topic))?;
    tracing::info!(
        topic = %config.input_topic,
        group = %config.group_id,
        plugin = %plugin.identity().name,
        exactly_once = transactions.is_some(),
        "consuming"
    );

    let counts = Arc::new(PipelineCounts::default());
    let (pending, pending_rx) = mpsc::channel::<PendingBatch>(config.max_in_flight_batches);
    let output = produce::Output::new(producer.clone(), &config, message_max_bytes);
    // A committer that fails stops the pipeline at once. Without this the
    // loop would notice only when it hands over its next batch, and on an
    // idle topic it would go on passing health checks while nothing is
    // committed any more.
    let committer = {
        let commit = commit::commit_in_order(
            consumer.clone(),
            output.clone(),
            config.retry,
            commit::CONFIRM_AFTER_IDLE,
            pending_rx,
        );
        let stop = stop.clone();
        tokio::spawn(async move {
            let result = commit.await;
            if let Err(error) = &result {
                tracing::error!(error = %format!("{error:#}"), "committing stopped, stopping the pipeline");
                stop.cancel();
            }
            result
        })
    };
    let recent = RecentRecords::new(CANARY_SAMPLE_SIZE);
    let swap_counts = Arc::new(SwapCounts::default());
    let swap_settings = SwapSettings {
        engine: engine.clone(),
        path: config.plugin_path.clone(),
        plugin_config: config.plugin_config.clone(),
        limits: config.limits,
        cache,
    };
    let (reload_sender, reload_requests) = mpsc::channel(4);
    if let Some(addr) = config.admin_addr {
        crate::admin::serve(addr, reload_sender, shutdown.child_token()).await?;
    }
    let pending_swap = swap::spawn_swap_task(
        swap_settings,
        loaded_file,
        plugin.fork()?,
        recent.clone(),
        swap_counts.clone(),
        reload_requests,
        shutdown.child_token(),
    )?;
    weblog_common::lag::spawn_lag_gauge(
        consumer.clone(),
        crate::metrics::CONSUMER_LAG,
        config.kafka.stats_interval(),
        shutdown.child_token(),
    );
    let started = Instant::now();
    health().set_running(true);

    let mut skipped = 0;
    let mut at_max_attempts = 0;
    let mut cut = 0;
    let loop_result = async {
        loop {
            let Some(mut batch) = consume::next_batch(&consumer, &config, &stop).await? else {
                break;
            };
            skipped += batch.skipped as u64;
            at_max_attempts += batch.at_max_attempts as u64;
            cut += batch.cut as u64;
            if let Some(end) = &mut replay_end {
                end.trim(&mut batch);
                if end.is_done() {
                    stop.cancel();
                }
                if batch.records.is_empty() && batch.next_offsets.is_empty() {
                    continue;
                }
            }
            if let Some(replacement) = pending_swap.take() {
                plugin = swap_in(plugin, replacement, &swap_counts);
            }
            if transactions.is_some() && skip_revoked(&mut batch, &consumer) {
                continue;
            }
            recent.push_batch(&batch.records);
            let enrich_started = Instant::now();
            let outcomes = match batch.records.is_empty() {
                true => Vec::new(),
                false => tokio::task::block_in_place(|| plugin.enrich(&batch.records)),
            };
            log_batch(&batch.records, &outcomes, plugin.identity(), enrich_started);
            if let Some(transactions) = &mut transactions {
                transactions
                    .commit_batch(&output, batch, outcomes, plugin.identity(), &counts)
                    .await?;
                continue;
            }
            let batch = output
                .send(batch, outcomes, plugin.identity(), &counts)
                .await?;
            if pending.send(batch).await.is_err() {
                // The committer stopped, so its error is what gets reported.
                break;
            }
        }
        anyhow::Ok(())
    }
    .await;
    health().set_running(false);

    drop(pending);
    let commit_result = committer.await.context("failed to join the commit task")?;
    loop_result?;
    commit_result?;
    producer
        .flush(Duration::from_secs(30))
        .context("failed to flush the producer on shutdown")?;
    tracing::info!(
        consumed = counts.consumed(),
        enriched = counts.enriched(),
        dead_lettered = counts.dead_lettered(),
        plugin_swaps = swap_counts.swapped(),
        plugin_swaps_refused = swap_counts.refused(),
        seconds = started.elapsed().as_secs_f64(),
        "stopped"
    );
    Ok(RunTotals {
        consumed: counts.consumed(),
        enriched: counts.enriched(),
        dead_lettered: counts.dead_lettered(),
        skipped,
        at_max_attempts,
        cut,
    })
}

/// Logs a batch at debug and each of its records at trace.
fn log_batch(
    records: &[crate::InputRecord],
    outcomes: &[EnrichOutcome],
    plugin: &PluginIdentity,
    started: Instant,
) {
    let failed = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, EnrichOutcome::Failed(_)))
        .count();
    tracing::debug!(
        plugin = %plugin.name,
        version = %plugin.version,
        records = records.len(),
        failed,
        micros = started.elapsed().as_micros() as u64,
        "batch enriched"
    );
    if !tracing::enabled!(tracing::Level::TRACE) {
        return;
    }
    for (record, outcome) in records.iter().zip(outcomes) {
        match outcome {
            EnrichOutcome::Enriched(outputs) => tracing::trace!(
                topic = %record.topic,
                partition = record.partition,
                offset = record.offset,
                plugin = %plugin.name,
                outputs = outputs.len(),
                "record enriched"
            ),
            EnrichOutcome::Failed(failure) => tracing::trace!(
                topic = %record.topic,
                partition = record.partition,
                offset = record.offset,
                plugin = %plugin.name,
                kind = failure.kind.as_str(),
                reason = %failure.reason,
                "record failed"
            ),
        }
    }
}

/// Drops the records of partitions revoked while the batch filled, so that
/// a transaction never commits offsets of a partition whose new owner may
/// already consume it. Returns true when nothing is left.
fn skip_revoked(batch: &mut consume::ConsumedBatch, consumer: &consume::HostConsumer) -> bool {
    let dropped = batch.retain_owned(consumer.context());
    if dropped > 0 {
        tracing::info!(records = dropped, "dropped records of revoked partitions");
    }
    batch.records.is_empty()
}

/// Replaces `running` with the checked candidate and logs both.
fn swap_in(running: Plugin, replacement: Replacement, counts: &SwapCounts) -> Plugin {
    let old = running.identity();
    let new = replacement.plugin.identity();
    counts.add_swapped();
    crate::metrics::set_plugin_info(old, 0.0);
    crate::metrics::set_plugin_info(new, 1.0);
    weblog_common::metrics::counter!(crate::metrics::PLUGIN_SWAPS, "result" => "done").increment(1);
    tracing::info!(
        trigger = replacement.trigger,
        old_plugin = %old.name,
        old_version = %old.version,
        old_digest = %old.digest,
        plugin = %new.name,
        version = %new.version,
        digest = %new.digest,
        prepared_ms = replacement.prepared_in.as_millis() as u64,
        swaps = counts.swapped(),
        "plugin swapped"
    );
    replacement.plugin
}

/// Returns the producer's `message.max.bytes`: the value set with
/// `--kafka-option`, or librdkafka's default.
fn message_max_bytes(producer_config: &ClientConfig) -> anyhow::Result<usize> {
    let Some(value) = producer_config.get("message.max.bytes") else {
        return Ok(produce::DEFAULT_MESSAGE_MAX_BYTES);
    };
    value.parse().map_err(|error| {
        weblog_common::usage::usage_error(format!(
            "invalid --kafka-option message.max.bytes={value}: {error}"
        ))
    })
}
