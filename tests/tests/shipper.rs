//! weblog-shipper against a real broker: exact bytes in order, and clear
//! errors for a missing file or topic.

use std::process::Command;

use crate::util::kafka::{bootstrap, create_topics, unique_name, TopicReader};
use crate::util::{binary, run};

fn shipper(topic: &str, file: &std::path::Path) -> std::process::Output {
    run(Command::new(binary("weblog-shipper"))
        .args([
            "--bootstrap-servers",
            &bootstrap(),
            "--topic",
            topic,
            "--file",
        ])
        .arg(file))
}

/// Each line arrives as its raw bytes without the `\n`: a `\r`, bytes that
/// are not UTF-8, an empty line and a last line without newline included.
#[test]
fn ships_exact_bytes_in_order() {
    let topic = unique_name("shipper-bytes");
    create_topics(&[&topic], 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("odd.log");
    std::fs::write(&path, b"first\r\n\nthird \xff\xfe\nlast without newline").expect("write");

    let output = shipper(&topic, &path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("sent 4 lines"), "{stdout}");

    let mut reader = TopicReader::new(&topic);
    reader.read_at_least(4, std::time::Duration::from_secs(30));
    reader.poll_for(std::time::Duration::from_millis(500));
    let values: Vec<&[u8]> = reader.received.iter().map(|r| r.value.as_slice()).collect();
    assert_eq!(
        values,
        vec![
            &b"first\r"[..],
            b"",
            b"third \xff\xfe",
            b"last without newline"
        ]
    );
}

/// A missing file is an error that names it, and nothing is sent.
#[test]
fn missing_file_names_path() {
    let topic = unique_name("shipper-missing");
    let output = shipper(&topic, std::path::Path::new("/nonexistent/access.log"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("/nonexistent/access.log"), "{stderr}");
    assert!(stderr.contains("No such file"), "{stderr}");
}

/// A topic that does not exist is an error naming it, not a hang.
#[test]
fn missing_topic_names_topic() {
    let topic = unique_name("shipper-no-topic");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("one.log");
    std::fs::write(&path, b"line\n").expect("write");
    let output = shipper(&topic, &path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(&topic), "{stderr}");
}
