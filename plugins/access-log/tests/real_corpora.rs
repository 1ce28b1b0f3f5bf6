//! Runs the parser over the three real access logs kept beside the
//! repository in `shared/data/real` and pins how many lines each accepts.
//!
//! The logs are not copied into the repository: a missing file fails the
//! test with its path instead of skipping it.

use std::path::PathBuf;

use serde_json::Value;
use weblog_access_log::config::PluginConfig;
use weblog_access_log::output::enrich_line;

/// Keys every emitted record has, whatever the line.
const ALWAYS_PRESENT: [&str; 12] = [
    "ip",
    "ident",
    "user",
    "timestamp",
    "method",
    "path",
    "protocol",
    "status",
    "bytes",
    "referer",
    "user_agent",
    "service",
];

fn corpus_path(file_name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/real")
        .join(file_name)
}

/// Outcome of parsing one corpus: the emitted records, and the 1-based
/// line numbers and reasons of the rejected lines.
struct CorpusResult {
    records: Vec<Value>,
    rejected: Vec<(usize, String)>,
}

fn parse_corpus(file_name: &str) -> CorpusResult {
    let path = corpus_path(file_name);
    let contents = std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "failed to read the real corpus at {}: {error}. The test needs the shared data \
             folder next to the repository checkout (../shared/data/real from its root)",
            path.display()
        )
    });
    let config = PluginConfig::default();
    let mut result = CorpusResult {
        records: Vec::new(),
        rejected: Vec::new(),
    };
    let lines = contents.strip_suffix(b"\n").unwrap_or(&contents);
    for (index, line) in lines.split(|byte| *byte == b'\n').enumerate() {
        match enrich_line(line, &config) {
            Ok(text) => {
                let record: Value = serde_json::from_str(&text).unwrap_or_else(|error| {
                    panic!("line {}: invalid JSON {text}: {error}", index + 1)
                });
                result.records.push(record);
            }
            Err(rejection) => result.rejected.push((index + 1, rejection.to_string())),
        }
    }
    result
}

fn assert_standard_keys(file_name: &str, records: &[Value]) {
    for record in records {
        let object = record
            .as_object()
            .unwrap_or_else(|| panic!("{file_name}: record is not an object: {record}"));
        for key in ALWAYS_PRESENT {
            assert!(
                object.contains_key(key),
                "{file_name}: no `{key}` in {record}"
            );
        }
    }
}

fn count_where(records: &[Value], predicate: impl Fn(&Value) -> bool) -> usize {
    records.iter().filter(|record| predicate(record)).count()
}

fn timestamps_end_with(records: &[Value], offset: &str) -> usize {
    count_where(records, |record| {
        record["timestamp"]
            .as_str()
            .is_some_and(|timestamp| timestamp.ends_with(offset))
    })
}

#[test]
fn elastic_apache_counts() {
    let result = parse_corpus("elastic-apache.log");
    assert_eq!(result.records.len(), 9999);
    assert_eq!(
        result.rejected,
        vec![(8899, "unterminated quoted field: user agent".to_owned())]
    );
    assert_standard_keys("elastic-apache.log", &result.records);

    let records = &result.records;
    assert_eq!(timestamps_end_with(records, "+00:00"), 9999);
    assert_eq!(
        count_where(records, |record| record["bytes"].is_null()),
        669
    );
    assert_eq!(
        count_where(records, |record| record["ip"].is_string()),
        9999
    );
    // 190 lines log the user agent as `-`.
    assert_eq!(
        count_where(records, |record| record["user_agent"].is_string()),
        9809
    );
    assert_eq!(
        count_where(records, |record| record.get("extra").is_some()),
        0
    );
}

#[test]
fn nasa_counts() {
    let result = parse_corpus("nasa-jul-aug95-random-sample.log");
    assert_eq!(result.records.len(), 10000);
    assert_eq!(result.rejected, Vec::<(usize, String)>::new());
    assert_standard_keys("nasa-jul-aug95-random-sample.log", &result.records);

    let records = &result.records;
    assert_eq!(timestamps_end_with(records, "-04:00"), 10000);
    assert_eq!(
        count_where(records, |record| record.get("host").is_some()),
        7591
    );
    assert_eq!(count_where(records, |record| record["ip"].is_null()), 7591);
    assert_eq!(
        count_where(records, |record| record["bytes"].is_null()),
        101
    );
    // 13 requests without a protocol and 3 with text glued onto it.
    assert_eq!(
        count_where(records, |record| record["protocol"].is_null()),
        16
    );
    assert_eq!(count_where(records, |record| record["method"].is_null()), 0);
    assert_eq!(
        count_where(records, |record| record["referer"].is_null()),
        10000
    );
    assert_eq!(
        count_where(records, |record| record["user_agent"].is_null()),
        10000
    );
}

#[test]
fn basjes_counts() {
    let result = parse_corpus("basjes-hackers-access.log");
    assert_eq!(result.records.len(), 3456);
    assert_eq!(result.rejected, Vec::<(usize, String)>::new());
    assert_standard_keys("basjes-hackers-access.log", &result.records);

    let records = &result.records;
    assert_eq!(timestamps_end_with(records, "+01:00"), 3456);
    let ipv6_clients = count_where(records, |record| {
        record["ip"].as_str().is_some_and(|ip| ip.contains(':'))
    });
    assert_eq!(ipv6_clients, 12);
    assert_eq!(
        count_where(records, |record| record.get("host").is_some()),
        0
    );
    assert_eq!(
        count_where(records, |record| record["method"] == "POST"),
        1080
    );
}
