//! The wasmtime `Config`s both sides use.
//!
//! The parent compiles components to `.cwasm` and the worker process loads them; wasmtime
//! refuses a `.cwasm` made under different code-generation settings, so both build their
//! engine here. Fuel changes the generated code, so fuel-metered guests get a separately
//! compiled variant; the stack limit and the instance allocator do not.

use anyhow::Result;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// What an engine is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EngineOptions {
    /// Meter fuel (compiled in: needs its own `.cwasm`).
    pub(crate) fuel: bool,
    /// The wasm stack limit, in bytes.
    pub(crate) max_wasm_stack: Option<usize>,
    /// Use the pooling instance allocator: for pool workers, which instantiate many times.
    pub(crate) pooling: bool,
}

/// Builds an engine. Epoch interruption is always on (it costs ≈0.4 %) so that a timeout
/// can stop a spinning guest with a clean trap; every `Store` must therefore set an epoch
/// deadline.
///
/// The pooling allocator keeps instance slots (memories, tables) mapped and only resets
/// the pages a task touched, instead of mapping and unmapping gigabytes of address space
/// per task; setting it up costs a few milliseconds, paid once per pool worker.
pub(crate) fn new_engine(options: EngineOptions) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(options.fuel);
    if let Some(bytes) = options.max_wasm_stack {
        config.max_wasm_stack(bytes);
    }
    if options.pooling {
        let mut pooling = PoolingAllocationConfig::new();
        pooling
            .total_component_instances(4)
            .total_core_instances(128)
            .max_core_instances_per_component(64)
            .total_memories(16)
            .max_memories_per_component(8)
            .total_tables(128)
            .max_tables_per_component(64)
            .total_stacks(4)
            .linear_memory_keep_resident(64 << 10)
            .table_keep_resident(16 << 10);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    }
    Ok(Engine::new(&config)?)
}
