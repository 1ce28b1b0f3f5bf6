//! The admin endpoints of the three binaries against a real broker. The
//! counters of one pipeline run agree with each other and with the input,
//! and the lag gauges reach 0. `/readyz` follows the broker going down and
//! coming back while `/healthz` stays up.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::broker::PrivateBroker;
use crate::util::kafka::{bootstrap, host_run_command, produce, unique_name, TestTopics};
use crate::util::{
    binary, corpus, default_plugin, fixture_plugin, run, split_lines, wait_until, ChildProcess,
};

/// Lines of the corpus slice the pipeline test ships: the end of
/// `elastic-apache.log`, which contains one line the default plugin
/// rejects (an unterminated quoted user agent).
const SLICE_LINES: usize = 3000;

/// Lines of the slice that the default plugin rejects.
const SLICE_REJECTED: f64 = 1.0;

/// Statistics interval of the processes under test, so that the broker
/// check and the lag gauges follow within a second.
const STATS_INTERVAL_MS: &str = "500";

/// Max time for the pipeline to drain and the gauges to settle.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);

/// Shipper, host and sink on a real corpus slice. The shipper read every
/// line, and the host consumed each once and turned it into one enriched
/// record or one dead letter. The sink wrote every enriched record, and
/// both lag gauges reach 0.
#[test]
fn pipeline_metrics_agree() {
    let topics = TestTopics::create("metrics", 3);
    let dir = tempfile::tempdir().expect("temp dir");
    let content = std::fs::read(corpus("elastic-apache.log")).expect("read corpus");
    let lines = split_lines(&content);
    let slice = &lines[lines.len() - SLICE_LINES..];
    let log = dir.path().join("access.log");
    let mut slice_bytes = slice.join(&b'\n');
    slice_bytes.push(b'\n');
    std::fs::write(&log, &slice_bytes).expect("write corpus slice");
    let expected = slice.len() as f64;

    let mut host_command =
        host_run_command(&topics, &unique_name("metrics-host"), &default_plugin());
    host_command.args(admin_flags());
    let mut host = ChildProcess::spawn("host", host_command, dir.path());
    let mut sink = ChildProcess::spawn(
        "sink",
        with_admin(sink_command(
            &topics,
            &unique_name("metrics-sink"),
            &dir.path().join("out.jsonl"),
        )),
        dir.path(),
    );
    let mut shipper = ChildProcess::spawn(
        "shipper",
        shipper_command(&topics.raw, &log, &dir.path().join("shipper.checkpoint")),
        dir.path(),
    );
    let host_addr = admin_addr(&mut host);
    let sink_addr = admin_addr(&mut sink);
    let shipper_addr = admin_addr(&mut shipper);

    // Counters scraped during the run never exceed those after it.
    let during = Scrape::get(&host_addr);
    let drained = wait_until(DRAIN_TIMEOUT, || {
        host.assert_running();
        sink.assert_running();
        let host_metrics = Scrape::get(&host_addr);
        let sink_metrics = Scrape::get(&sink_addr);
        let outputs = host_metrics.sum("weblog_host_records_produced_total", &[])
            + host_metrics.sum("weblog_host_records_dead_lettered_total", &[]);
        outputs >= expected
            && sink_metrics.sum("weblog_sink_records_written_total", &[])
                >= host_metrics.sum("weblog_host_records_produced_total", &[])
    });
    assert!(
        drained,
        "pipeline did not drain:\nhost:\n{}\nsink:\n{}",
        Scrape::get(&host_addr).text,
        Scrape::get(&sink_addr).text
    );
    let caught_up = wait_until(DRAIN_TIMEOUT, || {
        let host_lag = Scrape::get(&host_addr);
        let sink_lag = Scrape::get(&sink_addr);
        host_lag.count("weblog_host_consumer_lag_records") == 3
            && host_lag.sum("weblog_host_consumer_lag_records", &[]) == 0.0
            && sink_lag.count("weblog_sink_consumer_lag_records") == 3
            && sink_lag.sum("weblog_sink_consumer_lag_records", &[]) == 0.0
    });
    assert!(
        caught_up,
        "lag gauges did not reach 0:\nhost:\n{}\nsink:\n{}",
        Scrape::get(&host_addr).text,
        Scrape::get(&sink_addr).text
    );

    let acked = wait_until(Duration::from_secs(30), || {
        Scrape::get(&shipper_addr).sum("weblog_shipper_lines_acked_total", &[]) == expected
    });
    assert!(acked, "shipper:\n{}", Scrape::get(&shipper_addr).text);
    let shipper_metrics = Scrape::get(&shipper_addr);
    let host_metrics = Scrape::get(&host_addr);
    let sink_metrics = Scrape::get(&sink_addr);
    let raw = [("topic", topics.raw.as_str())];
    let enriched = [("topic", topics.enriched.as_str())];

    assert_eq!(
        shipper_metrics.sum("weblog_shipper_lines_read_total", &[]),
        expected
    );
    assert_eq!(
        shipper_metrics.sum("weblog_shipper_lines_acked_total", &[]),
        expected
    );
    assert_eq!(
        shipper_metrics.sum("weblog_shipper_lines_dead_lettered_total", &[]),
        0.0
    );
    assert_eq!(
        shipper_metrics.sum("weblog_shipper_read_bytes_total", &[]),
        (slice.iter().map(Vec::len).sum::<usize>() + slice.len()) as f64
    );
    let file = [("file", log.to_str().expect("UTF-8 temp path"))];
    let size = std::fs::metadata(&log).expect("stat corpus slice").len() as f64;
    assert_eq!(
        shipper_metrics.sum("weblog_shipper_file_offset_bytes", &file),
        size
    );
    assert_eq!(
        shipper_metrics.sum("weblog_shipper_file_size_bytes", &file),
        size
    );

    let consumed = host_metrics.sum("weblog_host_records_consumed_total", &raw);
    let produced = host_metrics.sum("weblog_host_records_produced_total", &enriched);
    let dead_lettered = host_metrics.sum("weblog_host_records_dead_lettered_total", &[]);
    assert_eq!(consumed, expected);
    assert_eq!(produced + dead_lettered, consumed);
    assert_eq!(dead_lettered, SLICE_REJECTED);
    assert_eq!(
        dead_lettered,
        host_metrics.sum("weblog_host_plugin_failures_total", &[])
    );
    assert!(
        during.sum("weblog_host_records_consumed_total", &raw) <= consumed,
        "a counter went down"
    );
    assert_eq!(
        host_metrics.sum("weblog_host_batch_records_sum", &[]),
        consumed
    );
    assert!(
        host_metrics.count("weblog_host_batch_records_bucket") > 1,
        "no buckets"
    );
    assert!(host_metrics.sum("weblog_host_plugin_call_duration_seconds_count", &[]) > 0.0);
    assert!(host_metrics.sum("weblog_host_commits_total", &[]) > 0.0);
    assert_eq!(
        host_metrics.sum("weblog_host_plugin_info", &[("plugin", "access-log")]),
        1.0
    );
    assert_eq!(
        host_metrics.sum("weblog_kafka_broker_up", &[("client", "consumer")]),
        1.0
    );

    let written = sink_metrics.sum("weblog_sink_records_written_total", &[]);
    assert_eq!(written, produced);
    assert_eq!(
        sink_metrics.sum("weblog_sink_records_consumed_total", &enriched),
        produced
    );
    assert_eq!(
        sink_metrics.sum("weblog_sink_records_dead_lettered_total", &[]),
        0.0
    );
    assert_eq!(
        sink_metrics.sum("weblog_sink_log_freshness_seconds_count", &[]),
        written
    );
    assert_eq!(
        sink_metrics.sum("weblog_sink_kafka_freshness_seconds_count", &[]),
        written
    );
    assert!(sink_metrics.sum("weblog_sink_fsyncs_total", &[]) > 0.0);

    for (name, addr) in [
        ("weblog-shipper", &shipper_addr),
        ("weblog-host", &host_addr),
        ("weblog-sink", &sink_addr),
    ] {
        let metrics = Scrape::get(addr);
        assert_eq!(
            metrics.sum("weblog_build_info", &[("binary", name)]),
            1.0,
            "{name}"
        );
        assert_eq!(http_get(addr, "/healthz").0, 200, "{name} /healthz");
        let (status, body) = http_get(addr, "/readyz");
        assert_eq!(status, 200, "{name} /readyz: {body}");
    }

    for process in [&mut shipper, &mut host, &mut sink] {
        let (status, _) = process.terminate(Duration::from_secs(30));
        assert!(status.success(), "exit {status}: {}", process.stderr());
    }
}

