//! A broker killed with SIGKILL in the middle of a run. The test starts a
//! private single-node broker with `scripts/kafka.sh` in a temporary run
//! directory, runs shipper, host and sink against it on the NASA corpus,
//! kills the broker's JVM, checks that the three processes stay alive
//! without spinning while it is down, starts it again on the same data and
//! checks that every line arrives.
//!
//! Each test's broker listens on `WEBLOG_TEST_BROKER_PORT` plus 2 per test
//! (its controller on the next port), or on a free port the test picks.

use std::time::{Duration, Instant};

use crate::crash::{append_in_chunks, Mode, Pipeline, PipelineOptions, Role, Tally, ROLES};
use crate::util::broker::PrivateBroker;
use crate::util::{corpus, sink_output_lines, split_lines, wait_until};

/// How long the broker stays down.
const OUTAGE: Duration = Duration::from_secs(10);

/// Sink lines written before the broker is killed, so that the outage
/// lands mid-run.
const LINES_BEFORE_KILL: usize = 2_000;

/// Lines of the retry test. Its host handles one record at a time, so it
/// falls behind the shipper and has consumed records left to produce when
/// the broker dies.
const RETRY_TEST_LINES: usize = 4_000;

/// With `--exactly-once`, a broker SIGKILL in the middle of a run loses no
/// line and duplicates none: the sink's file equals the input, enriched
/// once. Shipper, host and sink stay alive through the outage, use little
/// CPU while the broker is down, and carry on once it is back.
#[test]
fn pipeline_survives_broker_sigkill() {
    let lines = nasa_lines();
    let (_, tally) = run_through_broker_kill(
        "broker-crash",
        0,
        Mode::ExactlyOnce,
        &[],
        &lines,
        LINES_BEFORE_KILL,
    );
    tally.assert_exactly_once();
    assert_eq!(tally.shipper_duplicates, 0, "lines the shipper sent twice");
    assert_eq!(tally.lines_out + tally.dead_letters, lines.len());
}

/// In the default mode with a `message.timeout.ms` of 3 s, the host's
/// deliveries fail while the broker is down, and the host sends them again
/// with backoff until the broker is back, without stopping or losing a
/// line. The host runs batches of one record, one at a time, so that it
/// still has records to produce when the broker dies.
#[test]
fn host_retries_deliveries_through_broker_sigkill() {
    let mut lines = nasa_lines();
    lines.truncate(RETRY_TEST_LINES);
    let host_args = [
        "--kafka-option",
        "message.timeout.ms=3000",
        "--batch-size",
        "1",
        "--max-in-flight-batches",
        "1",
    ];
    let (pipeline, tally) = run_through_broker_kill(
        "broker-retry",
        1,
        Mode::AtLeastOnce,
        &host_args,
        &lines,
        500,
    );
    let host_log = pipeline.stderr(Role::Host);
    assert!(
        host_log.contains("failed to deliver records, sending them again"),
        "the host never retried a delivery:\n{host_log}"
    );
    tally.assert_at_least_once();
}

fn nasa_lines() -> Vec<Vec<u8>> {
    split_lines(&std::fs::read(corpus("nasa-jul-aug95-random-sample.log")).expect("read corpus"))
}

/// Starts a private broker and the pipeline in `mode`, with `host_args`
/// added to the host, kills the broker once the sink wrote
/// `lines_before_kill` lines, checks that the processes stay alive and
/// idle during [`OUTAGE`], starts the broker again, drains the pipeline and
/// returns it with its counts.
fn run_through_broker_kill(
    label: &str,
    slot: u16,
    mode: Mode,
    host_args: &[&str],
    lines: &[Vec<u8>],
    lines_before_kill: usize,
) -> (Pipeline, Tally) {
    let broker = PrivateBroker::start(slot);
    // NOTE: no static group membership, because a static member is fenced
    // (FENCED_INSTANCE_ID, fatal in librdkafka) by its own instance id
    // after the broker restarts, which stops the sink.
    let options = PipelineOptions {
        static_membership: false,
        host_args: host_args.iter().map(ToString::to_string).collect(),
    };
    let mut pipeline = Pipeline::start(label, mode, broker.bootstrap(), options);
    let writer = {
        let path = pipeline.log_path.clone();
        let lines = lines.to_vec();
        std::thread::spawn(move || append_in_chunks(&path, &lines))
    };

    let flowing = wait_until(Duration::from_secs(120), || {
        pipeline.assert_running(&ROLES);
        sink_output_lines(pipeline.output()).len() >= lines_before_kill
    });
    assert!(
        flowing,
        "the sink wrote fewer than {lines_before_kill} lines"
    );
    let cpu_before: Vec<Duration> = ROLES.iter().map(|role| pipeline.cpu_time(*role)).collect();
    let down_at = Instant::now();
    broker.kill_hard();
    std::thread::sleep(OUTAGE);
    pipeline.assert_running(&ROLES);
    let down_for = down_at.elapsed();
    let cpu_used: Vec<Duration> = ROLES
        .iter()
        .zip(&cpu_before)
        .map(|(role, before)| pipeline.cpu_time(*role) - *before)
        .collect();
    eprintln!(
        "{label}: broker down for {down_for:?}; CPU time used meanwhile by shipper, host, \
         sink: {cpu_used:?}"
    );
    for (role, used) in ROLES.iter().zip(&cpu_used) {
        // A process that retries in a busy loop takes a whole core.
        assert!(
            *used < down_for / 4,
            "{role:?} used {used:?} of CPU in {down_for:?} without a broker"
        );
    }

    let written_before_restart = sink_output_lines(pipeline.output()).len();
    broker.up();
    let resumed = wait_until(Duration::from_secs(120), || {
        pipeline.assert_running(&ROLES);
        sink_output_lines(pipeline.output()).len() > written_before_restart
    });
    assert!(resumed, "the sink wrote nothing after the broker came back");
    writer.join().expect("writer thread");
    pipeline.drain();
    let tally = pipeline.tally(0, [0; 3], lines);
    (pipeline, tally)
}
