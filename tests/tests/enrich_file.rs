//! `weblog-host enrich-file` with the default plugin: output shape, order,
//! rejections, and the errors a plugin author meets first.

use std::process::Command;

use serde_json::Value;

use crate::util::{binary, corpus, default_plugin, run, split_lines};

/// Runs enrich-file and returns (exit success, stdout lines, stderr).
fn enrich(input: &std::path::Path, extra: &[&str]) -> (bool, Vec<Value>, String) {
    let output = run(Command::new(binary("weblog-host"))
        .arg("enrich-file")
        .arg("--plugin")
        .arg(default_plugin())
        .arg("--input")
        .arg(input)
        .args(extra));
    let stdout = String::from_utf8(output.stdout).expect("enrich-file writes UTF-8");
    let lines = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    (
        output.status.success(),
        lines,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every corpus line gets exactly one output object, numbered from 1 in
/// input order, and only the truncated line 8899 is rejected.
#[test]
fn elastic_corpus_numbered_in_order() {
    let input = corpus("elastic-apache.log");
    let (ok, lines, stderr) = enrich(&input, &[]);
    assert!(ok, "enrich-file failed: {stderr}");
    assert_eq!(lines.len(), 10_000);
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(line["line"], Value::from(index + 1), "line {index}: {line}");
    }
    let rejected: Vec<u64> = lines
        .iter()
        .filter(|line| line.get("rejected").is_some())
        .map(|line| line["line"].as_u64().expect("line number"))
        .collect();
    assert_eq!(rejected, vec![8899]);
    assert!(
        stderr.contains("lines: 10000, enriched: 9999, rejected: 1"),
        "{stderr}"
    );
}

/// The first elastic line comes out with every field as logged.
#[test]
fn elastic_first_line_fields() {
    let input = corpus("elastic-apache.log");
    let first = split_lines(&std::fs::read(&input).expect("read corpus"))[0].clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("one.log");
    std::fs::write(&path, &first).expect("write input");

    let (ok, lines, stderr) = enrich(&path, &[]);
    assert!(ok, "{stderr}");
    let record = &lines[0]["records"][0];
    assert_eq!(record["ip"], "83.149.9.216");
    assert_eq!(record["timestamp"], "2015-05-17T10:05:03+00:00");
    assert_eq!(record["method"], "GET");
    assert_eq!(
        record["path"],
        "/presentations/logstash-monitorama-2013/images/kibana-search.png"
    );
    assert_eq!(record["protocol"], "HTTP/1.1");
    assert_eq!(record["status"], 200);
    assert_eq!(record["bytes"], 203023);
    assert_eq!(
        record["referer"],
        "http://semicomplete.com/presentations/logstash-monitorama-2013/"
    );
    assert_eq!(record["ident"], Value::Null);
    assert_eq!(record["user"], Value::Null);
    assert_eq!(record["service"], "web");
}

/// Empty lines, CRLF endings, bytes that are not UTF-8 and a missing final
/// newline each keep their own output line.
#[test]
fn odd_lines_keep_their_numbers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("odd.log");
    let mut content = Vec::new();
    content.extend_from_slice(
        b"192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] \"GET /api/orders/7 HTTP/1.0\" 200 2326\r\n",
    );
    content.extend_from_slice(b"\n");
    content.extend_from_slice(
        b"192.0.2.2 - - [10/Oct/2000:13:55:36 -0700] \"GET /caf\xe9 HTTP/1.0\" 404 -\n",
    );
    content.extend_from_slice(b"not a log line");
    std::fs::write(&path, &content).expect("write input");

    let (ok, lines, stderr) = enrich(&path, &[]);
    assert!(ok, "{stderr}");
    assert_eq!(lines.len(), 4, "{lines:?}");

    let first = &lines[0]["records"][0];
    assert_eq!(first["service"], "orders-api");
    assert_eq!(
        first["protocol"], "HTTP/1.0",
        "the \\r is not part of the protocol"
    );
    assert_eq!(first["timestamp"], "2000-10-10T13:55:36-07:00");

    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1]["rejected"].is_string(), "empty line: {}", lines[1]);

    let third = &lines[2]["records"][0];
    assert_eq!(third["path"], "/caf\u{fffd}");
    assert_eq!(third["bytes"], Value::Null);

    assert_eq!(lines[3]["line"], 4);
    assert!(lines[3]["rejected"].is_string(), "garbage: {}", lines[3]);
}

/// Service rules passed with --plugin-config reach the plugin's init.
#[test]
fn plugin_config_sets_service() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("one.log");
    std::fs::write(
        &path,
        "192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] \"GET /shop/cart HTTP/1.1\" 200 1\n",
    )
    .expect("write input");
    let (ok, lines, stderr) = enrich(
        &path,
        &[
            "--plugin-config",
            "service.route./shop=shop",
            "--plugin-config",
            "service.default=other",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(lines[0]["records"][0]["service"], "shop");
}

/// An unknown plugin setting stops the command with the plugin's message.
#[test]
fn unknown_plugin_setting_fails() {
    let input = corpus("basjes-hackers-access.log");
    let (ok, lines, stderr) = enrich(&input, &["--plugin-config", "colour=blue"]);
    assert!(!ok, "an unknown key must fail");
    assert!(lines.is_empty());
    assert!(stderr.contains("rejected its config"), "{stderr}");
    assert!(stderr.contains("colour"), "{stderr}");
}

/// A missing input file is an error naming the file.
#[test]
fn missing_input_names_path() {
    let (ok, _, stderr) = enrich(std::path::Path::new("/nonexistent/access.log"), &[]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/access.log"), "{stderr}");
    assert!(stderr.contains("No such file"), "{stderr}");
}

/// A file that is not a component is refused with the path in the error.
#[test]
fn non_component_plugin_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = dir.path().join("fake.wasm");
    std::fs::write(&plugin, b"\0asm\x01\0\0\0").expect("write fake plugin");
    let output = run(Command::new(binary("weblog-host"))
        .arg("enrich-file")
        .arg("--plugin")
        .arg(&plugin)
        .arg("--input")
        .arg(corpus("basjes-hackers-access.log")));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("fake.wasm"), "{stderr}");
    assert!(stderr.contains("component"), "{stderr}");
}
