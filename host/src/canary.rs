//! The canary check a replacement plugin must pass before it takes over.
//!
//! The pipeline keeps the last [`CANARY_SAMPLE_SIZE`] input records in a
//! [`RecentRecords`] buffer. A candidate plugin and the running plugin
//! each enrich that sample in instances of their own, and [`judge`]
//! compares the two tallies. The candidate is rejected when it faults on
//! more records than the running plugin does, a fault being a trap, a
//! timeout, the memory cap or invalid output. It is also rejected when it
//! rejects clearly more of the sample: more than
//! [`MAX_EXTRA_REJECTED_PERCENT`] percentage points and at least
//! [`MIN_EXTRA_REJECTED`] records more.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::bindings::InputRecord;
use crate::outcome::{EnrichOutcome, FailureKind};

/// Input records kept for the canary check. A few hundred lines cover the
/// usual mix of a log and take a few milliseconds to enrich.
pub const CANARY_SAMPLE_SIZE: usize = 500;

/// Share of the sample, in percentage points, that a candidate may reject
/// beyond what the running plugin rejects.
pub const MAX_EXTRA_REJECTED_PERCENT: usize = 5;

/// Extra rejected records below which a candidate is never rejected for
/// its reject rate, so that a sample of a few records cannot swing it.
pub const MIN_EXTRA_REJECTED: usize = 3;

/// Outcome counts of a canary sample in one plugin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CanaryTally {
    /// Records in the sample.
    pub records: usize,
    /// Records the plugin rejected.
    pub rejected: usize,
    /// Records that trapped, timed out, hit the memory cap or produced
    /// invalid output.
    pub faulted: usize,
}

impl CanaryTally {
    /// Counts the outcomes of one sample.
    pub fn from_outcomes(outcomes: &[EnrichOutcome]) -> Self {
        let mut tally = Self {
            records: outcomes.len(),
            ..Self::default()
        };
        for outcome in outcomes {
            match outcome {
                EnrichOutcome::Enriched(_) => {}
                EnrichOutcome::Failed(failure) if failure.kind == FailureKind::Rejected => {
                    tally.rejected += 1;
                }
                EnrichOutcome::Failed(_) => tally.faulted += 1,
            }
        }
        tally
    }
}

/// Decides whether a candidate may replace the running plugin, given both
/// tallies of the same sample. Returns the reason when it may not.
pub fn judge(running: CanaryTally, candidate: CanaryTally) -> Result<(), String> {
    debug_assert_eq!(running.records, candidate.records, "tallies of one sample");
    if candidate.faulted > running.faulted {
        return Err(format!(
            "the candidate trapped, timed out or broke the output contract on {} of {} \
             sample records, the running plugin on {}",
            candidate.faulted, candidate.records, running.faulted
        ));
    }
    let extra = candidate.rejected.saturating_sub(running.rejected);
    let clearly_more =
        extra >= MIN_EXTRA_REJECTED && extra * 100 > MAX_EXTRA_REJECTED_PERCENT * candidate.records;
    if clearly_more {
        return Err(format!(
            "the candidate rejected {} of {} sample records, the running plugin {}; \
             at most {MAX_EXTRA_REJECTED_PERCENT} percentage points more are allowed",
            candidate.rejected, candidate.records, running.rejected
        ));
    }
    Ok(())
}

/// The last input records the pipeline consumed, shared with the swap
/// task.
#[derive(Clone)]
pub struct RecentRecords {
    records: Arc<Mutex<VecDeque<InputRecord>>>,
    capacity: usize,
}

impl RecentRecords {
    /// Creates an empty buffer that keeps at most `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            records: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity,
        }
    }

    /// Appends the records of a batch, dropping the oldest beyond the
    /// capacity.
    pub fn push_batch(&self, batch: &[InputRecord]) {
        let Ok(mut records) = self.records.lock() else {
            return;
        };
        let batch = &batch[batch.len().saturating_sub(self.capacity)..];
        let overflow = (records.len() + batch.len()).saturating_sub(self.capacity);
        records.drain(..overflow);
        records.extend(batch.iter().cloned());
    }

    /// Returns a copy of the kept records, oldest first.
    pub fn snapshot(&self) -> Vec<InputRecord> {
        self.records
            .lock()
            .map(|records| records.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Failure;

    fn tally(records: usize, rejected: usize, faulted: usize) -> CanaryTally {
        CanaryTally {
            records,
            rejected,
            faulted,
        }
    }

    fn record(offset: i64) -> InputRecord {
        InputRecord {
            topic: "raw".into(),
            partition: 0,
            offset,
            timestamp_ms: None,
            key: None,
            value: b"line".to_vec(),
        }
    }

    #[test]
    fn same_results_are_accepted() {
        assert_eq!(judge(tally(500, 10, 0), tally(500, 10, 0)), Ok(()));
    }

    #[test]
    fn fewer_rejects_are_accepted() {
        assert_eq!(judge(tally(500, 40, 0), tally(500, 0, 0)), Ok(()));
    }

    #[test]
    fn any_extra_fault_is_rejected() {
        let reason = judge(tally(500, 0, 1), tally(500, 0, 2)).expect_err("one more trap");
        assert!(reason.contains("on 2 of 500"), "{reason}");
    }

    #[test]
    fn faults_the_running_plugin_shares_are_accepted() {
        assert_eq!(judge(tally(500, 0, 2), tally(500, 0, 2)), Ok(()));
    }

    #[test]
    fn five_points_more_rejects_are_accepted() {
        // 25 of 500 is exactly 5 percentage points.
        assert_eq!(judge(tally(500, 10, 0), tally(500, 35, 0)), Ok(()));
    }

    #[test]
    fn over_five_points_more_rejects_are_rejected() {
        let reason = judge(tally(500, 10, 0), tally(500, 36, 0)).expect_err("26 more");
        assert!(reason.contains("rejected 36 of 500"), "{reason}");
    }

    #[test]
    fn two_extra_rejects_of_small_sample_are_accepted() {
        // Two of 10 records are 20 points, but fewer than 3 records.
        assert_eq!(judge(tally(10, 0, 0), tally(10, 2, 0)), Ok(()));
    }

    #[test]
    fn three_extra_rejects_of_small_sample_are_rejected() {
        assert!(judge(tally(10, 0, 0), tally(10, 3, 0)).is_err());
    }

    #[test]
    fn empty_sample_is_accepted() {
        assert_eq!(judge(tally(0, 0, 0), tally(0, 0, 0)), Ok(()));
    }

    #[test]
    fn tally_counts_each_outcome_kind() {
        let failed = |kind| {
            EnrichOutcome::Failed(Failure {
                kind,
                reason: String::new(),
            })
        };
        let outcomes = [
            EnrichOutcome::Enriched(vec!["{}".into()]),
            failed(FailureKind::Rejected),
            failed(FailureKind::Trap),
            failed(FailureKind::Timeout),
        ];
        assert_eq!(CanaryTally::from_outcomes(&outcomes), tally(4, 1, 2));
    }

    #[test]
    fn recent_records_keep_the_last() {
        let recent = RecentRecords::new(3);
        recent.push_batch(&[record(0), record(1)]);
        recent.push_batch(&[record(2), record(3)]);
        let offsets: Vec<i64> = recent.snapshot().iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![1, 2, 3]);
    }

    #[test]
    fn recent_records_keep_end_of_large_batch() {
        let recent = RecentRecords::new(2);
        recent.push_batch(&(0..5).map(record).collect::<Vec<_>>());
        let offsets: Vec<i64> = recent.snapshot().iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![3, 4]);
    }
}
