//! Describing a failed plugin call as a [`Failure`]: its kind, and a
//! one-line reason for the operator that includes the end of the plugin's
//! stderr, where a Rust panic message appears.

use wasmtime::Trap;

use crate::outcome::{Failure, FailureKind};
use crate::sandbox::SandboxLimits;

/// Max bytes of a reason that a plugin returns with `reject`. A longer one
/// is cut, so that a dead letter's headers stay far below Kafka's default
/// max message size of 1 MB.
pub const MAX_REJECT_REASON_BYTES: usize = 4 << 10;

/// Start of the context wasmtime adds to a trap. The backtrace after it
/// spans many lines, so it goes to the debug log and not into the reason.
const BACKTRACE_CONTEXT_PREFIX: &str = "error while executing at wasm backtrace";

/// Start of the line Rust's panic hook adds after the message. No plugin
/// can act on it, because plugins get no environment variables.
const RUST_BACKTRACE_HINT: &str = "note: run with `RUST_BACKTRACE=1`";

/// Turns the error of a failed call into a failure for the dead letter.
/// `memory_limit_hit` is true when a memory growth was denied during the
/// call, and `stderr` is what the plugin wrote to stderr during it.
pub(crate) fn classify_call_error(
    error: &wasmtime::Error,
    memory_limit_hit: bool,
    stderr: &[u8],
    limits: &SandboxLimits,
) -> Failure {
    let trap = error.downcast_ref::<Trap>().copied();
    let (kind, mut reason) = if trap == Some(Trap::Interrupt) {
        (
            FailureKind::Timeout,
            format!(
                "plugin call exceeded the CPU deadline of {} ms",
                limits.call_timeout.as_millis()
            ),
        )
    } else if memory_limit_hit {
        (
            FailureKind::MemoryLimit,
            format!(
                "plugin exceeded the memory limit of {} MiB: {}",
                limits.memory_bytes >> 20,
                describe_error(error)
            ),
        )
    } else {
        (
            FailureKind::Trap,
            format!("plugin trapped: {}", describe_error(error)),
        )
    };
    if let Some(output) = describe_stderr(stderr) {
        reason.push_str("; plugin stderr: ");
        reason.push_str(&output);
    }
    Failure { kind, reason }
}

/// Formats an error chain on one line, without wasmtime's backtrace.
fn describe_error(error: &wasmtime::Error) -> String {
    let causes: Vec<String> = error
        .chain()
        .map(|cause| cause.to_string())
        .filter(|cause| !cause.starts_with(BACKTRACE_CONTEXT_PREFIX))
        .collect();
    causes.join(": ")
}

/// Formats captured stderr on one line: lines joined with ` | `, control
/// characters replaced by spaces, Rust's backtrace hint left out. Returns
/// `None` when nothing but whitespace was written.
pub(crate) fn describe_stderr(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            line.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
                .trim()
                .to_string()
        })
        .filter(|line| !line.is_empty() && !line.starts_with(RUST_BACKTRACE_HINT))
        .collect();
    (!lines.is_empty()).then(|| lines.join(" | "))
}

/// Cuts a plugin's reject reason to [`MAX_REJECT_REASON_BYTES`] at a
/// character boundary and appends its original length.
pub(crate) fn truncate_reason(reason: String) -> String {
    cut_text(reason, MAX_REJECT_REASON_BYTES)
}

/// Cuts `text` to `max_bytes` at a character boundary and appends its
/// original length. Text of at most `max_bytes` is returned as it is.
pub(crate) fn cut_text(mut text: String, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text;
    }
    let total = text.len();
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("... (cut from {total} bytes)"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_output_becomes_one_line() {
        let stderr = b"\nthread '<unnamed>' panicked at src/lib.rs:10:5:\n\
            poison record at offset 3\n\
            note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            describe_stderr(stderr).as_deref(),
            Some("thread '<unnamed>' panicked at src/lib.rs:10:5: | poison record at offset 3")
        );
    }

    #[test]
    fn blank_stderr_is_none() {
        assert_eq!(describe_stderr(b" \n\r\n"), None);
    }

    #[test]
    fn control_characters_become_spaces() {
        assert_eq!(
            describe_stderr(b"\x1b[31mred\x1b[0m\x07").as_deref(),
            Some("[31mred [0m")
        );
    }

    #[test]
    fn short_reason_is_kept() {
        assert_eq!(truncate_reason("bad status".into()), "bad status");
    }

    #[test]
    fn long_reason_is_cut_at_char_boundary() {
        let reason = "\u{e9}".repeat(MAX_REJECT_REASON_BYTES);
        let cut = truncate_reason(reason);
        let suffix = format!("... (cut from {} bytes)", 2 * MAX_REJECT_REASON_BYTES);
        assert!(cut.ends_with(&suffix), "{}", &cut[cut.len() - 40..]);
        assert_eq!(cut.len(), MAX_REJECT_REASON_BYTES + suffix.len());
    }
}
