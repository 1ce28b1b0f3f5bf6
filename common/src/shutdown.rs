//! The shutdown protocol shared by the binaries.
//!
//! The first SIGINT or SIGTERM cancels the returned token: each binary then
//! stops fetching, finishes the work it has in flight, commits and exits 0.
//! A second signal exits at once with status 130, for an operator who does
//! not want to wait. At-least-once delivery makes that safe, because nothing
//! is committed before it is written.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Starts a task that waits for SIGINT or SIGTERM and returns the token it
/// cancels on the first one. Must be called inside a tokio runtime.
pub fn listen_for_shutdown() -> anyhow::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
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
