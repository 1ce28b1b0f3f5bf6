//! The send loop: lines from the reader go to the producer with a bounded
//! number of records in flight, acknowledgements advance the checkpoint,
//! and records rejected as too large are replaced.
//!
//! The loop waits on four things at once: the shutdown signal, the
//! checkpoint timer, the next acknowledgement and the next line. Lines are
//! read only while the in-flight caps allow, so a slow broker slows the
//! reader instead of filling memory.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::mpsc;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use weblog_common::LoggingContext;

use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::follow::SourceEvent;
use crate::oversize::{is_too_large, Attempt, LineInfo, Outgoing};
use crate::progress::Progress;
use crate::progress_bar;
use crate::source::Line;

/// Max lines sent that the checkpoint cannot pass yet: in flight, or
/// acknowledged behind a line that is. It bounds the lines sent again after
/// a crash. Enough to keep several produce requests in flight, and far below
/// librdkafka's own queue limit of 100,000 messages, so the queue does not
/// fill in normal operation.
pub(crate) const MAX_UNACKNOWLEDGED_LINES: usize = 10_000;

/// Max bytes of record values sent but not yet acknowledged. librdkafka
/// keeps a copy of each until it is acknowledged, so this bounds memory when
/// lines are long.
pub(crate) const MAX_IN_FLIGHT_BYTES: usize = 64 << 20;

/// Pause before sending a record again after librdkafka reported its local
/// queue full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(10);

/// Reason the read loop stopped.
pub(crate) enum Stop {
    /// The one-shot read reached the end of the file, leaving
    /// `unterminated_bytes` of a last line without `\n` unread.
    EndOfFile {
        unterminated_bytes: u64,
    },
    ReadFailed(anyhow::Error),
    SendFailed,
    Interrupted,
}

/// A record handed to the producer, without its value.
struct Sent {
    line: Arc<LineInfo>,
    attempt: Attempt,
    reason: Arc<str>,
    size: usize,
}

/// Outcome of one delivery; a failure returns the record's value.
type Acknowledgement = (Sent, Result<(), (KafkaError, Vec<u8>)>);

/// The first line whose delivery failed.
pub(crate) struct Failure {
    pub(crate) line: Arc<LineInfo>,
    pub(crate) topic: String,
    pub(crate) error: KafkaError,
}

/// Counts of what Kafka acknowledged.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Lines in the raw topic, whole or truncated.
    pub(crate) lines: u64,
    /// Bytes of those records' values.
    pub(crate) bytes: u64,
    /// Lines sent truncated, with `--oversize truncate`.
    pub(crate) truncated: u64,
    /// Lines dead-lettered for their size.
    pub(crate) dead_lettered: u64,
}

/// Records in flight, progress towards the checkpoint and counts.
pub(crate) struct Shipment<'a> {
    producer: FutureProducer<LoggingContext>,
    config: &'a Config,
    progress: Progress,
    ticker: Interval,
    in_flight: FuturesUnordered<BoxFuture<'static, Acknowledgement>>,
    in_flight_bytes: usize,
    /// Records to send one at a time, each once nothing else is in flight,
    /// so that the broker judges each alone.
    alone: VecDeque<Outgoing>,
    /// Generation and path of the file whose lines arrive now.
    current: Option<(u64, Arc<Path>)>,
    lines_read: u64,
    /// Bytes of the lines read, with their `\n`, over all files.
    bytes_read: u64,
    pub(crate) counts: Counts,
    /// Lowest failed line and its error.
    pub(crate) first_failure: Option<Failure>,
    batch_rejection_logged: bool,
    checkpoint_failure_logged: bool,
}

impl<'a> Shipment<'a> {
    pub(crate) fn new(
        producer: FutureProducer<LoggingContext>,
        config: &'a Config,
        progress: Progress,
    ) -> Self {
        let mut ticker = tokio::time::interval(config.checkpoint_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            producer,
            config,
            progress,
            ticker,
            in_flight: FuturesUnordered::new(),
            in_flight_bytes: 0,
            alone: VecDeque::new(),
            current: None,
            lines_read: 0,
            bytes_read: 0,
            counts: Counts::default(),
            first_failure: None,
            batch_rejection_logged: false,
            checkpoint_failure_logged: false,
        }
    }

