//! The anonymize plugin through `weblog-host enrich-file`: raw lines in
//! `mode=line`, and records of the default plugin in `mode=json`, the way
//! a second host instance reads the enriched topic.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::{anonymize_plugin, binary, default_plugin, run};

/// Runs enrich-file with `plugin` and returns its stdout lines as written.
fn enrich_text(plugin: &Path, input: &Path, config: &[&str]) -> Vec<String> {
    let mut command = Command::new(binary("weblog-host"));
    command
        .arg("enrich-file")
        .arg("--plugin")
        .arg(plugin)
        .arg("--input")
        .arg(input);
    for setting in config {
        command.arg("--plugin-config").arg(setting);
    }
    let output = run(&mut command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "enrich-file failed: {stderr}");
    String::from_utf8(output.stdout)
        .expect("enrich-file writes UTF-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Runs enrich-file with `plugin` and returns its stdout lines, parsed.
fn enrich(plugin: &Path, input: &Path, config: &[&str]) -> Vec<Value> {
    enrich_text(plugin, input, config)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

const LINES: &str = "\
192.0.2.77 - frank [10/Oct/2000:13:55:36 -0700] \"GET /a HTTP/1.0\" 200 2326
2001:db8:85a3::8a2e:370:7334 - - [10/Oct/2000:13:55:37 -0700] \"GET /b HTTP/1.1\" 404 -
client-7.example.com - - [10/Oct/2000:13:55:38 -0700] \"GET /c HTTP/1.1\" 200 5
::ffff:198.51.100.23 - - [10/Oct/2000:13:55:39 -0700] \"POST /api/orders HTTP/1.1\" 201 73

";

/// Raw lines come out with only the client rewritten, in input order, and
/// an empty line is rejected.
#[test]
fn line_mode_rewrites_clients() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("access.log");
    std::fs::write(&input, LINES).expect("write input");

    let output = enrich_text(&anonymize_plugin(), &input, &["mode=line"]);
    assert_eq!(
        output,
        [
            r#"{"line":1,"records":[{"line":"192.0.2.0 - frank [10/Oct/2000:13:55:36 -0700] \"GET /a HTTP/1.0\" 200 2326"}]}"#,
            r#"{"line":2,"records":[{"line":"2001:db8:85a3:: - - [10/Oct/2000:13:55:37 -0700] \"GET /b HTTP/1.1\" 404 -"}]}"#,
            r#"{"line":3,"records":[{"line":"- - - [10/Oct/2000:13:55:38 -0700] \"GET /c HTTP/1.1\" 200 5"}]}"#,
            r#"{"line":4,"records":[{"line":"::ffff:198.51.100.0 - - [10/Oct/2000:13:55:39 -0700] \"POST /api/orders HTTP/1.1\" 201 73"}]}"#,
            r#"{"line":5,"rejected":"empty line: no client field","kind":"rejected"}"#,
        ]
    );
}

/// Prefix lengths and the host-name policy from --plugin-config reach the
/// plugin.
#[test]
fn line_mode_config_applied() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("access.log");
    std::fs::write(&input, LINES).expect("write input");

    let lines = enrich(
        &anonymize_plugin(),
        &input,
        &[
            "mode=line",
            "ipv4_prefix=16",
            "ipv6_prefix=32",
            "hostnames=reject",
        ],
    );
    let first = lines[0]["records"][0]["line"].as_str().expect("a line");
    assert!(first.starts_with("192.0.0.0 - frank ["), "{first}");
    let second = lines[1]["records"][0]["line"].as_str().expect("a line");
    assert!(second.starts_with("2001:db8:: - - ["), "{second}");
    assert_eq!(
        lines[2]["rejected"],
        "client \"client-7.example.com\" is not an IP address, and hostnames=reject"
    );
    let fourth = lines[3]["records"][0]["line"].as_str().expect("a line");
    assert!(fourth.starts_with("::ffff:198.51.0.0 - - ["), "{fourth}");
}

/// Records of the default plugin keep every field but the client ones,
/// which are truncated or dropped.
#[test]
fn json_mode_after_default_plugin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("access.log");
    std::fs::write(&input, LINES).expect("write input");

    // The records the first host instance would produce to the enriched
    // topic, one per line.
    let enriched: Vec<Value> = enrich(&default_plugin(), &input, &[])
        .iter()
        .filter_map(|line| line.get("records"))
        .map(|records| records[0].clone())
        .collect();
    assert_eq!(enriched.len(), 4);
    let records_path = dir.path().join("enriched.jsonl");
    let text: String = enriched
        .iter()
        .map(|record| format!("{record}\n"))
        .collect();
    std::fs::write(&records_path, text).expect("write records");

    let lines = enrich(
        &anonymize_plugin(),
        &records_path,
        &["mode=json", "drop_user=true"],
    );
    assert_eq!(lines.len(), 4);
    // `None` is the client logged by host name, which `hostnames=drop`
    // removes.
    let expected_ips = [
        Some("192.0.2.0"),
        Some("2001:db8:85a3::"),
        None,
        Some("::ffff:198.51.100.0"),
    ];
    for (index, (line, ip)) in lines.iter().zip(expected_ips).enumerate() {
        let before = enriched[index].as_object().expect("a JSON object");
        let after = line["records"][0].as_object().expect("a JSON object");
        match ip {
            Some(ip) => assert_eq!(after["ip"], ip, "line {index}"),
            None => {
                assert_eq!(before["host"], "client-7.example.com");
                assert_eq!(after["ip"], Value::Null, "line {index}");
                assert_eq!(after["host"], Value::Null, "line {index}");
            }
        }
        assert_eq!(after["user"], Value::Null, "line {index}");
        assert_eq!(after["ident"], Value::Null, "line {index}");

        let before_keys: Vec<&String> = before.keys().collect();
        let after_keys: Vec<&String> = after.keys().collect();
        assert_eq!(
            after_keys, before_keys,
            "line {index}: keys and their order"
        );
        for (key, value) in before {
            if !["ip", "host", "user", "ident"].contains(&key.as_str()) {
                assert_eq!(&after[key], value, "line {index}: `{key}`");
            }
        }
    }
    assert_eq!(enriched[0]["user"], "frank");
}

/// A plain log line in json mode is rejected with the parser's reason.
#[test]
fn json_mode_rejects_raw_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("access.log");
    std::fs::write(
        &input,
        "192.0.2.77 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1\n",
    )
    .expect("write input");

    let lines = enrich(&anonymize_plugin(), &input, &[]);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["kind"], "rejected");
    let reason = lines[0]["rejected"].as_str().expect("a reason");
    assert!(reason.starts_with("invalid JSON record: "), "{reason}");
}

/// An out-of-range prefix stops enrich-file with the key, the value and
/// the accepted range.
#[test]
fn invalid_prefix_fails_init() {
    let output = run(Command::new(binary("weblog-host"))
        .arg("enrich-file")
        .arg("--plugin")
        .arg(anonymize_plugin())
        .arg("--input")
        .arg("/dev/null")
        .args(["--plugin-config", "ipv4_prefix=33"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("invalid value \"33\" for `ipv4_prefix`: expected an integer from 0 to 32"),
        "{stderr}"
    );
}
