//! The one wasmtime `Config` both sides use.
//!
//! The parent compiles components to `.cwasm` and the worker process loads them; wasmtime
//! refuses a `.cwasm` made under different settings, so both build their engine here.

use anyhow::Result;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Builds the engine shared by the compiling parent and the loading workers.
///
/// Epoch interruption is always on (it costs ≈0.4 %) so that a timeout can stop a spinning
/// guest with a clean trap; every `Store` must therefore set an epoch deadline.
pub(crate) fn new_engine() -> Result<Engine> {
    Ok(Engine::new(&base_config())?)
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}

/// The engine of a pool worker, which instantiates many times in one process: the pooling
/// allocator keeps instance slots (memories, tables) mapped and only resets the pages a
/// task touched, instead of mapping and unmapping gigabytes of address space per task.
/// Setting it up costs a few milliseconds, paid once per worker process. The compiled code
/// is the same, so it loads the same `.cwasm` files.
pub(crate) fn new_pooling_engine() -> Result<Engine> {
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
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Ok(Engine::new(&config)?)
}
