//! The on-disk cache of compiled plugin components.
//!
//! Compiling a component takes about a second; loading its compiled form
//! takes well under a millisecond. The cache stores what
//! `Component::serialize` wrote, in one file per key, so that a restart or
//! a swap back to an earlier plugin does not compile again. The key is a
//! SHA-256 over the component's own SHA-256 and wasmtime's compatibility
//! hash of the engine. That hash covers the wasmtime version, target,
//! compiler flags, tunables and wasm features, so a file is only looked up
//! by an engine that could have written it.
//!
//! The cache directory is a trust boundary: loading a compiled file runs
//! its machine code unchecked, so only the host's user may write there.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Version of the cache's own layout, part of every key.
const LAYOUT_VERSION: &str = "weblog-component-cache-v1";

/// Extension of a cache entry.
const ENTRY_EXTENSION: &str = "cwasm";

/// A directory of compiled components, keyed by [`cache_key`].
#[derive(Clone, Debug)]
pub struct ComponentCache {
    dir: PathBuf,
}

/// Origin of a loaded component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentSource {
    /// Compiled now.
    Compiled,
    /// Loaded from a cache entry.
    Cache,
}

impl ComponentCache {
    /// Uses `dir` for cache entries; it is created on the first write.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Returns the default directory: `$WEBLOG_CACHE_DIR/components`, or
    /// `$HOME/.cache/weblog/components`, or `None` when neither is set.
    pub fn default_dir() -> Option<PathBuf> {
        let base = match std::env::var_os("WEBLOG_CACHE_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/weblog"),
        };
        Some(base.join("components"))
    }

    /// Returns the directory of cache entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.{ENTRY_EXTENSION}"))
    }
}

/// Returns the cache key of a component whose bytes have the SHA-256
/// `component_digest` (hex), compiled by `engine`.
pub fn cache_key(engine: &Engine, component_digest: &str) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    LAYOUT_VERSION.hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    component_digest.hash(&mut hasher);
    hex(&hasher.0.finalize())
}

/// Compiles `bytes` into a component, or loads the compiled component from
/// `cache` when it contains one for the same bytes and engine. A cache entry
/// that fails to load, or a failed write, is logged and does not fail the
/// load.
pub fn load_component(
    engine: &Engine,
    bytes: &[u8],
    digest: &str,
    cache: Option<&ComponentCache>,
) -> anyhow::Result<(Component, ComponentSource)> {
    check_format(bytes)?;
    let Some(cache) = cache else {
        return Ok((compile(engine, bytes)?, ComponentSource::Compiled));
    };
    let key = cache_key(engine, digest);
    let path = cache.entry_path(&key);
    if path.is_file() {
        match deserialize_entry(engine, &path) {
            Ok(component) => {
                tracing::debug!(path = ?path, digest, "compiled plugin loaded from cache");
                return Ok((component, ComponentSource::Cache));
            }
            Err(error) => tracing::warn!(
                path = ?path,
                error = %format!("{error:#}"),
                "failed to load cached plugin, compiling it again"
            ),
        }
    }
    let component = compile(engine, bytes)?;
    if let Err(error) = write_entry(&component, cache, &path) {
        tracing::warn!(
            path = ?path,
            error = %format!("{error:#}"),
            "failed to write compiled plugin to the cache"
        );
    }
    Ok((component, ComponentSource::Compiled))
}

/// First bytes of every binary WASM file.
const WASM_MAGIC: &[u8] = b"\0asm";

/// Version and layer that follow [`WASM_MAGIC`] in a core module.
const CORE_MODULE_VERSION: &[u8] = &[1, 0, 0, 0];

/// Fails with what the file is not and how to build a plugin, unless
/// `bytes` start like a binary WASM component or like WAT text, which
/// wasmtime also compiles. Without this, wasmtime reports any other file
/// as invalid WAT text ("input bytes aren't valid utf-8").
fn check_format(bytes: &[u8]) -> anyhow::Result<()> {
    const BUILD_HINT: &str = "build the plugins with `make plugin`, which writes \
        plugins/target/wasm32-wasip2/release/<name>.wasm";
    if let Some(version) = bytes.strip_prefix(WASM_MAGIC) {
        anyhow::ensure!(
            !version.starts_with(CORE_MODULE_VERSION),
            "the file is a core WASM module, not a WASM component; {BUILD_HINT}"
        );
        return Ok(());
    }
    let text = bytes.trim_ascii_start();
    anyhow::ensure!(
        text.starts_with(b"(") || text.starts_with(b";;"),
        "the file is not a WASM component: it starts neither with the WASM magic \
         bytes \\0asm nor with WAT text; {BUILD_HINT}"
    );
    Ok(())
}

fn compile(engine: &Engine, bytes: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .context("failed to compile the plugin as a WASM component")
}

/// Loads a cache entry into `engine`.
#[allow(unsafe_code)]
fn deserialize_entry(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    // SAFETY: wasmtime runs the machine code of a deserialized file as is,
    // so the file must come from `Component::serialize`. Entries are found
    // by `cache_key`, which covers the component bytes and wasmtime's
    // compatibility hash of this engine, and `write_entry` renames a file
    // into place only once `Component::serialize` wrote all of it. wasmtime
    // also checks the version and engine settings in the file's header and
    // rejects a mismatch. Files that someone else put in the directory are
    // outside this invariant: the README makes the directory the operator's
    // trust boundary.
    unsafe { Component::deserialize_file(engine, path) }
        .map_err(anyhow::Error::from)
        .with_context(|| format!("failed to deserialize compiled plugin {path:?}"))
}

