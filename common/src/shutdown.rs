//! The shutdown protocol shared by the binaries.
//!
//! The first SIGINT or SIGTERM cancels the returned token: each binary then
//! stops fetching, finishes the work it has in flight, commits and exits 0.
//! A second signal exits at once with status 130, for an operator who does
//! not want to wait. At-least-once delivery makes that safe, because nothing
//! is committed before it is written.
//!
//! SIGHUP, which logrotate scripts and `systemctl reload` send, never stops
//! a binary. The host reloads its plugin on it; the others log it and run
//! on.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Whether a task of this process acts on SIGHUP, so that it is not logged
/// as ignored.
static HANGUP_HANDLED: AtomicBool = AtomicBool::new(false);

/// Records that a task of this process acts on SIGHUP from now on.
pub fn mark_hangup_handled() {
    HANGUP_HANDLED.store(true, Ordering::Relaxed);
}

/// Starts a task that waits for SIGINT or SIGTERM and returns the token it
/// cancels on the first one. Must be called inside a tokio runtime.
pub fn listen_for_shutdown() -> anyhow::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    // Listening replaces the default action of SIGHUP, which ends the
    // process, for the whole life of the process.
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            if !HANGUP_HANDLED.load(Ordering::Relaxed) {
                tracing::info!(
                    signal = "SIGHUP",
                    "signal ignored: nothing to reload; SIGTERM stops the process"
                );
            }
        }
    });
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "shutting down: finishing in-flight work");
        cancel.cancel();

        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::warn!(signal = name, "second signal: exiting without finishing");
        std::process::exit(130);
    });
    Ok(token)
}