/// With its broker stopped, the host's `/readyz` turns 503 and names the
/// broker check while `/healthz` stays 200; with the broker back it turns
/// 200 again.
#[test]
fn readiness_follows_broker() {
    let broker = PrivateBroker::start(2);
    let dir = tempfile::tempdir().expect("temp dir");
    let raw = unique_name("ready-raw");
    let enriched = unique_name("ready-enriched");
    let dlq = unique_name("ready-dlq");
    broker.create_topics(&[&raw, &enriched, &dlq]);

    let mut command = Command::new(binary("weblog-host"));
    command
        .arg("run")
        .args(["--bootstrap-servers", &broker.bootstrap()])
        .args(["--input-topic", &raw, "--output-topic", &enriched])
        .args(["--dlq-topic", &dlq, "--group-id", &unique_name("ready")])
        .arg("--plugin")
        .arg(default_plugin())
        .args(admin_flags());
    let mut host = ChildProcess::spawn("host", command, dir.path());
    let addr = admin_addr(&mut host);
    let started = wait_until(Duration::from_secs(60), || {
        host.stderr().contains("consuming")
    });
    assert!(started, "host did not start: {}", host.stderr());

    let ready = wait_until(Duration::from_secs(60), || {
        http_get(&addr, "/readyz").0 == 200
    });
    assert!(ready, "never ready: {:?}", http_get(&addr, "/readyz"));

    broker.down();
    let unready = wait_until(Duration::from_secs(60), || {
        http_get(&addr, "/readyz").0 == 503
    });
    let (status, body) = http_get(&addr, "/readyz");
    assert!(unready, "still ready with the broker down: {status} {body}");
    assert!(body.contains("broker"), "{body}");
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    host.assert_running();

    broker.up();
    let ready_again = wait_until(Duration::from_secs(90), || {
        http_get(&addr, "/readyz").0 == 200
    });
    assert!(
        ready_again,
        "not ready after the broker came back: {:?}\n{}",
        http_get(&addr, "/readyz"),
        host.stderr()
    );
    assert_eq!(http_get(&addr, "/healthz").0, 200);

    let (status, _) = host.terminate(Duration::from_secs(30));
    assert!(status.success(), "host exit {status}: {}", host.stderr());
}

