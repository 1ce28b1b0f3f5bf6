//! Replacing the running plugin without stopping the pipeline.
//!
//! A task watches the plugin file and listens for SIGHUP and for reload
//! requests from the admin endpoint ([`crate::admin`]). On any
//! trigger it loads the file as a candidate on a blocking thread. It
//! compiles the component or loads it from the component cache,
//! instantiates it and calls `init` with the running plugin's config.
//! Then it runs the canary check of [`crate::canary`] against an instance
//! of the running plugin. A candidate that passes waits in a
//! [`PendingSwap`] until the pipeline swaps it in between two batches. A
//! newer candidate that passes before then takes its place. A candidate
//! that fails is logged at warn and counted, and the running plugin stays.
//!
//! The file is polled once per [`WATCH_INTERVAL`] for a change of its
//! modification time, size or inode, instead of using inotify: one `stat`
//! per second is free, a delay of up to a second is fine for a deploy, and
//! polling sees a file written in place, a file renamed over the old one
//! and a symlink pointed elsewhere alike, with no watch on the directory to
//! keep alive.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wasmtime::Engine;

use crate::cache::ComponentCache;
use crate::canary::{judge, CanaryTally, RecentRecords};
use crate::plugin::{Plugin, PluginIdentity};
use crate::sandbox::SandboxLimits;

/// How often the plugin file is checked for a change.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Wait after a change is seen before the file is checked again. A file
/// that changed in that time is still being written and is loaded on a
/// later poll.
const SETTLE_DELAY: Duration = Duration::from_millis(200);

/// A plugin that passed the canary check, to be swapped in before the
/// next batch.
pub struct Replacement {
    /// The candidate, already instantiated and initialised.
    pub plugin: Plugin,
    /// Trigger of the swap: `file change`, `SIGHUP` or `admin request`.
    pub trigger: &'static str,
    /// Time from the trigger to a checked candidate.
    pub prepared_in: Duration,
}

/// The checked candidate that the pipeline swaps in before its next batch.
/// On an idle topic a candidate can wait here for long, so a newer one
/// replaces it instead of waiting behind it.
#[derive(Clone, Default)]
pub struct PendingSwap(Arc<Mutex<Option<Replacement>>>);

impl PendingSwap {
    /// Stores `replacement` and returns the candidate it replaces, if any.
    fn put(&self, replacement: Replacement) -> Option<Replacement> {
        match self.0.lock() {
            Ok(mut slot) => slot.replace(replacement),
            Err(poisoned) => poisoned.into_inner().replace(replacement),
        }
    }

