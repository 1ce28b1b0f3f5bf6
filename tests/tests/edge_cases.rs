//! The hard cases of `shared/data/edge-cases.jsonl` through the default
//! plugin in WebAssembly, run by `weblog-host enrich-file`: every expected
//! record key and value, every rejection, and the enrichment fields of a
//! few cases. No Kafka needed.
//!
//! All cases go into one input file, one per line, so that one host process
//! runs them in one plugin instance as the pipeline would.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Map, Value};

use crate::util::{binary, default_plugin, repo_root, run};

// The plugin's native tests read the cases with the same code.
#[path = "../../plugins/access-log/tests/support/edge_case_file.rs"]
mod edge_case_file;

use edge_case_file::{decode_base64, load_cases, mismatches, Case, CASE_COUNT};

/// Keys the plugin adds to every record besides the parsed fields.
const ENRICHMENT_KEYS: [&str; 8] = [
    "service",
    "status_class",
    "route",
    "path_only",
    "query",
    "client_class",
    "user_agent_class",
    "timestamp_ms",
];

fn cases_path() -> PathBuf {
    repo_root().join("../shared/data/edge-cases.jsonl")
}

/// Writes every case's bytes as one line of `path`. A `\n` inside a case
/// would split it in two, so none may contain one; a final `\r` stays.
fn write_input(cases: &[Case], path: &Path) {
    let mut content = Vec::new();
    for case in cases {
        assert!(
            !case.input.contains(&b'\n'),
            "{}: a case with a newline cannot be one line of a file",
            case.kind
        );
        content.extend_from_slice(&case.input);
        content.push(b'\n');
    }
    std::fs::write(path, content).expect("write edge-case input");
}

/// Runs enrich-file over all cases and returns one output object per case,
/// in case order.
fn enrich_cases(cases: &[Case]) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("edge-cases.log");
    write_input(cases, &input);

    let output = run(Command::new(binary("weblog-host"))
        .arg("enrich-file")
        .arg("--plugin")
        .arg(default_plugin())
        .arg("--input")
        .arg(&input));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "enrich-file failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).expect("enrich-file writes UTF-8");
    let objects: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect();
    assert_eq!(objects.len(), cases.len(), "one output per case: {stderr}");
    for (index, object) in objects.iter().enumerate() {
        assert_eq!(object["line"], json!(index + 1), "{object}");
    }
    objects
}

/// Returns the single record of an enriched output object.
fn record_of<'v>(kind: &str, object: &'v Value) -> Option<&'v Map<String, Value>> {
    let records = object.get("records")?.as_array()?;
    assert_eq!(records.len(), 1, "{kind}: one record per line: {object}");
    Some(records[0].as_object().expect("a record is an object"))
}

/// Every case comes out of the WebAssembly plugin as its expected record,
/// or rejected when it must be.
#[test]
fn edge_cases_through_wasm() {
    let cases = load_cases(&cases_path());
    assert_eq!(cases.len(), CASE_COUNT, "case count in {:?}", cases_path());
    let objects = enrich_cases(&cases);

    let mut failures = Vec::new();
    for (case, object) in cases.iter().zip(&objects) {
        match (&case.expected, record_of(&case.kind, object)) {
            (Some(expected), Some(record)) => {
                for mismatch in mismatches(record, expected) {
                    failures.push(format!("{}: {mismatch}", case.kind));
                }
            }
            (Some(_), None) => failures.push(format!("{}: not enriched: {object}", case.kind)),
            (None, Some(record)) => {
                failures.push(format!("{}: accepted as {record:?}", case.kind));
            }
            (None, None) => {
                if !object["rejected"].is_string() {
                    failures.push(format!("{}: no rejection reason: {object}", case.kind));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every enriched case carries every enrichment key, and a few cases carry
/// the values their lines imply.
#[test]
fn edge_case_enrichment_through_wasm() {
    let cases = load_cases(&cases_path());
    let objects = enrich_cases(&cases);
    let records: Vec<(&str, &Map<String, Value>)> = cases
        .iter()
        .zip(&objects)
        .filter_map(|(case, object)| Some((case.kind.as_str(), record_of(&case.kind, object)?)))
        .collect();
    assert_eq!(records.len(), 29, "enriched cases");
    for (kind, record) in &records {
        for key in ENRICHMENT_KEYS {
            assert!(record.contains_key(key), "{kind}: no `{key}`");
        }
    }
    let by_kind = |kind: &str| -> &Map<String, Value> {
        records
            .iter()
            .find(|(name, _)| *name == kind)
            .map(|(_, record)| *record)
            .unwrap_or_else(|| panic!("no enriched case {kind}"))
    };

    // 192.0.2.71 requests /wp-login.php at 2024-09-06T00:00:40+00:00.
    let vhost = by_kind("vhost-prefix-with-port");
    assert_eq!(vhost["status_class"], json!("2xx"));
    assert_eq!(vhost["route"], json!("/wp-login.php"));
    assert_eq!(vhost["client_class"], json!("documentation"));
    assert_eq!(vhost["user_agent_class"], json!("browser"));
    assert_eq!(vhost["timestamp_ms"], json!(1_725_580_840_000_i64));

    // /api/orders/123 from 198.51.100.8 by ExampleClient/2.0.
    let orders = by_kind("nginx-extra-fields-after-user-agent");
    assert_eq!(orders["service"], json!("orders-api"));
    assert_eq!(orders["route"], json!("/api/orders/{id}"));
    assert_eq!(orders["query"], Value::Null);
    assert_eq!(orders["user_agent_class"], json!("unknown"));

    // The left-most forwarded-for entry decides the class.
    let chain = by_kind("x-forwarded-for-chain-as-client-field");
    assert_eq!(chain["route"], json!("/jobs/{id}/backend"));
    assert_eq!(chain["client_class"], json!("documentation"));
    assert_eq!(chain["user_agent_class"], json!("crawler"));
    assert_eq!(chain["status_class"], json!("3xx"));

    let space = by_kind("space-inside-request-path");
    assert_eq!(space["path_only"], json!("/index.php"));
    assert_eq!(space["query"], json!("x=a b"));
    assert_eq!(space["user_agent_class"], json!("tool"));

    let host = by_kind("hostname-instead-of-ip");
    assert_eq!(host["client_class"], Value::Null);

    let connect = by_kind("connect-authority-form-target");
    assert_eq!(connect["route"], Value::Null);

    let timeout = by_kind("request-line-dash-408-timeout");
    assert_eq!(timeout["path_only"], Value::Null);
    assert_eq!(timeout["service"], json!("web"));

    // The raw bytes of the line that is not UTF-8 come back unchanged.
    let lossy = cases
        .iter()
        .find(|case| std::str::from_utf8(&case.input).is_err())
        .expect("one case is not UTF-8");
    let encoded = by_kind(&lossy.kind)["line_base64"]
        .as_str()
        .expect("line_base64 is set");
    assert_eq!(decode_base64(encoded), lossy.input);
}
