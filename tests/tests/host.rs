//! weblog-host against a real broker: what goes to the enriched topic and
//! the dead-letter topic, with which keys and headers, how it stops, and
//! how it swaps its plugin under load.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::util::custom_section::with_custom_section;
use crate::util::kafka::{
    caught_up, committed_and_end, host_run_command, produce, unique_name, Received, TestTopics,
    TopicReader,
};
use crate::util::{corpus, default_plugin, fixture_plugin, split_lines, ChildProcess};

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
    let mut command = host_command(&topics, &group);
    command.args(["--instance-id", "headers-test-1"]);
    let mut host = ChildProcess::spawn("host", command, dir.path());

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
    assert_eq!(letter.header("weblog.error.attempts"), "1");
    assert_eq!(letter.header("weblog.host.instance"), "headers-test-1");
    let timestamp: i64 = letter
        .header("weblog.source.timestamp")
        .parse()
        .expect("timestamp in decimal");
    assert!(timestamp > 1_700_000_000_000, "timestamp {timestamp} ms");
    assert!(!record.headers.contains_key("weblog.error.attempts"));

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

/// A candidate that rejects every line of a sample the running plugin
/// enriches is rejected by the canary check, on a file change and again on
/// SIGHUP. Once the sample holds only good lines, SIGHUP swaps it in and
/// later records carry its digest.
#[test]
fn canary_rejects_then_sighup_swaps() {
    let topics = TestTopics::create("host-canary", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_path = dir.path().join("plugin.wasm");
    let hostile = std::fs::read(fixture_plugin("weblog_test_hostile")).expect("read test plugin");
    let access_log = std::fs::read(default_plugin()).expect("read default plugin");
    install_plugin(dir.path(), &plugin_path, &hostile);

    let mut command = host_run_command(&topics, &unique_name("host-canary"), &plugin_path);
    command.arg("--no-component-cache");
    let mut host = ChildProcess::spawn("host", command, dir.path());
    let bad: Vec<Vec<u8>> = (0..40)
        .map(|n| format!("not an access log line {n}").into_bytes())
        .collect();
    let bad_records: Vec<(Option<&[u8]>, &[u8])> =
        bad.iter().map(|line| (None, line.as_slice())).collect();
    produce(&topics.raw, &bad_records);
    let mut enriched = TopicReader::new(&topics.enriched);
    enriched.read_at_least(40, Duration::from_secs(60));
    assert_eq!(enriched.received.len(), 40, "{}", host.stderr());

    install_plugin(dir.path(), &plugin_path, &access_log);
    let rejected = |host: &ChildProcess, count: usize| {
        crate::util::wait_until(Duration::from_secs(60), || {
            host.stderr().matches("plugin swap refused").count() == count
        })
    };
    assert!(rejected(&host, 1), "no rejection: {}", host.stderr());
    assert!(
        host.stderr().contains("rejected 40 of 40 sample records"),
        "{}",
        host.stderr()
    );
    host.signal("HUP");
    assert!(
        rejected(&host, 2),
        "no rejection on SIGHUP: {}",
        host.stderr()
    );
    assert!(host.stderr().contains("SIGHUP"), "{}", host.stderr());

    // 500 good lines push the bad ones out of the sample.
    let good: Vec<(Option<&[u8]>, &[u8])> = (0..500).map(|_| (None, GOOD_LINE)).collect();
    produce(&topics.raw, &good);
    enriched.read_at_least(540, Duration::from_secs(60));
    host.signal("HUP");
    // The swap lands before the next batch, so records keep coming until
    // it is logged.
    let mut extra = 0;
    let swapped = crate::util::wait_until(Duration::from_secs(60), || {
        produce(&topics.raw, &[(None, GOOD_LINE)]);
        extra += 1;
        host.stderr().contains("plugin swapped")
    });
    assert!(swapped, "no swap on the third try: {}", host.stderr());
    let total = 540 + extra;
    enriched.read_at_least(total, Duration::from_secs(60));
    let (status, _) = host.terminate(Duration::from_secs(30));
    assert!(status.success(), "host exit {status}: {}", host.stderr());

    let stderr = host.stderr();
    assert_eq!(stderr.matches("plugin swap refused").count(), 2, "{stderr}");
    assert_eq!(stderr.matches("plugin swapped").count(), 1, "{stderr}");
    assert_eq!(enriched.received.len(), total);
    let last = enriched.received.last().expect("enriched records");
    assert_eq!(last.header("weblog.source.offset"), (total - 1).to_string());
    assert_eq!(last.header("weblog.plugin.name"), "access-log");
    assert_eq!(last.header("weblog.plugin.digest"), sha256_hex(&access_log));
    let first = &enriched.received[0];
    assert_eq!(first.header("weblog.plugin.name"), "hostile");
    assert_eq!(first.header("weblog.plugin.digest"), sha256_hex(&hostile));
}

/// A candidate whose `init` refuses the running config, and one that traps
/// on every canary record, are both refused. The running plugin keeps
/// enriching through both attempts and after them.
#[test]
fn candidates_that_fail_init_or_trap_are_refused() {
    let topics = TestTopics::create("host-refuse", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_path = dir.path().join("plugin.wasm");
    let access_log = std::fs::read(default_plugin()).expect("read default plugin");
    let hostile = std::fs::read(fixture_plugin("weblog_test_hostile")).expect("read test plugin");
    let broken =
        std::fs::read(fixture_plugin("weblog_test_broken_candidate")).expect("read test plugin");
    install_plugin(dir.path(), &plugin_path, &access_log);

    let mut command = host_run_command(&topics, &unique_name("host-refuse"), &plugin_path);
    command
        .args(["--plugin-config", "service.route./api/orders=checkout"])
        .arg("--no-component-cache");
    let mut host = ChildProcess::spawn("host", command, dir.path());
    let good: Vec<(Option<&[u8]>, &[u8])> = (0..50).map(|_| (None, GOOD_LINE)).collect();
    produce(&topics.raw, &good);
    let mut enriched = TopicReader::new(&topics.enriched);
    enriched.read_at_least(50, Duration::from_secs(60));

    let rejected = |host: &ChildProcess, count: usize| {
        crate::util::wait_until(Duration::from_secs(60), || {
            host.stderr().matches("plugin swap refused").count() == count
        })
    };
    // The hostile plugin's init rejects the unknown `service.route.` setting.
    install_plugin(dir.path(), &plugin_path, &hostile);
    assert!(rejected(&host, 1), "no rejection: {}", host.stderr());
    assert!(
        host.stderr().contains("unknown setting")
            && host.stderr().contains("service.route./api/orders"),
        "{}",
        host.stderr()
    );
    install_plugin(dir.path(), &plugin_path, &broken);
    assert!(rejected(&host, 2), "no second rejection: {}", host.stderr());
    assert!(
        host.stderr()
            .contains("the candidate trapped, timed out or broke the output contract on 50 of 50"),
        "{}",
        host.stderr()
    );
    host.assert_running();

    produce(&topics.raw, &good);
    enriched.read_at_least(100, Duration::from_secs(60));
    let (status, _) = host.terminate(Duration::from_secs(30));
    assert!(status.success(), "host exit {status}: {}", host.stderr());

    assert!(
        !host.stderr().contains("plugin swapped"),
        "{}",
        host.stderr()
    );
    assert_eq!(enriched.received.len(), 100);
    let digest = sha256_hex(&access_log);
    for record in &enriched.received {
        assert_eq!(record.header("weblog.plugin.digest"), digest);
        let value: Value = serde_json::from_slice(&record.value).expect("enriched JSON");
        assert_eq!(value["service"], "checkout", "{value}");
    }
}

/// `POST /reload` on the admin endpoint answers with the outcome of the
/// check: 200 when the file contains the running plugin or when the
/// candidate passed, 422 with the reason when it is refused. On an idle
/// topic a second passing candidate replaces the first one, which still
/// waits for a batch, and its request gets a reply too. Other methods and
/// paths fail.
#[test]
fn admin_reload_reports_outcome() {
    let topics = TestTopics::create("host-admin", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_path = dir.path().join("plugin.wasm");
    let original = std::fs::read(default_plugin()).expect("read default plugin");
    install_plugin(dir.path(), &plugin_path, &original);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut command = host_run_command(&topics, &unique_name("host-admin"), &plugin_path);
    command.args(["--admin-addr", &addr, "--no-component-cache"]);
    let mut host = ChildProcess::spawn("host", command, dir.path());
    let ready = crate::util::wait_until(Duration::from_secs(60), || {
        host.stderr().contains("admin endpoint listening")
    });
    assert!(ready, "no admin endpoint: {}", host.stderr());

    let unchanged = http_request(&addr, "POST", "/reload");
    assert!(unchanged.starts_with("HTTP/1.1 200"), "{unchanged}");
    assert!(
        unchanged.contains("contains the running plugin"),
        "{unchanged}"
    );

    for build in [b"build 1".as_slice(), b"build 2".as_slice()] {
        let rebuilt = with_custom_section(&original, "weblog-test-build", build);
        install_plugin(dir.path(), &plugin_path, &rebuilt);
        // The file watcher may check the build first, and then the request
        // finds the build already accepted.
        let swapping = http_request(&addr, "POST", "/reload");
        assert!(swapping.starts_with("HTTP/1.1 200"), "{swapping}");
        assert!(
            swapping.contains("swapping in access-log")
                || swapping.contains("contains the running plugin"),
            "{swapping}"
        );
    }
    let stderr = host.stderr();
    assert_eq!(
        stderr
            .matches("dropped a checked candidate that a newer one replaced")
            .count(),
        1,
        "{stderr}"
    );

    install_plugin(dir.path(), &plugin_path, b"not a component");
    let rejected = http_request(&addr, "POST", "/reload");
    assert!(rejected.starts_with("HTTP/1.1 422"), "{rejected}");
    assert!(
        rejected.contains("the file is not a WASM component"),
        "{rejected}"
    );

    let wrong_method = http_request(&addr, "GET", "/reload");
    assert!(wrong_method.starts_with("HTTP/1.1 405"), "{wrong_method}");
    let wrong_path = http_request(&addr, "POST", "/swap");
    assert!(wrong_path.starts_with("HTTP/1.1 404"), "{wrong_path}");

    let (status, _) = host.terminate(Duration::from_secs(30));
    assert!(status.success(), "host exit {status}: {}", host.stderr());
}

/// An admin address that is not loopback stops the host at start, because
/// the endpoint has no authentication.
#[test]
fn admin_addr_must_be_loopback() {
    let topics = TestTopics::create("host-admin-any", 1);
    let output = host_command(&topics, &unique_name("host-admin-any"))
        .args(["--admin-addr", "0.0.0.0:0", "--no-component-cache"])
        .output()
        .expect("run host");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("invalid --admin-addr 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(stderr.contains("loopback"), "{stderr}");
}

/// Sends one HTTP/1.1 request without a body and returns the response.
fn http_request(addr: &str, method: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to admin endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("set read timeout");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response
}

/// Lines per produce call in the swap test.
const SWAP_CHUNK_LINES: usize = 250;

/// Lines the swap test produces at least, whatever the swaps take.
const SWAP_MIN_LINES: usize = 3000;

/// One step of the swap test: the bytes put in place as the plugin file
/// and whether the host must swap them in.
struct SwapStep {
    label: &'static str,
    bytes: Vec<u8>,
    accepted: bool,
}

/// Four swaps while thousands of lines stream through the host. The plugin
/// file becomes a build of the access-log plugin that differs only in a
/// custom section, then a file that is not a component (rejected), then the
/// test plugin in its default `enrich` mode, then the first build again.
/// Every input offset
/// ends up exactly once in the enriched or dead-letter topic, every output
/// names one of the swapped-in plugins, and per partition the plugin
/// changes only in swap order.
#[test]
fn plugin_swaps_under_load_lose_nothing() {
    let topics = TestTopics::create("host-swap", 3);
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_path = dir.path().join("plugin.wasm");
    let cache_dir = dir.path().join("components");

    let first = std::fs::read(default_plugin()).expect("read default plugin");
    let rebuilt = with_custom_section(&first, "weblog-test-build", b"second build");
    let hostile = std::fs::read(fixture_plugin("weblog_test_hostile")).expect("read test plugin");
    let steps = [
        SwapStep {
            label: "access-log with a custom section",
            bytes: rebuilt.clone(),
            accepted: true,
        },
        SwapStep {
            label: "not a component",
            bytes: b"this file is not a WASM component".to_vec(),
            accepted: false,
        },
        SwapStep {
            label: "test plugin in enrich mode",
            bytes: hostile.clone(),
            accepted: true,
        },
        SwapStep {
            label: "access-log again",
            bytes: first.clone(),
            accepted: true,
        },
    ];
    install_plugin(dir.path(), &plugin_path, &first);

    let group = unique_name("host-swap");
    let mut command = host_run_command(&topics, &group, &plugin_path);
    command.arg("--component-cache").arg(&cache_dir);
    let mut host = ChildProcess::spawn("host", command, dir.path());
    let ready = crate::util::wait_until(Duration::from_secs(60), || {
        host.stderr().contains("consuming")
    });
    assert!(ready, "host never started consuming: {}", host.stderr());

    // Produce until every swap is done, then one more chunk, so that
    // each swap lands while records flow and the last plugin gets records.
    let swaps_done = Arc::new(AtomicBool::new(false));
    let producer = {
        let raw = topics.raw.clone();
        let swaps_done = swaps_done.clone();
        std::thread::spawn(move || produce_until(&raw, &swaps_done))
    };

    let mut swapped = 0;
    let mut rejected = 0;
    for step in &steps {
        let installed = Instant::now();
        install_plugin(dir.path(), &plugin_path, &step.bytes);
        if step.accepted {
            swapped += 1;
        } else {
            rejected += 1;
        }
        let seen = crate::util::wait_until(Duration::from_secs(120), || {
            // A swap lands only with a batch, so a stopped producer would
            // make this wait time out.
            assert!(!producer.is_finished(), "the producer thread stopped early");
            let stderr = host.stderr();
            stderr.matches("plugin swapped").count() == swapped
                && stderr.matches("plugin swap refused").count() == rejected
        });
        assert!(seen, "no outcome for {}: {}", step.label, host.stderr());
        eprintln!(
            "swap to {}: outcome logged {} ms after the file was renamed into place",
            step.label,
            installed.elapsed().as_millis()
        );
        host.assert_running();
    }
    swaps_done.store(true, Ordering::Relaxed);
    let produced = producer.join().expect("producer thread");

    let outputs = read_outputs(&topics, produced);
    let (status, _) = host.terminate(Duration::from_secs(30));
    assert!(status.success(), "host exit {status}: {}", host.stderr());
    let stderr = host.stderr();

    let dead_letters = outputs
        .iter()
        .filter(|record| record.headers.contains_key("weblog.error.kind"))
        .count();
    eprintln!(
        "swap test: {produced} lines, {} outputs of which {dead_letters} dead letters",
        outputs.len()
    );

    // Every input offset exactly once across enriched and dead letters.
    let mut seen_offsets: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for record in &outputs {
        *seen_offsets.entry(source_of(record)).or_default() += 1;
    }
    let duplicated: Vec<_> = seen_offsets.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "duplicated: {duplicated:?}");
    assert_eq!(seen_offsets.len(), produced, "records lost");
    let offsets = committed_and_end(&group, &topics.raw);
    let ends: i64 = offsets.iter().map(|(_, _, end)| end).sum();
    assert_eq!(ends, produced as i64, "{offsets:?}");
    for (partition, committed, end) in &offsets {
        assert!(
            caught_up(*committed, *end),
            "partition {partition}: committed {committed:?} of {end}"
        );
        for offset in 0..*end {
            assert!(
                seen_offsets.contains_key(&(*partition, offset)),
                "{partition}/{offset} missing"
            );
        }
    }

    // Each output names one plugin, and the one digest fits its name.
    let digest_a = sha256_hex(&first);
    let digest_b = sha256_hex(&rebuilt);
    let digest_c = sha256_hex(&hostile);
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for record in &outputs {
        names
            .entry(record.header("weblog.plugin.digest").to_string())
            .or_default()
            .insert(record.header("weblog.plugin.name").to_string());
    }
    let digests: BTreeSet<&str> = names.keys().map(String::as_str).collect();
    eprintln!("swap test: digests seen {names:?}");
    let expected: BTreeSet<&str> = [&digest_a, &digest_b, &digest_c]
        .into_iter()
        .map(String::as_str)
        .collect();
    assert_eq!(digests, expected, "{names:?}");
    assert_eq!(names[&digest_a], BTreeSet::from(["access-log".to_string()]));
    assert_eq!(names[&digest_b], BTreeSet::from(["access-log".to_string()]));
    assert_eq!(names[&digest_c], BTreeSet::from(["hostile".to_string()]));

    // Per partition, the digest changes only in swap order and ends on
    // the last plugin swapped in.
    let order = [
        digest_a.as_str(),
        digest_b.as_str(),
        digest_c.as_str(),
        digest_a.as_str(),
    ];
    for (partition, runs) in digest_runs(&outputs) {
        assert!(
            is_subsequence(&runs, &order),
            "partition {partition}: {runs:?} is not in swap order {order:?}"
        );
        assert_eq!(
            runs.last().copied(),
            Some(digest_a.as_str()),
            "partition {partition}"
        );
    }

    // The rejected file is logged with its reason, and the cache contains
    // the three components that compiled.
    assert_eq!(stderr.matches("plugin swap refused").count(), 1, "{stderr}");
    assert!(
        stderr.contains("the file is not a WASM component"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("plugin swapped").count(), 3, "{stderr}");
    let entries = std::fs::read_dir(&cache_dir)
        .expect("cache directory")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
        })
        .count();
    assert_eq!(entries, 3, "one cache entry per compiled component");
}

/// Writes `bytes` next to `path` and renames the file into place, the way
/// a deploy replaces a plugin.
fn install_plugin(dir: &Path, path: &Path, bytes: &[u8]) {
    let temp = dir.join("plugin.wasm.new");
    std::fs::write(&temp, bytes).expect("write plugin");
    std::fs::rename(&temp, path).expect("rename plugin into place");
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Produces keyed lines of the Elastic corpus in chunks until `done` is
/// set and at least [`SWAP_MIN_LINES`] went out, then one more chunk.
/// Returns the number of lines produced.
fn produce_until(topic: &str, done: &AtomicBool) -> usize {
    let lines = split_lines(&std::fs::read(corpus("elastic-apache.log")).expect("read corpus"));
    let mut produced = 0;
    let mut last_chunk = false;
    loop {
        let chunk: Vec<(Vec<u8>, &[u8])> = (produced..produced + SWAP_CHUNK_LINES)
            .map(|n| {
                (
                    format!("k{n}").into_bytes(),
                    lines[n % lines.len()].as_slice(),
                )
            })
            .collect();
        let records: Vec<(Option<&[u8]>, &[u8])> = chunk
            .iter()
            .map(|(key, value)| (Some(key.as_slice()), *value))
            .collect();
        produce(topic, &records);
        produced += SWAP_CHUNK_LINES;
        if last_chunk {
            return produced;
        }
        last_chunk = done.load(Ordering::Relaxed) && produced >= SWAP_MIN_LINES;
    }
}

/// Reads the enriched and dead-letter topics until outputs for
/// `expected` distinct inputs arrived, then a little longer to catch
/// duplicates.
fn read_outputs(topics: &TestTopics, expected: usize) -> Vec<Received> {
    let mut enriched = TopicReader::new(&topics.enriched);
    let mut dlq = TopicReader::new(&topics.dlq);
    let complete = crate::util::wait_until(Duration::from_secs(120), || {
        enriched.poll_for(Duration::from_millis(300));
        dlq.poll_for(Duration::from_millis(100));
        let sources: BTreeSet<(i32, i64)> = enriched
            .received
            .iter()
            .chain(&dlq.received)
            .map(source_of)
            .collect();
        sources.len() >= expected
    });
    assert!(
        complete,
        "only {} enriched and {} dead letters for {expected} inputs",
        enriched.received.len(),
        dlq.received.len()
    );
    enriched.poll_for(Duration::from_secs(2));
    dlq.poll_for(Duration::from_secs(1));
    enriched.received.into_iter().chain(dlq.received).collect()
}

fn source_of(record: &Received) -> (i32, i64) {
    let partition = record.header("weblog.source.partition").parse();
    let offset = record.header("weblog.source.offset").parse();
    (
        partition.expect("partition header in decimal"),
        offset.expect("offset header in decimal"),
    )
}

/// Returns, per source partition, the plugin digests in source-offset
/// order with consecutive repeats collapsed.
fn digest_runs(outputs: &[Received]) -> BTreeMap<i32, Vec<&str>> {
    let mut by_offset: BTreeMap<(i32, i64), &str> = BTreeMap::new();
    for record in outputs {
        by_offset.insert(source_of(record), record.header("weblog.plugin.digest"));
    }
    let mut runs: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    for ((partition, _), digest) in by_offset {
        let run = runs.entry(partition).or_default();
        if run.last() != Some(&digest) {
            run.push(digest);
        }
    }
    runs
}

/// Tells whether `items` appear in `sequence` in the same order.
fn is_subsequence(items: &[&str], sequence: &[&str]) -> bool {
    let mut rest = sequence.iter();
    items
        .iter()
        .all(|item| rest.any(|candidate| candidate == item))
}

/// Numeric flags out of their range fail at parse time with exit code 2
/// and a message naming the flag, the value and the range, before the
/// host touches Kafka or the plugin.
#[test]
fn numeric_flags_out_of_range_are_rejected() {
    let cases = [
        (
            "--max-in-flight-batches",
            "18446744073709551615",
            "1..=10000",
        ),
        ("--max-in-flight-batches", "0", "1..=10000"),
        ("--batch-size", "0", "1..=100000"),
        ("--batch-size", "100001", "1..=100000"),
        ("--batch-linger-ms", "60001", "0..=60000"),
        ("--plugin-timeout-ms", "0", "1..=600000"),
        ("--plugin-timeout-ms", "600001", "1..=600000"),
        ("--plugin-memory-mib", "1", "2..=4096"),
        ("--plugin-memory-mib", "99999999", "2..=4096"),
        ("--max-retries", "1001", "0..=1000"),
    ];
    for (flag, value, range) in cases {
        let topics = TestTopics {
            raw: "unused-raw".to_string(),
            enriched: "unused-enriched".to_string(),
            dlq: "unused-dlq".to_string(),
        };
        let mut command = host_command(&topics, "unused-group");
        command.args([flag, value]);
        let output = crate::util::run_bounded(&mut command, Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(&format!("{value} is not in {range}")),
            "{flag} {value}: {stderr}"
        );
    }
}