/// Writes `component` to `path` through a temporary file in the same
/// directory, so that a reader never sees a partial entry.
fn write_entry(component: &Component, cache: &ComponentCache, path: &Path) -> anyhow::Result<()> {
    static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);
    let serialized = component
        .serialize()
        .map_err(anyhow::Error::from)
        .context("failed to serialize the compiled plugin")?;
    std::fs::create_dir_all(cache.dir())
        .with_context(|| format!("failed to create cache directory {:?}", cache.dir()))?;
    let temp = cache.dir().join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&temp, serialized)
        .with_context(|| format!("failed to write cache file {temp:?}"))?;
    std::fs::rename(&temp, path).map_err(|error| {
        let _ = std::fs::remove_file(&temp);
        anyhow::Error::from(error).context(format!("failed to rename {temp:?} to {path:?}"))
    })
}

/// Feeds what `Hash` writes into SHA-256, which unlike std's hashers is
/// the same in every build.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        unreachable!("cache keys use the whole SHA-256 through finalize, not finish")
    }
}

/// Formats bytes as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox;

    const EMPTY_COMPONENT: &str = "(component)";

    fn engine_with_epochs(epochs: bool) -> Engine {
        let mut config = sandbox::engine_config();
        config.epoch_interruption(epochs);
        Engine::new(&config).expect("engine")
    }

    #[test]
    fn garbage_is_not_a_component() {
        let engine = engine_with_epochs(true);
        for bytes in [&b"\xff\xfe garbage"[..], b"#!/bin/sh\n", b""] {
            let error = load_component(&engine, bytes, "aa", None).expect_err("garbage loads");
            let message = format!("{error:#}");
            assert!(message.contains("not a WASM component"), "{message}");
            assert!(message.contains("make plugin"), "{message}");
            assert!(!message.contains("utf-8"), "{message}");
        }
    }

    #[test]
    fn core_module_is_not_a_component() {
        let engine = engine_with_epochs(true);
        let bytes = b"\0asm\x01\0\0\0";
        let error = load_component(&engine, bytes, "aa", None).expect_err("a core module loads");
        let message = format!("{error:#}");
        assert!(message.contains("core WASM module"), "{message}");
    }

    #[test]
    fn cache_key_is_stable_for_same_inputs() {
        let first = cache_key(&engine_with_epochs(true), "aa");
        let second = cache_key(&engine_with_epochs(true), "aa");
        assert_eq!(first, second);
        assert_eq!(first.len(), 64, "SHA-256 in hex: {first}");
    }

    #[test]
    fn cache_key_changes_with_component() {
        let engine = engine_with_epochs(true);
        assert_ne!(cache_key(&engine, "aa"), cache_key(&engine, "ab"));
    }

    #[test]
    fn cache_key_changes_with_engine_settings() {
        assert_ne!(
            cache_key(&engine_with_epochs(true), "aa"),
            cache_key(&engine_with_epochs(false), "aa")
        );
    }

    #[test]
    fn cache_key_ignores_compile_threads() {
        let mut config = sandbox::engine_config();
        config.parallel_compilation(false);
        let one_thread = Engine::new(&config).expect("engine");
        assert_eq!(
            cache_key(&one_thread, "aa"),
            cache_key(&engine_with_epochs(true), "aa")
        );
    }

    #[test]
    fn second_load_comes_from_cache() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = ComponentCache::new(dir.path().join("components"));
        let engine = engine_with_epochs(true);
        let bytes = EMPTY_COMPONENT.as_bytes();
        let digest = hex(&Sha256::digest(bytes));

        let (_, first) = load_component(&engine, bytes, &digest, Some(&cache)).expect("compile");
        let (_, second) = load_component(&engine, bytes, &digest, Some(&cache)).expect("load");
        assert_eq!(first, ComponentSource::Compiled);
        assert_eq!(second, ComponentSource::Cache);

        let entries: Vec<_> = std::fs::read_dir(cache.dir())
            .expect("cache dir")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(entries.len(), 1, "one entry, no temp files: {entries:?}");
    }

    #[test]
    fn corrupt_entry_is_compiled_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = ComponentCache::new(dir.path().to_path_buf());
        let engine = engine_with_epochs(true);
        let bytes = EMPTY_COMPONENT.as_bytes();
        let digest = hex(&Sha256::digest(bytes));
        let path = cache.entry_path(&cache_key(&engine, &digest));
        std::fs::write(&path, b"not a compiled component").expect("write");

        let (_, source) = load_component(&engine, bytes, &digest, Some(&cache)).expect("load");
        assert_eq!(source, ComponentSource::Compiled);
        let (_, source) = load_component(&engine, bytes, &digest, Some(&cache)).expect("load");
        assert_eq!(source, ComponentSource::Cache, "the bad entry was replaced");
    }
}