    /// Takes the waiting candidate, if any.
    pub fn take(&self) -> Option<Replacement> {
        match self.0.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

/// A reload request from the admin endpoint, answered once the candidate
/// is checked.
pub type ReloadRequest = oneshot::Sender<ReloadReply>;

/// Result of a reload request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadReply {
    /// The candidate passed and is swapped in before the next batch.
    Swapping(PluginIdentity),
    /// The file contains the running plugin.
    Unchanged,
    /// The candidate was refused for this reason.
    Refused(String),
}

/// Swap attempts since the start.
#[derive(Debug, Default)]
pub struct SwapCounts {
    swapped: AtomicU64,
    refused: AtomicU64,
}

impl SwapCounts {
    /// Records a candidate swapped in by the pipeline.
    pub fn add_swapped(&self) {
        self.swapped.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns the number of candidates swapped in.
    pub fn swapped(&self) -> u64 {
        self.swapped.load(Ordering::Relaxed)
    }

    /// Returns the number of candidates refused.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Everything a candidate is loaded with: the running plugin's settings.
pub struct SwapSettings {
    /// Engine of the running plugin; a component only runs in the engine
    /// that compiled or deserialized it.
    pub engine: Engine,
    /// Path of the plugin file.
    pub path: PathBuf,
    /// Settings passed to the candidate's `init`.
    pub plugin_config: Vec<(String, String)>,
    /// Limits of the candidate's instances.
    pub limits: SandboxLimits,
    /// Cache of compiled components, if enabled.
    pub cache: Option<ComponentCache>,
}

/// Starts the swap task. `loaded_file` is the plugin file's signature from
/// before the running plugin was read from it, and any other signature is
/// a change. `reference` is a second instance of the running plugin for
/// the canary check, and `recent` the records it checks on.
/// `requests` carries reload requests from the admin endpoint. Returns
/// where checked candidates wait for the pipeline.
pub fn spawn_swap_task(
    settings: SwapSettings,
    loaded_file: Option<FileSignature>,
    reference: Plugin,
    recent: RecentRecords,
    counts: Arc<SwapCounts>,
    requests: mpsc::Receiver<ReloadRequest>,
    shutdown: CancellationToken,
) -> anyhow::Result<PendingSwap> {
    let hangup = signal(SignalKind::hangup()).context("failed to listen for SIGHUP")?;
    weblog_common::shutdown::mark_hangup_handled();
    let pending = PendingSwap::default();
    let swapper = Swapper {
        settings,
        reference,
        recent,
        counts,
    };
    let triggers = Triggers {
        hangup,
        requests,
        last_seen: loaded_file,
    };
    tokio::spawn(watch(swapper, triggers, pending.clone(), shutdown));
    Ok(pending)
}

/// The part of the swap task that runs on a blocking thread.
struct Swapper {
    settings: SwapSettings,
    reference: Plugin,
    recent: RecentRecords,
    counts: Arc<SwapCounts>,
}

/// Sources of a swap: SIGHUP, admin requests and the file's last seen
/// signature.
struct Triggers {
    hangup: tokio::signal::unix::Signal,
    requests: mpsc::Receiver<ReloadRequest>,
    last_seen: Option<FileSignature>,
}

async fn watch(
    mut swapper: Swapper,
    mut triggers: Triggers,
    pending: PendingSwap,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(WATCH_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut requester = None;
        let trigger = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = triggers.hangup.recv() => "SIGHUP",
            Some(request) = triggers.requests.recv() => {
                requester = Some(request);
                "admin request"
            }
            _ = ticks.tick() => {
                if !file_changed(&swapper.settings.path, &mut triggers.last_seen).await {
                    continue;
                }
                "file change"
            }
        };
        tracing::info!(trigger, path = ?swapper.settings.path, "loading candidate plugin");
        weblog_common::metrics::counter!(crate::metrics::PLUGIN_SWAP_ATTEMPTS).increment(1);
        let started = Instant::now();
        let joined = tokio::task::spawn_blocking(move || {
            let result = swapper.prepare(trigger, started);
            (swapper, result)
        })
        .await;
        let result;
        (swapper, result) = match joined {
            Ok(done) => done,
            Err(error) => {
                tracing::error!(error = %error, "plugin swap task failed, hot swap is off");
                return;
            }
        };
        let reply = match &result {
            Ok(Some(replacement)) => ReloadReply::Swapping(replacement.plugin.identity().clone()),
            Ok(None) => ReloadReply::Unchanged,
            Err(error) => ReloadReply::Refused(format!("{error:#}")),
        };
        match result {
            Ok(Some(replacement)) => {
                if let Some(superseded) = pending.put(replacement) {
                    let identity = superseded.plugin.identity();
                    weblog_common::metrics::counter!(crate::metrics::PLUGIN_SWAPS, "result" => "superseded")
                        .increment(1);
                    tracing::info!(
                        plugin = %identity.name,
                        version = %identity.version,
                        digest = %identity.digest,
                        "dropped a checked candidate that a newer one replaced before the next batch"
                    );
                }
            }
            Ok(None) => {}
            Err(error) => {
                swapper.counts.refused.fetch_add(1, Ordering::Relaxed);
                weblog_common::metrics::counter!(crate::metrics::PLUGIN_SWAPS, "result" => "refused")
                    .increment(1);
                tracing::warn!(
                    trigger,
                    path = ?swapper.settings.path,
                    refused_total = swapper.counts.refused(),
                    error = %format!("{error:#}"),
                    "plugin swap refused, keeping the running plugin"
                );
            }
        }
        if let Some(requester) = requester {
            // The requester may have hung up; the swap goes on regardless.
            let _ = requester.send(reply);
        }
    }
}

impl Swapper {
    /// Loads and checks a candidate. Returns `None` when the file contains
    /// the running plugin, and an error naming the reason when the candidate
    /// is refused.
    fn prepare(
        &mut self,
        trigger: &'static str,
        started: Instant,
    ) -> anyhow::Result<Option<Replacement>> {
        let settings = &self.settings;
        let bytes = std::fs::read(&settings.path)
            .with_context(|| format!("failed to read plugin {:?}", settings.path))?;
        let mut candidate = Plugin::from_bytes(
            &settings.engine,
            &settings.path,
            &bytes,
            settings.plugin_config.clone(),
            settings.limits,
            settings.cache.as_ref(),
        )?;
        if candidate.identity().digest == self.reference.identity().digest {
            tracing::info!(
                digest = %candidate.identity().digest,
                "plugin file contains the running plugin, nothing to swap"
            );
            return Ok(None);
        }

        // NOTE: before the first batch the sample is empty, so any
        // candidate that loads and initialises passes the check.
        let sample = self.recent.snapshot();
        let running = CanaryTally::from_outcomes(&self.reference.enrich(&sample));
        let checked = CanaryTally::from_outcomes(&candidate.enrich(&sample));
        tracing::info!(
            records = sample.len(),
            running_rejected = running.rejected,
            running_faulted = running.faulted,
            candidate_rejected = checked.rejected,
            candidate_faulted = checked.faulted,
            "canary sample enriched"
        );
        judge(running, checked).map_err(anyhow::Error::msg)?;

        self.reference = candidate.fork()?;
        Ok(Some(Replacement {
            plugin: candidate,
            trigger,
            prepared_in: started.elapsed(),
        }))
    }
}

/// Returns whether the file changed since `last_seen` and then stayed the
/// same for [`SETTLE_DELAY`]; updates `last_seen` when it did.
async fn file_changed(path: &Path, last_seen: &mut Option<FileSignature>) -> bool {
    let Ok(current) = FileSignature::read(path) else {
        return false;
    };
    if last_seen.as_ref() == Some(&current) {
        return false;
    }
    tokio::time::sleep(SETTLE_DELAY).await;
    match FileSignature::read(path) {
        Ok(settled) if settled == current => {
            *last_seen = Some(current);
            true
        }
        _ => false,
    }
}

/// Modification time, size and inode of the plugin file, compared by each
/// poll.
#[derive(Debug, PartialEq, Eq)]
pub struct FileSignature {
    modified: SystemTime,
    size: u64,
    inode: u64,
}

impl FileSignature {
    /// Reads the signature of `path`, following symlinks.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let metadata = std::fs::metadata(path)?;
        Ok(Self {
            modified: metadata.modified()?,
            size: metadata.size(),
            inode: metadata.ino(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rename_over_file_is_a_change() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("plugin.wasm");
        std::fs::write(&path, b"first").expect("write");
        let mut last_seen = FileSignature::read(&path).ok();
        assert!(
            !file_changed(&path, &mut last_seen).await,
            "nothing changed"
        );

        // Same size and, on a coarse clock, the same mtime, so only the
        // inode differs.
        let next = dir.path().join("next.wasm");
        std::fs::write(&next, b"other").expect("write");
        std::fs::rename(&next, &path).expect("rename");
        assert!(
            file_changed(&path, &mut last_seen).await,
            "renamed into place"
        );
        assert!(!file_changed(&path, &mut last_seen).await, "seen once");
    }

    #[tokio::test]
    async fn missing_file_is_no_change() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("plugin.wasm");
        std::fs::write(&path, b"first").expect("write");
        let mut last_seen = FileSignature::read(&path).ok();
        std::fs::remove_file(&path).expect("remove");
        assert!(!file_changed(&path, &mut last_seen).await);
        assert!(last_seen.is_some(), "the last signature stays");
    }
}
