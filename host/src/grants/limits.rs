//! How much a guest may use: memory, stack, instances and tables, fuel.
//!
//! Plain data (it travels to the worker in its start message); enforced inside the worker by wasmtime (`StoreLimits`, the stack limit, fuel), with the
//! OS as a backstop: `RLIMIT_DATA` above the memory limit (never `RLIMIT_AS`, which breaks
//! wasmtime's address-space reservations). Wall-clock time limits are set separately
//! (`Process::timeout`, `PoolBuilder::timeout`) because they also involve the host.

use serde::{Deserialize, Serialize};

/// Resource limits for a guest. `None` leaves wasmtime's default.
///
/// # Examples
///
/// ```
/// let limits = wasmp::Limits {
///     max_memory_size: Some(64 << 20),
///     max_wasm_stack: Some(256 << 10),
///     ..Default::default()
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes of linear memory per memory (`-W max-memory-size`): `memory.grow` beyond it
    /// fails, and a component whose initial memory exceeds it fails to instantiate.
    pub max_memory_size: Option<usize>,
    /// Bytes of wasm stack (`-W max-wasm-stack`; wasmtime's default is 512 KiB): deeper
    /// recursion traps with "call stack exhausted".
    pub max_wasm_stack: Option<usize>,
    /// Units of fuel (`-W fuel`): roughly one per wasm instruction; the guest traps when it
    /// runs out. A deterministic alternative to a wall-clock timeout.
    pub fuel: Option<u64>,
    /// Core and component instances a guest may create (default 10 000).
    pub max_instances: Option<usize>,
    /// Tables a guest may create (default 10 000).
    pub max_tables: Option<usize>,
    /// Elements per table (default [`Limits::DEFAULT_MAX_TABLE_ELEMENTS`]).
    pub max_table_elements: Option<usize>,
}

impl Limits {
    /// Elements a table may grow to when no limit is given: 10 million (80 MB of function
    /// references), far above what real programs use (CPython's tables hold tens of
    /// thousands). wasmtime's own default is unlimited, which lets a `table.grow` loop eat
    /// the host's memory.
    pub const DEFAULT_MAX_TABLE_ELEMENTS: usize = 10_000_000;
}
