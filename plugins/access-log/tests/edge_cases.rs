//! Runs the parser natively over the hard cases in
//! `shared/data/edge-cases.jsonl` beside the repository: each line there
//! holds one log line and either the exact record expected from it or the
//! expectation that it is rejected.
//!
//! The file is not copied into the repository: a missing file fails the
//! test with its path instead of skipping it.

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::{Map, Value};
use weblog_access_log::config::PluginConfig;
use weblog_access_log::output::enrich_line;

/// Keys that a record has only when they apply to its line.
const OPTIONAL_KEYS: [&str; 5] = ["host", "request", "extra", "vhost", "forwarded_for"];

fn cases_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/edge-cases.jsonl")
}

/// One case of the file: its name, the raw input bytes, and the expected
/// record or `None` when the line must be rejected.
struct Case {
    kind: String,
    input: Vec<u8>,
    expected: Option<Map<String, Value>>,
}

fn load_cases() -> Vec<Case> {
    let path = cases_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "failed to read the edge cases at {}: {error}. The test needs the shared data \
             folder next to the repository checkout (../shared/data from its root)",
            path.display()
        )
    });
    text.lines()
        .enumerate()
        .map(|(index, line)| {
            let case: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("case {}: invalid JSON: {error}", index + 1));
            let kind = case["kind"].as_str().expect("case has a kind").to_owned();
            let input = match case.get("line_base64") {
                Some(encoded) => base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_str().expect("line_base64 is a string"))
                    .unwrap_or_else(|error| panic!("{kind}: invalid line_base64: {error}")),
                None => case["line"]
                    .as_str()
                    .expect("case has a line")
                    .as_bytes()
                    .to_vec(),
            };
            let expected = match (case.get("expect"), case.get("expect_reject")) {
                (Some(Value::Object(expected)), None) => Some(expected.clone()),
                (None, Some(Value::String(_))) => None,
                _ => panic!("{kind}: needs either `expect` or `expect_reject`"),
            };
            Case {
                kind,
                input,
                expected,
            }
        })
        .collect()
}

/// Returns the differences between a record and its expectation: every
/// expected key with its value, and no optional key that is not expected.
fn mismatches(record: &Map<String, Value>, expected: &Map<String, Value>) -> Vec<String> {
    let mut found = Vec::new();
    for (key, value) in expected {
        match record.get(key) {
            Some(actual) if actual == value => {}
            Some(actual) => found.push(format!("`{key}` is {actual}, expected {value}")),
            None => found.push(format!("`{key}` is missing, expected {value}")),
        }
    }
    for key in OPTIONAL_KEYS {
        if record.contains_key(key) && !expected.contains_key(key) {
            found.push(format!("unexpected `{key}`: {}", record[key]));
        }
    }
    found
}

#[test]
fn edge_cases_native() {
    let cases = load_cases();
    assert_eq!(cases.len(), 33, "case count in {}", cases_path().display());
    let config = PluginConfig::default();

    let mut failures = Vec::new();
    for case in &cases {
        let outcome = enrich_line(&case.input, &config);
        match (&case.expected, outcome) {
            (Some(expected), Ok(text)) => {
                let record: Map<String, Value> = serde_json::from_str(&text)
                    .unwrap_or_else(|error| panic!("{}: invalid JSON {text}: {error}", case.kind));
                for mismatch in mismatches(&record, expected) {
                    failures.push(format!("{}: {mismatch}", case.kind));
                }
            }
            (Some(_), Err(rejection)) => {
                failures.push(format!("{}: rejected ({rejection})", case.kind));
            }
            (None, Ok(text)) => failures.push(format!("{}: accepted as {text}", case.kind)),
            (None, Err(_)) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn edge_case_bytes_kept_in_line_base64() {
    let cases = load_cases();
    let lossy: Vec<&Case> = cases
        .iter()
        .filter(|case| std::str::from_utf8(&case.input).is_err())
        .collect();
    assert_eq!(lossy.len(), 1, "cases whose input is not UTF-8");

    for case in lossy {
        let text = enrich_line(&case.input, &PluginConfig::default()).expect("case is accepted");
        let record: Value = serde_json::from_str(&text).expect("output is valid JSON");
        let encoded = record["line_base64"].as_str().expect("line_base64 is set");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("line_base64 is valid base64");
        assert_eq!(decoded, case.input, "{}", case.kind);
    }
}
