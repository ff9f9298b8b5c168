//! What this build of wasmp is: its version, the wasmtime it embeds, and the version of the
//! guest contract it provides (`wit/worker.wit`, `package wasmp:worker@0.1.0`).
//!
//! `wasmp --version` prints them, and the import check names the contract's version when a
//! component was built against another one. The unit tests keep the constants equal to
//! `Cargo.lock` and the WIT file, the sources of truth.

/// wasmp's version (the `wasmp` crate's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The wasmtime release wasmp embeds (the `wasmtime` crate in `Cargo.lock`).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// The WIT package of the guest contract, without its version.
pub const WIT_PACKAGE: &str = "wasmp:worker";

/// The version of [`WIT_PACKAGE`] this wasmp provides; a guest's `wasmp:worker` imports
/// carry it (`wasmp:worker/queue@0.1.0`).
pub const WIT_VERSION: &str = "0.1.0";

/// The version of the `WIT_PACKAGE` interface an import names, when it is one of them:
/// `Some("0.2.0")` for `wasmp:worker/queue@0.2.0`, `Some("")` for an unversioned
/// `wasmp:worker/queue`, `None` for anything else.
pub(crate) fn worker_import_version(import: &str) -> Option<&str> {
    let rest = import.strip_prefix(WIT_PACKAGE)?.strip_prefix('/')?;
    Some(rest.split_once('@').map_or("", |(_, version)| version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wasmtime_version_is_the_one_in_cargo_lock() {
        let lock = include_str!("../../Cargo.lock");
        let locked = lock
            .split("[[package]]")
            .find_map(|package| {
                let mut lines = package.trim().lines();
                (lines.next()? == "name = \"wasmtime\"").then(|| lines.next())?
            })
            .expect("Cargo.lock has a wasmtime package");
        assert_eq!(locked, format!("version = \"{WASMTIME_VERSION}\""));
    }

    #[test]
    fn the_wit_version_is_the_one_in_worker_wit() {
        let wit = include_str!("../../wit/worker.wit");
        let package = format!("package {WIT_PACKAGE}@{WIT_VERSION};");
        assert_eq!(wit.lines().next(), Some(package.as_str()));
    }

    #[test]
    fn worker_imports_are_told_by_their_package() {
        assert_eq!(
            worker_import_version("wasmp:worker/queue@0.2.0"),
            Some("0.2.0")
        );
        assert_eq!(
            worker_import_version("wasmp:worker/process@0.1.0"),
            Some("0.1.0")
        );
        assert_eq!(worker_import_version("wasmp:worker/queue"), Some(""));
        assert_eq!(worker_import_version("wasmp:workers/queue@0.1.0"), None);
        assert_eq!(worker_import_version("wasi:cli/run@0.2.0"), None);
    }
}
