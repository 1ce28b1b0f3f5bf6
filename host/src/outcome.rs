//! The result of enriching one input record: output records, or a failure
//! that the host sends to the dead-letter topic.

/// Result of enriching one input record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrichOutcome {
    /// JSON object texts to produce to the enriched topic, in order. Empty
    /// when the plugin filtered the record out.
    Enriched(Vec<String>),
    /// The record goes to the dead-letter topic.
    Failed(Failure),
}

/// Reason a record could not be enriched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Class of the failure, written to the `weblog.error.kind` header.
    pub kind: FailureKind,
    /// Message for the operator, written to the `weblog.error.reason` header.
    pub reason: String,
}

/// Class of a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The plugin rejected the record, usually because it does not parse.
    Rejected,
    /// The plugin trapped (a panic, an abort or a WASM fault).
    Trap,
    /// The call ran past the CPU deadline.
    Timeout,
    /// The plugin tried to grow its memory past the cap.
    MemoryLimit,
    /// The plugin broke the output contract: wrong outcome count, invalid
    /// JSON, or a record over the max size.
    InvalidOutput,
}

impl FailureKind {
    /// Returns the name used in headers, logs and the enrich-file output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Trap => "trap",
            Self::Timeout => "timeout",
            Self::MemoryLimit => "memory-limit",
            Self::InvalidOutput => "invalid-output",
        }
    }
}
