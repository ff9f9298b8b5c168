//! A content-addressed cache of compiled components (`.cwasm`).
//!
//! The parent compiles each component once (tens of milliseconds to seconds); every worker
//! process then only maps the compiled file (≈0.1 ms). Loading a `.cwasm` is unsafe if the
//! file could have been written by someone else, so the cache directory must be private
//! (mode 0700, owned by us) and entries are only ever created by [`CompileCache::compile`].

use std::borrow::Cow;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use tracing::debug;
use wasmtime::Engine;

use crate::error::{InputError, InputErrorKind};
use crate::runtime::adapt;

/// Where compiled components are kept.
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// Opens (creating if needed) the cache at `dir`, refusing a directory others can write.
    pub(crate) fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("failed to create the compile cache {}", dir.display()))?;
        let meta = fs::metadata(&dir)
            .with_context(|| format!("failed to inspect the compile cache {}", dir.display()))?;
        if meta.uid() != rustix::process::geteuid().as_raw() {
            bail!(
                "the compile cache {} is owned by another user; refusing to load code from it",
                dir.display()
            );
        }
        if meta.mode() & 0o022 != 0 {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).with_context(|| {
                format!("failed to make the compile cache {} private", dir.display())
            })?;
        }
        Ok(CompileCache { dir })
    }

    /// The cache directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The default location: `$WASMP_CACHE_DIR`, else `$XDG_CACHE_HOME/wasmp`, else
    /// `~/.cache/wasmp`, else a per-user directory under the system temp dir.
    pub(crate) fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("WASMP_CACHE_DIR") {
            return dir.into();
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return Path::new(&dir).join("wasmp");
        }
        if let Some(home) = std::env::var_os("HOME") {
            return Path::new(&home).join(".cache").join("wasmp");
        }
        std::env::temp_dir().join(format!("wasmp-{}", rustix::process::geteuid().as_raw()))
    }

    /// Returns the path of the compiled form of `wasm`, compiling it if it is not cached yet,
    /// and whether this call compiled it.
    ///
    /// `wasm` is a component or a WASI preview-1 core module; a core module is adapted into
    /// a component first ([`crate::runtime::adapt`]), so a cache hit skips the adaptation too.
    pub(crate) fn compile(&self, engine: &Engine, wasm: &[u8]) -> Result<(PathBuf, bool)> {
        let core = wasmparser::Parser::is_core_wasm(wasm);
        let adapter = core.then(adapt::adapter_fingerprint).unwrap_or_default();
        let path = self
            .dir
            .join(format!("{}.cwasm", cache_key(engine, wasm, adapter)));
        if path.exists() {
            return Ok((path, false));
        }
        let component = if core {
            let started = std::time::Instant::now();
            let component = adapt::module_to_component(wasm)?;
            debug!(elapsed = ?started.elapsed(), "adapted a preview-1 core module");
            Cow::Owned(component)
        } else {
            Cow::Borrowed(wasm)
        };
        let compiled = engine.precompile_component(&component).map_err(|e| {
            // Validation happens while compiling: its errors name the offending offset.
            InputError::new(InputErrorKind::InvalidWasm, format!("{e:?}"))
        })?;
        // Write beside the final name and rename, so that a concurrent reader never sees a
        // partial file and two concurrent compilers both end with a complete one.
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp",
            path.file_name().unwrap().to_string_lossy(),
            std::process::id()
        ));
        let mut file = fs::File::create(&tmp)
            .with_context(|| format!("failed to write to the compile cache {}", tmp.display()))?;
        file.write_all(&compiled)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("failed to write to the compile cache {}", tmp.display()))?;
        fs::rename(&tmp, &path)
            .with_context(|| format!("failed to write to the compile cache {}", path.display()))?;
        Ok((path, true))
    }
}

/// hash(wasm bytes, adapter, wasmtime version, engine settings): a change to any of them is
/// a miss.
fn cache_key(engine: &Engine, wasm: &[u8], adapter: &[u8]) -> String {
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    let mut digest = Sha256::new();
    digest.update(wasm);
    digest.update(adapter);
    digest.update(settings.finish().to_le_bytes());
    digest.update(env!("CARGO_PKG_VERSION").as_bytes());
    digest
        .finalize()
        .iter()
        .take(20)
        .map(|b| format!("{b:02x}"))
        .collect()
}