/// A plugin file that is not a component counts as a refused swap, and a
/// valid replacement as a done swap that moves `weblog_host_plugin_info`
/// to the new plugin. Each change of the file is one swap attempt.
#[test]
fn swap_counters_follow_plugin_file() {
    let topics = TestTopics::create("metrics-swap", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_path = dir.path().join("plugin.wasm");
    let first = std::fs::read(default_plugin()).expect("read default plugin");
    install_plugin(dir.path(), &plugin_path, &first);

    let mut command = host_run_command(&topics, &unique_name("metrics-swap"), &plugin_path);
    command.arg("--no-component-cache").args(admin_flags());
    let mut host = ChildProcess::spawn("host", command, dir.path());
    let addr = admin_addr(&mut host);
    let started = wait_until(Duration::from_secs(60), || {
        host.stderr().contains("consuming")
    });
    assert!(started, "host did not start: {}", host.stderr());
    let before = Scrape::get(&addr);
    assert_eq!(
        before.sum("weblog_host_plugin_swap_attempts_total", &[]),
        0.0
    );
    assert_eq!(
        before.sum("weblog_host_plugin_info", &[("plugin", "access-log")]),
        1.0
    );

    install_plugin(
        dir.path(),
        &plugin_path,
        b"this file is not a WASM component",
    );
    let refused = wait_until(Duration::from_secs(60), || {
        Scrape::get(&addr).sum("weblog_host_plugin_swaps_total", &[("result", "refused")]) == 1.0
    });
    assert!(refused, "no refused swap: {}", host.stderr());
    let after_refusal = Scrape::get(&addr);
    assert_eq!(
        after_refusal.sum("weblog_host_plugin_swap_attempts_total", &[]),
        1.0
    );
    assert_eq!(
        after_refusal.sum("weblog_host_plugin_swaps_total", &[("result", "done")]),
        0.0
    );

    // A swap lands before the next batch, so records must flow.
    let hostile = std::fs::read(fixture_plugin("weblog_test_hostile")).expect("read test plugin");
    install_plugin(dir.path(), &plugin_path, &hostile);
    let done = wait_until(Duration::from_secs(120), || {
        produce(&topics.raw, &[(None, b"GET / HTTP/1.1")]);
        Scrape::get(&addr).sum("weblog_host_plugin_swaps_total", &[("result", "done")]) == 1.0
    });
    assert!(done, "no swap done: {}", host.stderr());
    let after_swap = Scrape::get(&addr);
    assert_eq!(
        after_swap.sum("weblog_host_plugin_swap_attempts_total", &[]),
        2.0
    );
    assert_eq!(
        after_swap.sum("weblog_host_plugin_info", &[("plugin", "hostile")]),
        1.0
    );
    assert_eq!(
        after_swap.sum("weblog_host_plugin_info", &[("plugin", "access-log")]),
        0.0
    );

    let (status, _) = host.terminate(Duration::from_secs(30));
    assert!(status.success(), "host exit {status}: {}", host.stderr());
}

/// The sink counts a record that is not JSON as a dead letter, and
/// measures log freshness only on records with a `timestamp_ms` field but
/// Kafka freshness on every written record.
#[test]
fn sink_counts_dead_letters_and_freshness() {
    let topics = TestTopics::create("metrics-sink", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sink = ChildProcess::spawn(
        "sink",
        with_admin(sink_command(
            &topics,
            &unique_name("metrics-sink"),
            &dir.path().join("out.jsonl"),
        )),
        dir.path(),
    );
    let addr = admin_addr(&mut sink);
    let hour_ago_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis()
        - 3_600_000;
    let old = format!(r#"{{"status":200,"timestamp_ms":{hour_ago_ms}}}"#);
    produce(
        &topics.enriched,
        &[
            (None, old.as_bytes()),
            (None, br#"{"status":404}"#),
            (None, b"not json"),
        ],
    );

    let handled = wait_until(Duration::from_secs(60), || {
        let metrics = Scrape::get(&addr);
        metrics.sum("weblog_sink_records_written_total", &[])
            + metrics.sum("weblog_sink_records_dead_lettered_total", &[])
            == 3.0
    });
    assert!(handled, "sink:\n{}", sink.stderr());
    let metrics = Scrape::get(&addr);
    assert_eq!(metrics.sum("weblog_sink_records_written_total", &[]), 2.0);
    assert_eq!(
        metrics.sum(
            "weblog_sink_records_dead_lettered_total",
            &[("kind", "invalid-output")]
        ),
        1.0
    );
    assert_eq!(
        metrics.sum(
            "weblog_sink_records_consumed_total",
            &[("topic", &topics.enriched)]
        ),
        3.0
    );
    assert_eq!(
        metrics.sum("weblog_sink_kafka_freshness_seconds_count", &[]),
        2.0
    );
    assert_eq!(
        metrics.sum("weblog_sink_log_freshness_seconds_count", &[]),
        1.0
    );
    let age = metrics.sum("weblog_sink_log_freshness_seconds_sum", &[]);
    assert!((3600.0..3900.0).contains(&age), "log freshness {age} s");
    // The hour-old record lies above the 1024 s bound and below the 4096 s one.
    let bucket =
        |bound: &str| metrics.sum("weblog_sink_log_freshness_seconds_bucket", &[("le", bound)]);
    assert_eq!(bucket("1048.576"), 0.0, "{}", metrics.text);
    assert_eq!(bucket("4194.304"), 1.0, "{}", metrics.text);

    let (status, _) = sink.terminate(Duration::from_secs(30));
    assert!(status.success(), "sink exit {status}: {}", sink.stderr());
}

/// Records a plugin traps on count once each as plugin failures and dead
/// letters of kind `trap`, however often the host calls the plugin again
/// on parts of their batch, and the other records count as produced.
#[test]
fn plugin_traps_count_per_record() {
    let topics = TestTopics::create("metrics-trap", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = fixture_plugin("weblog_test_hostile");
    let mut command = host_run_command(&topics, &unique_name("metrics-trap"), &plugin);
    command
        .args([
            "--plugin-config",
            "mode=trap",
            "--plugin-config",
            "trigger=poison",
        ])
        .args(admin_flags());
    let mut host = ChildProcess::spawn("host", command, dir.path());
    let addr = admin_addr(&mut host);
    let values: [&[u8]; 5] = [b"one", b"poison two", b"three", b"poison four", b"five"];
    let records: Vec<(Option<&[u8]>, &[u8])> = values.iter().map(|value| (None, *value)).collect();
    produce(&topics.raw, &records);

    let handled = wait_until(Duration::from_secs(60), || {
        let metrics = Scrape::get(&addr);
        metrics.sum("weblog_host_records_produced_total", &[])
            + metrics.sum("weblog_host_records_dead_lettered_total", &[])
            == 5.0
    });
    assert!(handled, "host:\n{}", host.stderr());
    let metrics = Scrape::get(&addr);
    let trap = [("plugin", "hostile"), ("kind", "trap")];
    assert_eq!(metrics.sum("weblog_host_plugin_failures_total", &trap), 2.0);
    assert_eq!(metrics.sum("weblog_host_plugin_failures_total", &[]), 2.0);
    assert_eq!(
        metrics.sum(
            "weblog_host_records_dead_lettered_total",
            &[("topic", &topics.dlq), ("kind", "trap")]
        ),
        2.0
    );
    assert_eq!(
        metrics.sum(
            "weblog_host_records_produced_total",
            &[("topic", &topics.enriched)]
        ),
        3.0
    );
    // A batch with a trapping record is called again in parts, so there
    // is at least one call per batch.
    let calls = metrics.sum(
        "weblog_host_plugin_call_duration_seconds_count",
        &[("plugin", "hostile")],
    );
    let batches = metrics.sum("weblog_host_batch_records_count", &[]);
    assert!(batches >= 1.0, "no batch recorded");
    assert!(calls >= batches, "{calls} calls for {batches} batches");

    let (status, _) = host.terminate(Duration::from_secs(30));
    assert!(status.success(), "host exit {status}: {}", host.stderr());
}

/// A non-loopback `--admin-addr` stops the sink at start unless
/// `--admin-allow-remote` is given; with it the endpoint serves its
/// metrics on every address.
#[test]
fn remote_admin_needs_opt_in() {
    let topics = TestTopics::create("metrics-remote", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("out.jsonl");
    let group = unique_name("metrics-remote");

    let mut rejected = sink_command(&topics, &group, &output);
    rejected.args(["--admin-addr", "0.0.0.0:0"]);
    let result = run(&mut rejected);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid --admin-addr 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(stderr.contains("--admin-allow-remote"), "{stderr}");

    let mut allowed = sink_command(&topics, &group, &output);
    allowed.args(["--admin-addr", "0.0.0.0:0", "--admin-allow-remote"]);
    let mut sink = ChildProcess::spawn("sink", allowed, dir.path());
    let bound = admin_addr(&mut sink);
    let port = bound
        .strip_prefix("0.0.0.0:")
        .unwrap_or_else(|| panic!("bound to {bound}, not every address"));
    assert!(strip_ansi(&sink.stderr()).contains("admin endpoint accepts remote clients"));
    let metrics = Scrape::get(&format!("127.0.0.1:{port}"));
    assert_eq!(
        metrics.sum("weblog_build_info", &[("binary", "weblog-sink")]),
        1.0
    );

    let (status, _) = sink.terminate(Duration::from_secs(30));
    assert!(status.success(), "sink exit {status}: {}", sink.stderr());
}

/// With `--exactly-once`, outputs count once their transaction commits,
/// and each committed transaction counts as one commit.
#[test]
fn exactly_once_counts_committed_outputs() {
    let topics = TestTopics::create("metrics-eos", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let content = std::fs::read(corpus("elastic-apache.log")).expect("read corpus");
    let lines = split_lines(&content);
    let records: Vec<(Option<&[u8]>, &[u8])> = lines[..500]
        .iter()
        .map(|line| (None, line.as_slice()))
        .collect();

    let mut command = host_run_command(&topics, &unique_name("metrics-eos"), &default_plugin());
    command
        .args(["--exactly-once", "--transactional-id"])
        .arg(unique_name("metrics-eos-tx"))
        .args(admin_flags());
    let mut host = ChildProcess::spawn("host", command, dir.path());
    let addr = admin_addr(&mut host);
    produce(&topics.raw, &records);

    let handled = wait_until(Duration::from_secs(120), || {
        host.assert_running();
        let metrics = Scrape::get(&addr);
        metrics.sum("weblog_host_records_produced_total", &[])
            + metrics.sum("weblog_host_records_dead_lettered_total", &[])
            == 500.0
    });
    assert!(handled, "host:\n{}", host.stderr());
    let metrics = Scrape::get(&addr);
    assert_eq!(
        metrics.sum("weblog_host_records_consumed_total", &[]),
        500.0
    );
    assert_eq!(
        metrics.sum("weblog_host_records_dead_lettered_total", &[]),
        0.0
    );
    // One transaction per batch; an aborted one is consumed again as a
    // new batch, so commits never outnumber batches.
    let commits = metrics.sum("weblog_host_commits_total", &[]);
    let batches = metrics.sum("weblog_host_batch_records_count", &[]);
    assert!(commits >= 1.0, "no transaction committed");
    assert!(
        commits <= batches,
        "{commits} commits for {batches} batches"
    );

    let (status, _) = host.terminate(Duration::from_secs(30));
    assert!(status.success(), "host exit {status}: {}", host.stderr());
}

/// Puts `bytes` in place at `path` with a rename, so that the host's file
/// watch never reads a half-written plugin.
fn install_plugin(dir: &Path, path: &Path, bytes: &[u8]) {
    let temp = dir.join("plugin.wasm.new");
    std::fs::write(&temp, bytes).expect("write plugin");
    std::fs::rename(&temp, path).expect("rename plugin into place");
}

/// Adds [`admin_flags`] to `command`.
fn with_admin(mut command: Command) -> Command {
    command.args(admin_flags());
    command
}

/// Flags that turn on the admin endpoint on a free port and refresh the
/// broker check and lag gauges every 500 ms.
fn admin_flags() -> [&'static str; 4] {
    [
        "--admin-addr",
        "127.0.0.1:0",
        "--stats-interval-ms",
        STATS_INTERVAL_MS,
    ]
}

/// Returns the sink on `topics.enriched`, without an admin endpoint.
fn sink_command(topics: &TestTopics, group: &str, output: &Path) -> Command {
    let mut command = Command::new(binary("weblog-sink"));
    command
        .args(["--bootstrap-servers", &bootstrap()])
        .args(["--topic", &topics.enriched])
        .args(["--dlq-topic", &topics.dlq])
        .args(["--group-id", group])
        .arg("--output")
        .arg(output);
    command
}

/// Returns the shipper following `log`, so that it keeps serving its
/// metrics after the last line.
fn shipper_command(topic: &str, log: &Path, checkpoint: &Path) -> Command {
    let mut command = Command::new(binary("weblog-shipper"));
    command
        .args(["--bootstrap-servers", &bootstrap()])
        .args(["--topic", topic, "--follow"])
        .arg("--file")
        .arg(log)
        .arg("--checkpoint")
        .arg(checkpoint)
        .args(admin_flags());
    command
}

/// Waits for the process's `admin endpoint listening` log line and returns
/// the address in it.
fn admin_addr(process: &mut ChildProcess) -> String {
    let mut addr = None;
    let found = wait_until(Duration::from_secs(60), || {
        process.assert_running();
        addr = parse_admin_addr(&strip_ansi(&process.stderr()));
        addr.is_some()
    });
    assert!(found, "no admin endpoint: {}", process.stderr());
    addr.expect("found above")
}

fn parse_admin_addr(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|line| line.contains("admin endpoint listening"))?;
    let start = line.find("addr=")? + "addr=".len();
    let addr = line[start..].split_whitespace().next()?;
    Some(addr.to_string())
}

/// Removes the terminal colour codes that the text log format adds.
fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Sends `GET path` and returns the status and body; status 0 when the
/// endpoint cannot be reached.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set read timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string());
    (status, body)
}

/// One scrape of `/metrics` in the Prometheus text format.
struct Scrape {
    text: String,
    /// Samples as (name, labels, value).
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    fn get(addr: &str) -> Self {
        let (status, text) = http_get(addr, "/metrics");
        assert_eq!(status, 200, "GET /metrics on {addr}: {text}");
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(parse_sample)
            .collect();
        Self { text, samples }
    }

    /// Returns the sum of the samples of `name` whose labels include
    /// `labels`; 0 when there is none.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|(_, _, value)| value).sum()
    }

    /// Returns the number of samples of `name`.
    fn count(&self, name: &str) -> usize {
        self.matching(name, &[]).count()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a (String, BTreeMap<String, String>, f64)> + 'a {
        self.samples
            .iter()
            .filter(move |(sample, sample_labels, _)| {
                sample == name
                    && labels.iter().all(|(key, value)| {
                        sample_labels.get(*key).map(String::as_str) == Some(value)
                    })
            })
    }
}

/// Parses `name{key="value",...} number` or `name number`.
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let (series, value) = line.rsplit_once(' ').expect("sample has a value");
    let value: f64 = value
        .parse()
        .unwrap_or_else(|error| panic!("invalid sample value in {line:?}: {error}"));
    let Some((name, rest)) = series.split_once('{') else {
        return (series.to_string(), BTreeMap::new(), value);
    };
    let mut labels = BTreeMap::new();
    for pair in rest.trim_end_matches('}').split("\",") {
        if let Some((key, label)) = pair.split_once("=\"") {
            labels.insert(key.to_string(), label.trim_end_matches('"').to_string());
        }
    }
    (name.to_string(), labels, value)
}