    /// Sends the reader's lines until its end, a read or send failure, or
    /// `shutdown`.
    pub(crate) async fn send_lines(
        &mut self,
        events: &mut mpsc::Receiver<SourceEvent>,
        shutdown: &CancellationToken,
    ) -> Stop {
        loop {
            if self.first_failure.is_some() {
                return Stop::SendFailed;
            }
            if self.in_flight.is_empty() {
                if let Some(record) = self.alone.pop_front() {
                    if let Err(stop) = self.send(record, shutdown).await {
                        return stop;
                    }
                    continue;
                }
            }
            let can_read = self.alone.is_empty()
                && self.progress.unacknowledged_lines() < MAX_UNACKNOWLEDGED_LINES
                && self.in_flight_bytes < MAX_IN_FLIGHT_BYTES;
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Stop::Interrupted,
                _ = self.ticker.tick() => self.write_checkpoint_if_changed().await,
                Some(acknowledgement) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.settle(acknowledgement);
                }
                event = events.recv(), if can_read => {
                    let Some(event) = event else {
                        let error = anyhow::anyhow!("the log reader thread ended without a reason");
                        return Stop::ReadFailed(error);
                    };
                    if let Err(stop) = self.handle_event(event, shutdown).await {
                        return stop;
                    }
                }
            }
        }
    }

    /// Waits for every record in flight, sending the records that must go
    /// alone unless a delivery failed.
    pub(crate) async fn settle_all(&mut self) {
        // Records wait for no signal here: they are few and nothing else
        // is in flight, so the producer queue cannot be full.
        let never = CancellationToken::new();
        loop {
            if self.in_flight.is_empty() {
                if self.first_failure.is_some() {
                    return;
                }
                let Some(record) = self.alone.pop_front() else {
                    return;
                };
                if self.send(record, &never).await.is_err() {
                    return;
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = self.ticker.tick() => self.write_checkpoint_if_changed().await,
                Some(acknowledgement) = self.in_flight.next() => self.settle(acknowledgement),
            }
        }
    }

    /// Writes the checkpoint, if one is configured, whether or not it
    /// changed.
    pub(crate) async fn write_checkpoint(&mut self) -> anyhow::Result<()> {
        let Some(path) = &self.config.checkpoint else {
            return Ok(());
        };
        store_checkpoint(path.clone(), self.progress.checkpoint()).await
    }

    async fn write_checkpoint_if_changed(&mut self) {
        let Some(path) = &self.config.checkpoint else {
            return;
        };
        let Some(checkpoint) = self.progress.take_changed() else {
            return;
        };
        match store_checkpoint(path.clone(), checkpoint).await {
            Ok(()) => self.checkpoint_failure_logged = false,
            Err(error) => {
                self.progress.mark_changed();
                if !self.checkpoint_failure_logged {
                    self.checkpoint_failure_logged = true;
                    tracing::warn!(
                        ?path,
                        error = %format!("{error:#}"),
                        "failed to write checkpoint; retrying every interval, and a restart \
                         sends again the lines acknowledged since the last write"
                    );
                }
            }
        }
    }

    async fn handle_event(
        &mut self,
        event: SourceEvent,
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        match event {
            SourceEvent::Opened {
                generation,
                path,
                identity,
                offset,
            } => {
                self.progress.open(generation, identity, offset);
                self.current = Some((generation, path));
                Ok(())
            }
            SourceEvent::Identified {
                generation,
                identity,
            } => {
                self.progress.identify(generation, identity);
                Ok(())
            }
            SourceEvent::Line { generation, line } => {
                self.send_line(generation, line, shutdown).await
            }
            SourceEvent::End { unterminated_bytes } => Err(Stop::EndOfFile { unterminated_bytes }),
            SourceEvent::Failed(error) => Err(Stop::ReadFailed(error)),
        }
    }

    async fn send_line(
        &mut self,
        generation: u64,
        line: Line,
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        self.lines_read += 1;
        self.bytes_read += line.end - line.start;
        let path = match &self.current {
            Some((current, path)) if *current == generation => Arc::clone(path),
            _ => Arc::from(self.config.file.as_path()),
        };
        let sequence = self.progress.send(generation, line.end);
        crate::metrics::record_line_read(&path, line.end - line.start, line.end);
        progress_bar::COUNTERS.set_read(self.lines_read, self.bytes_read, line.end);
        let info = Arc::new(LineInfo {
            sequence,
            number: self.lines_read,
            path,
            offset: line.start,
            length: line.length,
        });
        if line.is_cut() {
            let reason = format!(
                "line of {} bytes is longer than message.max.bytes ({} bytes)",
                line.length, self.config.max_line_bytes
            );
            let replacement = Outgoing::replacement(
                self.config.oversize,
                self.config.oversize_keep_bytes,
                info,
                &line.bytes,
                reason,
            );
            self.alone.push_back(replacement);
            return Ok(());
        }
        self.send(Outgoing::line(info, line.bytes), shutdown).await
    }

    /// Hands one record to the producer, retrying while its queue is full.
    async fn send(&mut self, record: Outgoing, shutdown: &CancellationToken) -> Result<(), Stop> {
        let topic = record.topic(&self.config.topic, &self.config.dlq_topic);
        loop {
            let mut future_record = FutureRecord::<(), [u8]>::to(topic).payload(&record.payload);
            if let Some(headers) = record.headers() {
                future_record = future_record.headers(headers);
            }
            let error = match self.producer.send_result(future_record) {
                Ok(delivery) => {
                    self.track(record, delivery);
                    return Ok(());
                }
                Err((error, _record)) => error,
            };
            match error {
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                    if shutdown.is_cancelled() {
                        return Err(Stop::Interrupted);
                    }
                    tracing::debug!(line = record.line.number, "producer queue full, retrying");
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                error if is_too_large(&error) => {
                    self.replace_too_large(record, false, error);
                    return Ok(());
                }
                error => {
                    self.record_failure(record.line, topic, error);
                    return Err(Stop::SendFailed);
                }
            }
        }
    }

    fn track(&mut self, record: Outgoing, delivery: rdkafka::producer::DeliveryFuture) {
        let size = record.payload.len();
        let sent = Sent {
            line: record.line,
            attempt: record.attempt,
            reason: record.reason,
            size,
        };
        let acknowledgement = delivery.map(move |outcome| {
            let result = match outcome {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((error, message))) => {
                    let value = message.payload().map(<[u8]>::to_vec).unwrap_or_default();
                    Err((error, value))
                }
                // The producer dropped the report, which only happens when
                // it is torn down.
                Err(_canceled) => Err((KafkaError::Canceled, Vec::new())),
            };
            (sent, result)
        });
        self.in_flight.push(acknowledgement.boxed());
        self.in_flight_bytes += size;
    }

    fn settle(&mut self, (sent, result): Acknowledgement) {
        self.in_flight_bytes -= sent.size;
        match result {
            Ok(()) => self.acknowledge(&sent),
            Err((error, payload)) if is_too_large(&error) => {
                let record = Outgoing {
                    line: sent.line,
                    attempt: sent.attempt,
                    payload,
                    reason: sent.reason,
                };
                self.replace_too_large(record, true, error);
            }
            Err((error, _)) => {
                let topic = if sent.attempt.is_dead_letter() {
                    &self.config.dlq_topic
                } else {
                    &self.config.topic
                };
                self.record_failure(sent.line, topic, error);
            }
        }
    }

    fn acknowledge(&mut self, sent: &Sent) {
        let line = &sent.line;
        match sent.attempt {
            Attempt::Line | Attempt::LineAlone => {
                crate::metrics::record_line_acked();
                self.counts.lines += 1;
                self.counts.bytes += sent.size as u64;
            }
            Attempt::Truncated | Attempt::MarkerOnly => {
                crate::metrics::record_line_acked();
                self.counts.lines += 1;
                self.counts.bytes += sent.size as u64;
                self.counts.truncated += 1;
                log_replaced(sent, &self.config.topic, "sent truncated");
            }
            Attempt::DeadLetter | Attempt::EmptyDeadLetter => {
                crate::metrics::record_line_dead_lettered();
                self.counts.dead_lettered += 1;
                log_replaced(sent, &self.config.dlq_topic, "dead-lettered");
            }
        }
        self.progress.acknowledge(line.sequence);
        let counts = &self.counts;
        progress_bar::COUNTERS.set_acknowledged(counts.lines, counts.bytes, counts.dead_lettered);
    }

    /// Queues the next, smaller record for a line whose record was rejected
    /// as too large, or fails the run when none is left.
    fn replace_too_large(&mut self, record: Outgoing, by_broker: bool, error: KafkaError) {
        let topic = record.topic(&self.config.topic, &self.config.dlq_topic);
        if by_broker && record.attempt == Attempt::Line && !self.batch_rejection_logged {
            self.batch_rejection_logged = true;
            tracing::warn!(
                topic,
                error = %error,
                "the broker rejected a batch as too large; sending its lines one at a time \
                 to find those that do not fit. If this repeats, set --kafka-option \
                 batch.size below the topic's max.message.bytes"
            );
        }
        let checked_by = if by_broker {
            format!("the broker for topic {topic}")
        } else {
            format!(
                "librdkafka (message.max.bytes {})",
                self.config.max_line_bytes
            )
        };
        let reason = format!(
            "line of {} bytes was rejected as too large by {checked_by}: {error}",
            record.line.length
        );
        let line = Arc::clone(&record.line);
        let next = record.after_too_large(
            by_broker,
            self.config.oversize,
            self.config.oversize_keep_bytes,
            reason,
        );
        match next {
            Some(next) => self.alone.push_back(next),
            None => self.record_failure(line, topic, error),
        }
    }

    fn record_failure(&mut self, line: Arc<LineInfo>, topic: &str, error: KafkaError) {
        tracing::debug!(line = line.number, topic, error = %error, "delivery failed");
        let is_first = match &self.first_failure {
            Some(first) => line.number < first.line.number,
            None => true,
        };
        if is_first {
            self.first_failure = Some(Failure {
                line,
                topic: topic.to_string(),
                error,
            });
        }
    }
}

/// Logs that the line of `sent` was replaced for its size, `outcome`
/// saying how, with the topic that received the replacement.
fn log_replaced(sent: &Sent, topic: &str, outcome: &str) {
    let line = &sent.line;
    tracing::warn!(
        path = ?line.path,
        offset = line.offset,
        length = line.length,
        topic,
        reason = %sent.reason,
        "line too large for Kafka was {outcome}"
    );
}

/// Stores `checkpoint` at `path` on the blocking thread pool, since the
/// fsyncs block.
pub(crate) async fn store_checkpoint(path: PathBuf, checkpoint: Checkpoint) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || checkpoint.store(&path))
        .await
        .map_err(|error| anyhow::anyhow!("failed to join the checkpoint writer task: {error}"))?
}
