//! Runs the parser natively over the hard cases in
//! `shared/data/edge-cases.jsonl` beside the repository: each line there
//! contains one log line and either the exact record expected from it or the
//! expectation that it is rejected.
//!
//! The file is not copied into the repository: a missing file fails the
//! test with its path instead of skipping it.

#[path = "support/edge_case_file.rs"]
mod edge_case_file;

use std::path::PathBuf;

use edge_case_file::{decode_base64, load_cases, mismatches, CASE_COUNT};
use serde_json::{Map, Value};
use weblog_access_log::config::PluginConfig;
use weblog_access_log::output::enrich_line;

fn cases_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/edge-cases.jsonl")
}

#[test]
fn edge_cases_native() {
    let cases = load_cases(&cases_path());
    assert_eq!(cases.len(), CASE_COUNT, "case count in {:?}", cases_path());
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
    let cases = load_cases(&cases_path());
    let lossy: Vec<_> = cases
        .iter()
        .filter(|case| std::str::from_utf8(&case.input).is_err())
        .collect();
    assert_eq!(lossy.len(), 1, "cases whose input is not UTF-8");

    for case in lossy {
        let text = enrich_line(&case.input, &PluginConfig::default()).expect("case is accepted");
        let record: Value = serde_json::from_str(&text).expect("output is valid JSON");
        let encoded = record["line_base64"].as_str().expect("line_base64 is set");
        assert_eq!(decode_base64(encoded), case.input, "{}", case.kind);
    }
}
