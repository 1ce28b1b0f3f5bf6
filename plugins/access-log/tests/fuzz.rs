//! Property tests of the whole line path (`enrich_line`), on arbitrary
//! bytes and on real corpus lines with random edits. For every input it
//! must not panic, must return a JSON object with every always-present key
//! or a rejection, and must finish within a generous time bound that only
//! a hang or a quadratic rescan would exceed.
//!
//! The default run uses a small number of cases. Set `PROPTEST_CASES` for
//! a longer run, for example `PROPTEST_CASES=200000 cargo test --release
//! --test fuzz`.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::Value;
use weblog_access_log::config::PluginConfig;
use weblog_access_log::output::{enrich_line, ENRICHMENT_KEYS, PARSED_KEYS};

/// Time one line may take. A line takes about a microsecond in a release
/// build, so only a hang or a quadratic rescan comes near this bound, even
/// in a debug build on a loaded machine.
const MAX_LINE_TIME: Duration = Duration::from_millis(500);

const DEFAULT_CASES: u32 = 256;

fn real_lines() -> &'static [Vec<u8>] {
    static LINES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    LINES.get_or_init(|| {
        let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real");
        let mut lines = Vec::new();
        for name in [
            "elastic-apache.log",
            "nasa-jul-aug95-random-sample.log",
            "basjes-hackers-access.log",
        ] {
            let path = folder.join(name);
            let content = std::fs::read(&path).unwrap_or_else(|error| {
                panic!(
                    "failed to read the real corpus at {}: {error}",
                    path.display()
                )
            });
            lines.extend(content.split(|byte| *byte == b'\n').map(<[u8]>::to_vec));
        }
        lines
    })
}

/// Checks one line: a rejection, or one JSON object with every key.
fn check_line(line: &[u8]) -> Result<(), TestCaseError> {
    let started = Instant::now();
    let outcome = enrich_line(line, &PluginConfig::default());
    let elapsed = started.elapsed();
    prop_assert!(
        elapsed < MAX_LINE_TIME,
        "{elapsed:?} for {:?}",
        String::from_utf8_lossy(line)
    );

    let Ok(text) = outcome else {
        return Ok(());
    };
    let record: Value = serde_json::from_str(&text)
        .map_err(|error| TestCaseError::fail(format!("invalid JSON {text}: {error}")))?;
    let object = record
        .as_object()
        .ok_or_else(|| TestCaseError::fail(format!("not an object: {text}")))?;
    for key in PARSED_KEYS.iter().chain(&ENRICHMENT_KEYS) {
        prop_assert!(object.contains_key(*key), "no `{key}` in {text}");
    }
    if std::str::from_utf8(line).is_err() {
        prop_assert!(object.contains_key("line_base64"), "no raw bytes in {text}");
    }
    Ok(())
}

/// One edit of a real line.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, u8),
    Delete(usize),
    Replace(usize, u8),
    Truncate(usize),
    Duplicate(usize, usize),
}

/// Bytes that matter to the parser, drawn more often than others.
fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(b" \t\r\"\\[]-,:/?.0123456789".to_vec()),
        1 => any::<u8>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), interesting_byte()).prop_map(|(at, byte)| Edit::Insert(at, byte)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), interesting_byte()).prop_map(|(at, byte)| Edit::Replace(at, byte)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1..64usize).prop_map(|(at, length)| Edit::Duplicate(at, length)),
    ]
}

fn apply(line: &mut Vec<u8>, edit: &Edit) {
    let position = |at: usize, length: usize| if length == 0 { 0 } else { at % length };
    match *edit {
        Edit::Insert(at, byte) => {
            let at = position(at, line.len() + 1);
            line.insert(at, byte);
        }
        Edit::Delete(at) if !line.is_empty() => {
            let at = position(at, line.len());
            line.remove(at);
        }
        Edit::Replace(at, byte) if !line.is_empty() => {
            let at = position(at, line.len());
            line[at] = byte;
        }
        Edit::Truncate(at) => {
            let at = position(at, line.len() + 1);
            line.truncate(at);
        }
        Edit::Duplicate(at, length) if !line.is_empty() => {
            let start = position(at, line.len());
            let end = (start + length).min(line.len());
            let copy = line[start..end].to_vec();
            line.splice(end..end, copy);
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|cases| cases.parse().ok())
            .unwrap_or(DEFAULT_CASES)
    ))]

    #[test]
    fn arbitrary_bytes_never_panic(line in prop::collection::vec(any::<u8>(), 0..512)) {
        check_line(&line)?;
    }

    #[test]
    fn structured_noise_never_panics(
        line in prop::collection::vec(interesting_byte(), 0..512)
    ) {
        check_line(&line)?;
    }

    #[test]
    fn mutated_real_lines_never_panic(
        index in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        let lines = real_lines();
        let mut line = index.get(lines).clone();
        for edit in &edits {
            apply(&mut line, edit);
        }
        check_line(&line)?;
    }
}

/// Long runs of the bytes the scanner searches for stay fast: no step
/// rescans the line once per byte.
#[test]
fn long_pathological_lines_are_fast() {
    let mut lines: Vec<Vec<u8>> = vec![
        vec![b'"'; 1 << 20],
        vec![b'['; 1 << 20],
        [b" ".repeat(1 << 19), b"[".repeat(1 << 19)].concat(),
        b"192.0.2.1, ".repeat(1 << 16),
        b"\\".repeat(1 << 20),
    ];
    let mut quoted_fields =
        b"192.0.2.1 - - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"a\"".to_vec();
    quoted_fields.extend(b" \"a\"b".repeat(1 << 16));
    lines.push(quoted_fields);
    let mut user_agent_quotes =
        b"192.0.2.1 - - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"".to_vec();
    user_agent_quotes.extend(b"\" x".repeat(1 << 16));
    lines.push(user_agent_quotes);

    for line in &lines {
        let started = Instant::now();
        let _ = enrich_line(line, &PluginConfig::default());
        let elapsed = started.elapsed();
        // A linear scan of a MiB takes milliseconds even in a debug build,
        // and a quadratic one hours, so the bound only has to sit between.
        assert!(
            elapsed < Duration::from_secs(20),
            "{elapsed:?} for a line of {} bytes starting {:?}",
            line.len(),
            String::from_utf8_lossy(&line[..line.len().min(40)])
        );
    }
}
