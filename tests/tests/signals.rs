//! SIGHUP, which logrotate scripts and `systemctl reload` send, leaves the
//! shipper and the sink running.

use std::process::Command;
use std::time::Duration;

use crate::sink::sink_command;
use crate::util::kafka::{bootstrap, create_topics, unique_name, TopicReader};
use crate::util::{binary, wait_until, ChildProcess};

const IGNORED: &str = "signal ignored: nothing to reload";

/// Sends SIGHUP to `process` and waits for the line that logs it.
fn hang_up(process: &mut ChildProcess) {
    process.signal("HUP");
    let logged = wait_until(Duration::from_secs(30), || {
        process.stderr().contains(IGNORED)
    });
    assert!(logged, "no log of SIGHUP: {}", process.stderr());
    process.assert_running();
}

/// A following shipper and a sink each get SIGHUP, log it, and go on: the
/// shipper ships a line appended afterwards and the sink writes it, and
/// both exit 0 on SIGTERM.
#[test]
fn sighup_keeps_shipper_and_sink_running() {
    let raw = unique_name("hup-raw");
    let dlq = unique_name("hup-dlq");
    create_topics(&[&raw, &dlq], 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("access.log");
    std::fs::write(&log, "{\"n\":1}\n").expect("write log");
    let output = dir.path().join("out.jsonl");

    let mut shipper_command = Command::new(binary("weblog-shipper"));
    shipper_command
        .args(["--bootstrap-servers", &bootstrap(), "--topic", &raw])
        .args(["--dlq-topic", &dlq, "--follow", "--poll-interval-ms", "20"])
        .arg("--file")
        .arg(&log)
        .arg("--checkpoint")
        .arg(dir.path().join("access.checkpoint"));
    let mut shipper = ChildProcess::spawn("shipper", shipper_command, dir.path());
    // The sink reads the raw topic, whose lines are JSON objects.
    let sink_command = sink_command(&raw, &dlq, &unique_name("hup-sink"), &output);
    let mut sink = ChildProcess::spawn("sink", sink_command, dir.path());
    let mut reader = TopicReader::new(&raw);
    reader.read_at_least(1, Duration::from_secs(60));
    let started = wait_until(Duration::from_secs(60), || {
        sink.stderr().contains("sink started")
    });
    assert!(started, "sink did not start: {}", sink.stderr());

    hang_up(&mut shipper);
    hang_up(&mut sink);

    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open log");
    std::io::Write::write_all(&mut file, b"{\"n\":2}\n").expect("append line");
    let values: Vec<Vec<u8>> = reader
        .read_at_least(2, Duration::from_secs(60))
        .iter()
        .map(|record| record.value.clone())
        .collect();
    assert_eq!(values, [br#"{"n":1}"#.to_vec(), br#"{"n":2}"#.to_vec()]);
    let written = wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string(&output).is_ok_and(|text| text == "{\"n\":1}\n{\"n\":2}\n")
    });
    assert!(
        written,
        "sink output: {:?}",
        std::fs::read_to_string(&output)
    );

    for process in [&mut shipper, &mut sink] {
        let (status, _) = process.terminate(Duration::from_secs(30));
        assert!(status.success(), "exit {status}: {}", process.stderr());
    }
}
