//! The wasmtime engine and the limits every plugin instance runs under.
//!
//! One engine serves every plugin. Each instance gets its own store with a
//! memory cap, a CPU deadline per call (epoch interruption) and a WASI
//! context with no files, environment, network or arguments. Its clocks are
//! frozen at the Unix epoch, its stdout is discarded, and the last
//! [`MAX_STDERR_TAIL_BYTES`] of its stderr are kept so that a failure
//! report can show why the plugin trapped.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncWrite;
use wasmtime::{Config, Engine, ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

/// How often the epoch advances. A deadline is rounded up to whole ticks, so
/// this is also the precision of the CPU deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Default CPU deadline for one call into a plugin. A batch of 1024 lines
/// takes a few milliseconds in the default plugin, so only a runaway plugin
/// reaches it.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Default cap on a plugin instance's linear memory.
pub const DEFAULT_MEMORY_LIMIT: usize = 64 << 20;

/// Max WASM stack of a plugin call; wasmtime's own default, set explicitly so
/// that it cannot change under us with a wasmtime upgrade.
pub const MAX_WASM_STACK: usize = 512 << 10;

/// Bytes of a plugin's stderr kept per call: enough for a Rust panic
/// message with its location, small enough for a Kafka header.
pub const MAX_STDERR_TAIL_BYTES: usize = 4 << 10;

/// Resource limits of every plugin instance.
#[derive(Clone, Copy, Debug)]
pub struct SandboxLimits {
    /// CPU deadline of one call; the call traps with a timeout after it.
    pub call_timeout: Duration,
    /// Max bytes of linear memory; a `memory.grow` past it fails.
    pub memory_bytes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            call_timeout: DEFAULT_CALL_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_LIMIT,
        }
    }
}

impl SandboxLimits {
    /// Returns the call timeout in epoch ticks, at least one.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let ticks = self.call_timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }
}

/// Returns the engine settings every plugin runs under. The component
/// cache keys its entries by what these settings change in compiled code.
pub fn engine_config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK);
    config
}

/// Creates the engine for plugins from [`engine_config`] and starts the
/// thread that advances its epoch every [`EPOCH_TICK`].
pub fn create_engine() -> anyhow::Result<Engine> {
    create_engine_with(&engine_config())
}

/// Creates an engine like [`create_engine`] whose compiler uses one
/// thread. A long-running host compiles swapped-in plugins next to the
/// batches it serves, and a compile on every core raises their latency.
/// The compiled code is the same as with [`create_engine`].
pub fn create_engine_compiling_on_one_thread() -> anyhow::Result<Engine> {
    let mut config = engine_config();
    config.parallel_compilation(false);
    create_engine_with(&config)
}

fn create_engine_with(config: &Config) -> anyhow::Result<Engine> {
    let engine = Engine::new(config)
        .map_err(anyhow::Error::from)
        .context("failed to create wasmtime engine")?;

    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .context("failed to start epoch thread")?;
    Ok(engine)
}

/// Per-instance state kept in a wasmtime store.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: TrackingLimiter,
    stderr: StderrTail,
}

impl PluginState {
    /// Builds the locked-down state of a new instance.
    pub(crate) fn new(limits: &SandboxLimits) -> Self {
        let stderr = StderrTail::default();
        let mut wasi = WasiCtx::builder();
        wasi.stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock);
        Self {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: TrackingLimiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .instances(8)
                    .tables(16)
                    .memories(4)
                    .build(),
                memory_limit_hit: Arc::new(AtomicBool::new(false)),
            },
            stderr,
        }
    }

    /// Returns the limiter for `Store::limiter`.
    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limiter
    }

    /// Tells whether a memory growth was denied since the last call to this.
    pub(crate) fn take_memory_limit_hit(&self) -> bool {
        self.limiter.memory_limit_hit.swap(false, Ordering::Relaxed)
    }

    /// Removes and returns what the plugin wrote to stderr since the last
    /// call to this, at most the last [`MAX_STDERR_TAIL_BYTES`].
    pub(crate) fn take_stderr(&self) -> Vec<u8> {
        self.stderr.take()
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Store limits that also record a denied memory growth, so that a trap
/// that follows can be reported as the memory limit rather than a bug.
struct TrackingLimiter {
    inner: StoreLimits,
    memory_limit_hit: Arc<AtomicBool>,
}

impl ResourceLimiter for TrackingLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.memory_limit_hit.store(true, Ordering::Relaxed);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// The plugin's stderr: keeps the last [`MAX_STDERR_TAIL_BYTES`] and drops
/// older bytes. Every write succeeds, so a plugin that logs a lot never
/// fails because of it.
#[derive(Clone, Default)]
struct StderrTail {
    bytes: Arc<Mutex<VecDeque<u8>>>,
}

impl StderrTail {
    fn push(&self, data: &[u8]) {
        let Ok(mut bytes) = self.bytes.lock() else {
            return;
        };
        let data = &data[data.len().saturating_sub(MAX_STDERR_TAIL_BYTES)..];
        let overflow = (bytes.len() + data.len()).saturating_sub(MAX_STDERR_TAIL_BYTES);
        bytes.drain(..overflow);
        bytes.extend(data);
    }

    fn take(&self) -> Vec<u8> {
        self.bytes
            .lock()
            .map(|mut bytes| bytes.drain(..).collect())
            .unwrap_or_default()
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

// wasmtime-wasi 48 wraps this writer in a WASIp2 output stream whose
// blocking write-and-flush returns only after the bytes reached
// `poll_write`, so output written that way before a trap is in the tail.
// A Rust panic message arrives (tests/tests/sandbox.rs checks it).
// NOTE: bytes written without a flush just before a trap can be missing.
impl StdoutStream for StderrTail {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for StderrTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _context: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        _context: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        _context: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A wall and monotonic clock that always reads zero, so that plugins are
/// deterministic and cannot time anything.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_rounds_up_to_whole_ticks() {
        let limits = SandboxLimits {
            call_timeout: Duration::from_millis(25),
            ..SandboxLimits::default()
        };
        assert_eq!(limits.deadline_ticks(), 3);
    }

    #[test]
    fn stderr_tail_keeps_the_last_bytes() {
        let tail = StderrTail::default();
        tail.push(&[b'a'; MAX_STDERR_TAIL_BYTES]);
        tail.push(b"end");
        let kept = tail.take();
        assert_eq!(kept.len(), MAX_STDERR_TAIL_BYTES);
        assert!(kept.ends_with(b"aend"), "{:?}", &kept[kept.len() - 8..]);
        assert!(tail.take().is_empty(), "take empties the tail");
    }

    #[test]
    fn stderr_tail_keeps_end_of_large_write() {
        let tail = StderrTail::default();
        let mut data = vec![b'x'; 3 * MAX_STDERR_TAIL_BYTES];
        data.extend_from_slice(b"last");
        tail.push(&data);
        let kept = tail.take();
        assert_eq!(kept.len(), MAX_STDERR_TAIL_BYTES);
        assert!(kept.ends_with(b"xlast"));
    }

    #[test]
    fn zero_timeout_still_allows_one_tick() {
        let limits = SandboxLimits {
            call_timeout: Duration::ZERO,
            ..SandboxLimits::default()
        };
        assert_eq!(limits.deadline_ticks(), 1);
    }
}
