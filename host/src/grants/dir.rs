//! What a worker may reach: directories and environment variables, granted one by one.
//!
//! Deny by default, with wasmtime's spellings: `--dir HOST[::GUEST]`, `--env NAME[=VALUE]`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::error::{InputErrorKind, input_error};

/// A host directory preopened for a guest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DirGrant {
    host: PathBuf,
    guest: String,
    read_only: bool,
}

impl DirGrant {
    /// Grants `host` to the guest at `guest`, read and write.
    pub fn new(host: impl Into<PathBuf>, guest: impl Into<String>) -> Self {
        DirGrant {
            host: host.into(),
            guest: guest.into(),
            read_only: false,
        }
    }

    /// Parses wasmtime's `HOST[::GUEST]` (the guest path defaults to the host path).
    ///
    /// # Errors
    ///
    /// An empty host path is a [`InputErrorKind::BadConfig`] error.
    pub fn parse(spec: &str) -> Result<Self> {
        let (host, guest) = match spec.split_once("::") {
            Some((host, guest)) => (host, guest),
            None => (spec, spec),
        };
        if host.is_empty() || guest.is_empty() {
            return input_error(
                InputErrorKind::BadConfig,
                format!("invalid directory grant {spec:?}: expected HOST[::GUEST]"),
            );
        }
        Ok(DirGrant::new(host, guest))
    }

    /// Makes the grant read-only: the guest can list and read, not create, write or delete.
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// The directory on the host.
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// Where the guest sees it.
    pub fn guest(&self) -> &str {
        &self.guest
    }

    /// Whether the guest may only read.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Checks that the host directory exists, so that a typo fails before anything spawns.
    pub(crate) fn check(&self) -> Result<()> {
        if !self.host.is_dir() {
            return input_error(
                InputErrorKind::NotFound,
                format!(
                    "directory {} granted as {:?} does not exist or is not a directory",
                    self.host.display(),
                    self.guest
                ),
            );
        }
        Ok(())
    }
}

/// Parses wasmtime's `NAME[=VALUE]`; a bare `NAME` takes the host's value (and is skipped
/// when the host has none, as `wasmtime run --env` does).
///
/// # Errors
///
/// An empty name is a [`InputErrorKind::BadConfig`] error.
pub fn parse_env(spec: &str) -> Result<Option<(String, String)>> {
    let (name, value) = match spec.split_once('=') {
        Some((name, value)) => (name, Some(value.to_string())),
        None => (spec, None),
    };
    if name.is_empty() {
        return input_error(
            InputErrorKind::BadConfig,
            format!("invalid environment grant {spec:?}: expected NAME[=VALUE]"),
        );
    }
    let value = match value {
        Some(value) => Some(value),
        None => std::env::var(name).ok(),
    };
    Ok(value.map(|value| (name.to_string(), value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_specs() {
        let grant = DirGrant::parse("/tmp/data::/data").unwrap();
        assert_eq!(grant.host(), Path::new("/tmp/data"));
        assert_eq!(grant.guest(), "/data");
        assert!(!grant.is_read_only());
        assert_eq!(DirGrant::parse("out").unwrap().guest(), "out");
        assert!(DirGrant::parse("::/data").is_err());
        assert!(DirGrant::parse("").is_err());
    }

    #[test]
    fn env_specs() {
        assert_eq!(
            parse_env("A=b=c").unwrap(),
            Some(("A".to_string(), "b=c".to_string()))
        );
        assert_eq!(parse_env("WASMP_SURELY_UNSET_VARIABLE").unwrap(), None);
        assert!(parse_env("=x").is_err());
    }
}
