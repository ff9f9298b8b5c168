//! Paths of the guest components, built from source by this crate's build script.
//!
//! Used by wasmp's integration tests, examples and benchmarks; never published.

include!(concat!(env!("OUT_DIR"), "/gen.rs"));
