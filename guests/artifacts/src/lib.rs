//! Paths of the guests, built from source by this crate's build script.
//!
//! Used by wasmp's integration tests, examples and benchmarks; never published.

/// A guest whose toolchain may be missing (C, Python): its path, or why it was not built.
pub type Optional = Result<&'static str, &'static str>;

/// The path of an optional guest, or `None` after saying on stderr why the caller skips it.
///
/// Under `WASMP_REQUIRE_ALL_GUESTS=1` (CI) a missing toolchain already failed the build, so
/// this only skips on machines that chose not to install one.
pub fn optional(guest: Optional, what: &str) -> Option<&'static str> {
    match guest {
        Ok(path) => Some(path),
        Err(why) => {
            eprintln!("skipping {what}: {why}");
            None
        }
    }
}

include!(concat!(env!("OUT_DIR"), "/gen.rs"));
