//! weblog-host against a real broker: what goes to the enriched topic and
//! the dead-letter topic, with which keys and headers, and how it stops.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::kafka::{
    committed_and_end, host_run_command, produce, unique_name, TestTopics, TopicReader,
};
use crate::util::{default_plugin, ChildProcess};

const GOOD_LINE: &[u8] =
    b"198.51.100.7 - alice [10/Oct/2000:13:55:36 -0700] \"GET /api/orders/42 HTTP/1.1\" 200 512 \"-\" \"curl/8.0\"";
const BAD_LINE: &[u8] = b"\xff\xfe not an access log line";

fn host_command(topics: &TestTopics, group: &str) -> Command {
    host_run_command(topics, group, &default_plugin())
}

/// An enriched record keeps the input key and names its plugin and source.
/// A dead letter keeps the original bytes and key and carries the reason.
#[test]
fn outputs_keep_keys_and_headers() {
    let topics = TestTopics::create("host-headers", 1);
    produce(
        &topics.raw,
        &[(Some(b"k-good"), GOOD_LINE), (Some(b"k-bad"), BAD_LINE)],
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let group = unique_name("host-headers");
    let mut host = ChildProcess::spawn("host", host_command(&topics, &group), dir.path());

    let mut enriched = TopicReader::new(&topics.enriched);
    let mut dlq = TopicReader::new(&topics.dlq);
    enriched.read_at_least(1, Duration::from_secs(60));
    dlq.read_at_least(1, Duration::from_secs(30));
    let (status, _) = host.terminate(Duration::from_secs(30));
    assert!(status.success(), "host exit {status}: {}", host.stderr());

    assert_eq!(enriched.received.len(), 1, "{:?}", enriched.received);
    let record = &enriched.received[0];
    assert_eq!(record.key.as_deref(), Some(&b"k-good"[..]));
    assert_eq!(record.header("weblog.plugin.name"), "access-log");
    assert!(!record.header("weblog.plugin.version").is_empty());
    let digest = record.header("weblog.plugin.digest");
    assert_eq!(digest.len(), 64, "SHA-256 in hex: {digest}");
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "{digest}");
    assert_eq!(record.header("weblog.source.topic"), topics.raw);
    assert_eq!(record.header("weblog.source.partition"), "0");
    assert_eq!(record.header("weblog.source.offset"), "0");
    let json: Value = serde_json::from_slice(&record.value).expect("enriched JSON");
    assert_eq!(json["user"], "alice");
    assert_eq!(json["service"], "orders-api");
    assert_eq!(json["user_agent"], "curl/8.0");

    assert_eq!(dlq.received.len(), 1, "{:?}", dlq.received);
    let letter = &dlq.received[0];
    assert_eq!(letter.value, BAD_LINE);
    assert_eq!(letter.key.as_deref(), Some(&b"k-bad"[..]));
    assert_eq!(letter.header("weblog.error.kind"), "rejected");
    assert!(!letter.header("weblog.error.reason").is_empty());
    assert_eq!(letter.header("weblog.source.offset"), "1");
    assert_eq!(letter.header("weblog.plugin.digest"), digest);

    assert_eq!(
        committed_and_end(&group, &topics.raw),
        vec![(0, Some(2), 2)]
    );
}

/// A host started against a missing dead-letter topic stops at once with an
/// error naming the topic, instead of consuming records it cannot route.
#[test]
fn missing_dlq_topic_fails_fast() {
    let mut topics = TestTopics::create("host-missing", 1);
    topics.dlq = unique_name("does-not-exist");
    let started = Instant::now();
    let output = host_command(&topics, &unique_name("host-missing"))
        .output()
        .expect("run host");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(&topics.dlq), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// SIGTERM on an idle host ends it with status 0.
#[test]
fn idle_host_stops_on_sigterm() {
    let topics = TestTopics::create("host-idle", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut host = ChildProcess::spawn(
        "host",
        host_command(&topics, &unique_name("host-idle")),
        dir.path(),
    );
    let ready = crate::util::wait_until(Duration::from_secs(30), || {
        host.stderr().contains("consuming")
    });
    assert!(ready, "host never started consuming: {}", host.stderr());
    let (status, _) = host.terminate(Duration::from_secs(20));
    assert!(status.success(), "host exit {status}: {}", host.stderr());
    assert!(host.stderr().contains("stopped"), "{}", host.stderr());
}
