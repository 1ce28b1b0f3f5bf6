//! Reading `edge-cases.jsonl`, the hard log lines with the exact record
//! expected from each or the expectation that it is rejected, and comparing
//! a record with its expectation.
//!
//! The plugin's native tests and the host's integration tests include this
//! file with `#[path]`, so both read the cases the same way.

// The items are `pub` for the test that includes this module.
#![allow(unreachable_pub)]

use std::path::Path;

use base64::Engine as _;
use serde_json::{Map, Value};

/// Keys that a record has only when they apply to its line.
pub const OPTIONAL_KEYS: [&str; 5] = ["host", "request", "extra", "vhost", "forwarded_for"];

/// Number of cases in the file.
pub const CASE_COUNT: usize = 33;

/// One case: its name, its raw input bytes, and the expected record or
/// `None` when the line must be rejected.
pub struct Case {
    pub kind: String,
    pub input: Vec<u8>,
    pub expected: Option<Map<String, Value>>,
}

/// Reads the cases at `path`. The input is `line_base64` decoded when the
/// case has it (the line is not UTF-8), else `line`. A missing file fails
/// with its path.
pub fn load_cases(path: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| {
        panic!(
            "failed to read the edge cases at {}: {error}. The tests need the shared data \
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
                Some(encoded) => decode_base64(encoded.as_str().expect("line_base64 is a string")),
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

/// Decodes standard base64 with padding, as `line_base64` is written.
pub fn decode_base64(encoded: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_else(|error| panic!("invalid base64 {encoded:?}: {error}"))
}

/// Returns the differences between a record and its expectation: every
/// expected key with its value, and no optional key that is not expected.
pub fn mismatches(record: &Map<String, Value>, expected: &Map<String, Value>) -> Vec<String> {
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
